//! Serving the classic example: the seed's request/response shape, the batch form,
//! readiness, and error bodies that never take the server down.

use clarity_tests::{error_kind, Project};
use serde_json::json;
use std::time::Duration;

const LABELS: [&str; 3] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];

fn classic_project() -> Project {
    Project::classic("")
}

fn assert_prediction(p: &serde_json::Value) {
    let label = p["clarity_label"].as_str().expect("clarity_label");
    assert!(LABELS.contains(&label), "unexpected label {label}");
    let scores = p["scores"].as_object().expect("scores object");
    let keys: Vec<&str> = scores.keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 3, "{p}");
    for l in LABELS {
        assert!(scores.contains_key(l), "missing score for {l}: {p}");
    }
    let sum: f64 = scores.values().map(|v| v.as_f64().expect("number")).sum();
    assert!((sum - 1.0).abs() < 1e-4, "scores sum to {sum}");
    let confidence = p["confidence"].as_f64().expect("confidence");
    let max = scores
        .values()
        .map(|v| v.as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    assert!(
        (confidence - max).abs() < 1e-6,
        "confidence {confidence} is not the top score {max}"
    );
    assert_eq!(scores[label].as_f64(), Some(confidence));
}

#[test]
fn trained_classic_model_serves_the_seed_shape_and_survives_bad_requests() {
    let project = classic_project();
    project.host_ok(&["train", "--model", "classic"]);
    let server = project.serve(&["--body-limit", "4096"]);
    server.wait_ready(Duration::from_secs(60));

    let route = "/classify/classic";
    let pair = json!({"question": "Will you raise the minimum wage?",
                      "context": "Q: Will you raise the minimum wage?\nA: Yes. We will raise it to fifteen dollars next year."});
    let (status, body) = server.post_json(route, &pair);
    assert_eq!(status, 200, "{body}");
    assert_prediction(&body);

    // The batch form: a list in, a list out, in order.
    let other = json!({"question": "Do you know the cost?", "context": "Q: Do you know the cost?\nA: I don't have those numbers in front of me."});
    let (status, batch) = server.post_json(route, &json!([pair, other, pair]));
    assert_eq!(status, 200, "{batch}");
    let items = batch.as_array().expect("list");
    assert_eq!(items.len(), 3);
    items.iter().for_each(assert_prediction);
    assert_eq!(items[0], items[2], "same pair, same answer");
    assert_eq!(items[0], body, "batch answer equals single answer");

    // Bad bodies: a JSON error with the right status, and the server keeps serving.
    let bad: Vec<(u16, &str, Option<&str>, Vec<u8>)> = vec![
        (
            400,
            "malformed_json",
            Some("application/json"),
            b"{\"question\": ".to_vec(),
        ),
        (
            415,
            "unsupported_media_type",
            Some("text/plain"),
            pair.to_string().into_bytes(),
        ),
        (
            415,
            "unsupported_media_type",
            None,
            pair.to_string().into_bytes(),
        ),
        (
            422,
            "validation",
            Some("application/json"),
            br#"{"question": "only a question"}"#.to_vec(),
        ),
        (
            422,
            "validation",
            Some("application/json"),
            br#"{"question": 3, "context": "x"}"#.to_vec(),
        ),
        (
            422,
            "validation",
            Some("application/json"),
            br#"{"question": "  ", "context": "x"}"#.to_vec(),
        ),
        (422, "validation", Some("application/json"), b"[]".to_vec()),
        (
            422,
            "validation",
            Some("application/json"),
            b"\"just a string\"".to_vec(),
        ),
        (
            422,
            "validation",
            Some("application/json"),
            br#"[{"question": "q", "context": "c"}, 7]"#.to_vec(),
        ),
        (
            413,
            "payload_too_large",
            Some("application/json"),
            format!(
                "{{\"question\": \"{}\", \"context\": \"c\"}}",
                "x".repeat(10_000)
            )
            .into_bytes(),
        ),
    ];
    for (want, kind, content_type, bytes) in bad {
        let (status, body) = server.post_raw(route, content_type, bytes);
        assert_eq!(status, want, "{kind}: {body}");
        assert_eq!(error_kind(&body), kind, "{body}");
        // FastAPI's `detail`, for clients of the Python Clarity.
        assert_eq!(body["detail"], body["error"], "{body}");
        let (status, ok) = server.post_json(route, &pair);
        assert_eq!(status, 200, "after a {want}: {ok}");
    }

    let (status, body) = server.get("/no/such/route");
    assert_eq!(status, 404);
    assert_eq!(error_kind(&body), "not_found");
    let (status, body) = server.get(route);
    assert_eq!(status, 405);
    assert_eq!(error_kind(&body), "method_not_allowed");

    let (status, index) = server.get("/");
    assert_eq!(status, 200);
    let model = &index["models"][0];
    assert_eq!(model["name"], "classic");
    assert_eq!(model["route"], route);
    assert_eq!(model["status"], "ready");
    assert_eq!(model["labels"], json!(LABELS));
    assert_eq!(index["endpoints"], json!([route]), "{index}");
    let (status, health) = server.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["models_loaded"], 1, "{health}");

    let (status, spec) = server.get("/openapi.json");
    assert_eq!(status, 200);
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(
        spec["paths"][route]["post"]["responses"]["422"].is_object(),
        "{spec}"
    );
    let (status, page) = server.get("/docs");
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap_or_default().contains(route));
    let (status, page) = server.get("/redoc");
    assert_eq!(status, 200);
    let page = page.as_str().unwrap_or_default();
    assert!(page.contains("Redoc.init('/openapi.json'"), "{page}");
    assert!(
        page.contains(route),
        "offline, it still lists the routes: {page}"
    );

    // Prometheus metrics count the requests above by matched route and status.
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200);
    let text = text.as_str().unwrap_or_default();
    for needle in [
        "clarity_http_requests_total{route=\"/classify/classic\",method=\"POST\",status=\"200\"}",
        "status=\"422\"",
        "clarity_batch_pairs_bucket{model=\"classic\"",
        "clarity_inference_duration_seconds_count{model=\"classic\"}",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[test]
fn concurrent_requests_are_all_answered() {
    let project = classic_project();
    project.host_ok(&["train", "--model", "classic"]);
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let base = server.base.clone();
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let url = format!("{base}/classify/classic");
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let body = json!({"question": format!("Question number {i}?"), "context": format!("Q: Question {i}?\nA: Answer {i}.")});
                let resp = client.post(url).json(&body).send().expect("POST");
                (resp.status().as_u16(), resp.json::<serde_json::Value>().expect("JSON"))
            })
        })
        .collect();
    for h in handles {
        let (status, body) = h.join().expect("thread");
        assert_eq!(status, 200, "{body}");
        assert_prediction(&body);
    }
}

#[test]
fn serve_trains_an_untrained_model_first_and_turns_ready() {
    let project = classic_project();
    let server = project.serve(&[]);
    let (status, _) = server.get("/health");
    assert_eq!(status, 200, "health answers while the model trains");
    server.wait_ready(Duration::from_secs(120));
    let (status, body) = server.post_json(
        "/classify/classic",
        &json!({"question": "Is it done?", "context": "Q: Is it done?\nA: Yes, it is done."}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(project
        .path()
        .join("artifacts/classic/labels.json")
        .is_file());
}

#[test]
fn sigterm_shuts_the_server_down_cleanly() {
    let project = classic_project();
    project.host_ok(&["train", "--model", "classic"]);
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let code = server.terminate(Duration::from_secs(15));
    assert_eq!(code, Some(0), "log:\n{}", server.log());
    assert!(server.log().contains("Server stopped"), "{}", server.log());
}
