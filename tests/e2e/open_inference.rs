//! The Open Inference Protocol (KServe v2) on the real server with the trained classic
//! example: `POST /v2/models/classic/infer` answers the very scores the seed route gives for
//! the same pairs, and the protocol's metadata, readiness and errors.

use clarity_tests::Project;
use serde_json::{json, Value};
use std::time::Duration;

const PAIRS: [(&str, &str); 3] = [
    (
        "Will you raise the minimum wage?",
        "Q: Will you raise the minimum wage?\nA: Yes. We will raise it to fifteen dollars next year.",
    ),
    (
        "Do you know the cost?",
        "Q: Do you know the cost?\nA: I don't have those numbers in front of me.",
    ),
    (
        "Will you sign the bill?",
        "Q: Will you sign the bill?\nA: We are looking at many options and talking to everyone.",
    ),
];

fn infer_body(pairs: &[(&str, &str)]) -> Value {
    let questions: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let contexts: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    json!({
        "id": "e2e-1",
        "inputs": [
            {"name": "question", "datatype": "BYTES", "shape": [pairs.len()], "data": questions},
            {"name": "context", "datatype": "BYTES", "shape": [pairs.len()], "data": contexts},
        ]
    })
}

#[test]
fn v2_infer_answers_the_seed_routes_scores_and_the_protocol_errors() {
    let project = Project::classic("");
    project.host_ok(&["train", "--model", "classic"]);
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));

    let (status, live) = server.get("/v2/health/live");
    assert_eq!((status, live), (200, json!({"live": true})));
    let (status, ready) = server.get("/v2/health/ready");
    assert_eq!((status, ready), (200, json!({"ready": true})));
    let (status, meta) = server.get("/v2");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["name"], "clarity-host");
    let (status, meta) = server.get("/v2/models/classic");
    assert_eq!(status, 200, "{meta}");
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 3]), "{meta}");
    let labels: Vec<String> = serde_json::from_value(meta["parameters"]["labels"].clone())
        .expect("labels in the metadata");
    let (status, ready) = server.get("/v2/models/classic/ready");
    assert_eq!(status, 200, "{ready}");

    // The seed route, pair by pair, is the reference.
    let seed: Vec<Value> = PAIRS
        .iter()
        .map(|(q, c)| {
            let (status, body) =
                server.post_json("/classify/classic", &json!({"question": q, "context": c}));
            assert_eq!(status, 200, "{body}");
            body
        })
        .collect();
    for route in [
        "/v2/models/classic/infer",
        "/v2/models/classic/versions/1/infer",
    ] {
        let (status, answer) = server.post_json(route, &infer_body(&PAIRS));
        assert_eq!(status, 200, "{route}: {answer}");
        assert_eq!(answer["model_name"], "classic");
        assert_eq!(answer["id"], "e2e-1", "the request id is echoed");
        let outputs = answer["outputs"].as_array().expect("outputs");
        let scores = outputs
            .iter()
            .find(|o| o["name"] == "scores")
            .expect("scores");
        let label = outputs
            .iter()
            .find(|o| o["name"] == "label")
            .expect("label");
        assert_eq!(scores["datatype"], "FP32");
        assert_eq!(scores["shape"], json!([3, 3]));
        assert_eq!(label["shape"], json!([3]));
        let flat: Vec<f64> = serde_json::from_value(scores["data"].clone()).expect("numbers");
        for (i, expected) in seed.iter().enumerate() {
            for (j, name) in labels.iter().enumerate() {
                let want = expected["scores"][name].as_f64().expect("seed score");
                assert_eq!(
                    flat[i * labels.len() + j],
                    want,
                    "pair {i}, label {name}: v2 {answer} vs seed {expected}"
                );
            }
            assert_eq!(label["data"][i], expected["clarity_label"], "pair {i}");
        }
    }
    // The binary tensor extension (Triton's clients' default): raw BYTES in, raw FP32 out.
    let raw = |items: Vec<&str>| -> Vec<u8> {
        items
            .iter()
            .flat_map(|s| {
                [
                    (s.len() as u32).to_le_bytes().to_vec(),
                    s.as_bytes().to_vec(),
                ]
                .concat()
            })
            .collect()
    };
    let questions = raw(PAIRS.iter().map(|p| p.0).collect());
    let contexts = raw(PAIRS.iter().map(|p| p.1).collect());
    let header = json!({"inputs": [
        {"name": "question", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": questions.len()}},
        {"name": "context", "datatype": "BYTES", "shape": [3], "parameters": {"binary_data_size": contexts.len()}}],
        "outputs": [{"name": "scores", "parameters": {"binary_data": true}}]})
    .to_string();
    let body = [header.as_bytes(), &questions, &contexts].concat();
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v2/models/classic/infer", server.base))
        .header("inference-header-content-length", header.len())
        .body(body)
        .send()
        .expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("JSON length header");
    let bytes = response.bytes().expect("body");
    let floats: Vec<f32> = bytes[json_length..]
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(floats.len(), 9);
    for (i, expected) in seed.iter().enumerate() {
        for (j, name) in labels.iter().enumerate() {
            let want = expected["scores"][name].as_f64().expect("seed score") as f32;
            assert_eq!(
                floats[i * labels.len() + j],
                want,
                "binary pair {i}, label {name}"
            );
        }
    }

    // Only the requested output.
    let mut body = infer_body(&PAIRS[..1]);
    body["outputs"] = json!([{"name": "label"}]);
    let (status, answer) = server.post_json("/v2/models/classic/infer", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["outputs"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(answer["outputs"][0]["data"][0], seed[0]["clarity_label"]);

    // Protocol errors: `{"error": ...}` with the protocol's statuses, and the server goes on.
    let mut wrong_type = infer_body(&PAIRS[..1]);
    wrong_type["inputs"][1]["datatype"] = json!("FP32");
    let cases = [
        ("/v2/models/nope/infer", infer_body(&PAIRS[..1]), 404),
        (
            "/v2/models/classic/versions/2/infer",
            infer_body(&PAIRS[..1]),
            404,
        ),
        ("/v2/models/classic/infer", wrong_type, 400),
        ("/v2/models/classic/infer", json!({"inputs": []}), 400),
        ("/v2/models/classic/infer", json!({"inputs": "x"}), 400),
    ];
    for (route, body, want) in cases {
        let (status, answer) = server.post_json(route, &body);
        assert_eq!(status, want, "{route}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        assert!(answer.get("detail").is_none(), "{answer}");
    }
    let (status, answer) = server.post_raw("/v2/models/classic/infer", None, b"{".to_vec());
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = server.get("/v2/models/nope");
    assert_eq!(status, 404, "{answer}");

    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default();
    let needle = r#"route="/v2/models/{name}/infer",method="POST",status="200""#;
    assert!(
        metrics.contains(needle),
        "metrics lack {needle}:\n{metrics}"
    );
}

/// Triton's own Python client (`tritonclient[http]` from PyPI) against the real server: its
/// health, metadata and infer calls work unchanged, with JSON tensors and with its default
/// binary tensors, and get the seed route's scores. Ignored by
/// default (it needs the package): point `CLARITY_TRITONCLIENT_PYTHON` at a Python that has it,
/// e.g. `python3 -m venv /tmp/triton && /tmp/triton/bin/pip install 'tritonclient[http]'`.
#[test]
#[ignore = "needs tritonclient[http] from PyPI (set CLARITY_TRITONCLIENT_PYTHON)"]
fn tritonclient_works_unchanged() {
    let python = std::env::var("CLARITY_TRITONCLIENT_PYTHON")
        .unwrap_or_else(|_| "/tmp/triton-venv/bin/python".into());
    let project = Project::classic("");
    project.host_ok(&["train", "--model", "classic"]);
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let script = clarity_tests::workspace_root().join("tests/e2e/scripts/tritonclient_check.py");
    let address = server.base.trim_start_matches("http://").to_string();
    let mut child = std::process::Command::new(&python)
        .arg(&script)
        .arg(&address)
        .arg("classic")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let pairs: Vec<[&str; 2]> = PAIRS.iter().map(|(q, c)| [*q, *c]).collect();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(json!(pairs).to_string().as_bytes())
            .expect("write pairs");
    }
    let out = child.wait_with_output().expect("tritonclient script");
    assert!(
        out.status.success(),
        "tritonclient script failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("script JSON");
    assert_eq!(seen["live"], true, "{seen}");
    assert_eq!(seen["ready"], true, "{seen}");
    assert_eq!(seen["model_ready"], true, "{seen}");
    assert_eq!(seen["server"]["name"], "clarity-host", "{seen}");
    assert_eq!(seen["metadata"]["inputs"][0]["name"], "question", "{seen}");
    assert_eq!(seen["unknown_model_error"]["status"], "404", "{seen}");
    let labels = seen["metadata"]["parameters"]["labels"].clone();
    for (mode, id) in [("json", "triton-1"), ("binary", "triton-2")] {
        let got = &seen[mode];
        assert_eq!(got["id"], id, "{mode}: {seen}");
        for (i, (q, c)) in PAIRS.iter().enumerate() {
            let (status, expected) =
                server.post_json("/classify/classic", &json!({"question": q, "context": c}));
            assert_eq!(status, 200, "{expected}");
            for (j, name) in labels.as_array().expect("labels").iter().enumerate() {
                let name = name.as_str().expect("label");
                let want = expected["scores"][name].as_f64().expect("score");
                let score = got["scores"][i][j].as_f64().expect("client score");
                // numpy read the f32 back as float32: equal as f32.
                assert_eq!(score as f32, want as f32, "{mode} pair {i} {name}: {seen}");
            }
            assert_eq!(got["label"][i], expected["clarity_label"], "{mode}: {seen}");
        }
    }
}
