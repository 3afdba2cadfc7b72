//! The Open Inference Protocol (KServe v2) in-process: metadata, health, readiness, infer
//! (outputs, the request id, version paths), every protocol error, and the limits shared
//! with the seed routes (in-flight bound, API key).

use super::*;
use crate::http::auth::{Auth, DEFAULT_OPEN_ROUTES};

fn bytes_input(name: &str, data: &[&str]) -> Value {
    json!({"name": name, "datatype": "BYTES", "shape": [data.len()], "data": data})
}

fn infer_body(questions: &[&str]) -> Value {
    let contexts: Vec<&str> = questions
        .iter()
        .map(|_| "Q: a question\nA: an answer")
        .collect();
    json!({"inputs": [bytes_input("question", questions), bytes_input("context", &contexts)]})
}

/// Assert a protocol error: status, `error` text, kind, request id, and no FastAPI `detail`.
fn assert_v2_error(answer: &(StatusCode, Value, Option<String>), status: u16, kind: &str) {
    let (got, body, id) = answer;
    assert_eq!(got.as_u16(), status, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(body["kind"], kind, "{body}");
    assert_eq!(body["request_id"].as_str(), id.as_deref(), "{body}");
    assert!(
        body.get("detail").is_none(),
        "not the protocol's shape: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_model_metadata_health_and_readiness() {
    let ready = fake("ready", 64, None);
    let broken = spawn("broken", 64, Box::new(|_| Err("no plugin here".into())));
    wait_until(|| broken.status().as_str() == "failed");
    let app = app(&[&ready.worker, &broken]);

    let (status, server, _) = get(&app, "/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server["name"], "clarity-host");
    assert_eq!(server["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server["extensions"], json!([]));

    assert_eq!(get(&app, "/v2/health/live").await.1, json!({"live": true}));
    let (status, body, _) = get(&app, "/v2/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["error"], "not ready: broken");
    let only_ready = super::app(&[&ready.worker]);
    let (status, body, _) = get(&only_ready, "/v2/health/ready").await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ready": true})));

    for path in ["/v2/models/ready", "/v2/models/ready/versions/1"] {
        let (status, meta, _) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {meta}");
        assert_eq!(meta["name"], "ready");
        assert_eq!(meta["versions"], json!(["1"]));
        assert_eq!(meta["platform"], "clarity_classic");
        assert_eq!(
            meta["inputs"],
            json!([{"name": "question", "datatype": "BYTES", "shape": [-1]},
                   {"name": "context", "datatype": "BYTES", "shape": [-1]}])
        );
        assert_eq!(
            meta["outputs"],
            json!([{"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
                   {"name": "label", "datatype": "BYTES", "shape": [-1]}])
        );
        assert_eq!(meta["parameters"]["labels"], json!(LABELS));
    }
    // A failed model still describes itself, from its configured labels.
    let (status, meta, _) = get(&app, "/v2/models/broken").await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta["outputs"][0]["shape"], json!([-1, 3]));

    let (status, body, _) = get(&app, "/v2/models/ready/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"name": "ready", "ready": true}));
    let (status, body, _) = get(&app, "/v2/models/ready/versions/1/ready").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let cases = [
        ("/v2/models/broken/ready", 503, "unavailable"),
        ("/v2/models/nope", 404, "not_found"),
        ("/v2/models/nope/ready", 404, "not_found"),
        ("/v2/models/ready/versions/2", 404, "not_found"),
        ("/v2/models/ready/versions/2/ready", 404, "not_found"),
    ];
    for (path, status, kind) in cases {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let answer = send(&app, request).await;
        assert_v2_error(&answer, status, kind);
    }
    // The failure's reason stays in the log.
    let answer = send(
        &app,
        Request::get("/v2/models/broken/ready")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert!(
        !answer.1.to_string().contains("no plugin here"),
        "{}",
        answer.1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_answers_scores_and_labels_for_each_pair() {
    let model = fake("m", 64, None);
    let app = app(&[&model.worker]);
    let mut body = infer_body(&["one", "two"]);
    body["id"] = json!("req-7");
    // No Content-Type: Triton's clients send none.
    let answer = send(&app, post("/v2/models/m/infer", body.to_string(), None)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    // Written as f32 digits, as the seed route writes its scores.
    let third = 0.333_333_34;
    assert_eq!(
        answer.1,
        json!({
            "model_name": "m",
            "model_version": "1",
            "id": "req-7",
            "outputs": [
                {"name": "scores", "datatype": "FP32", "shape": [2, 3], "data": vec![third; 6]},
                {"name": "label", "datatype": "BYTES", "shape": [2], "data": [LABELS[0], LABELS[0]]},
            ]
        })
    );
    assert_eq!(model.calls(), vec![2], "both pairs in one batch");

    // Only the requested outputs, in any order asked; the version path; nested data and
    // shape [N, 1]; no `id` when none was sent.
    let mut body = json!({"inputs": [
        {"name": "context", "datatype": "BYTES", "shape": [1, 1], "data": [["Q: q\nA: a"]]},
        {"name": "question", "datatype": "BYTES", "shape": [1, 1], "data": [["three"]]},
    ]});
    body["outputs"] = json!([{"name": "label", "parameters": {"binary_data": false}}]);
    let answer = send(&app, post_json("/v2/models/m/versions/1/infer", &body)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(
        answer.1["outputs"],
        json!([{"name": "label", "datatype": "BYTES", "shape": [1], "data": [LABELS[0]]}])
    );
    assert!(answer.1.get("id").is_none(), "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_error() {
    let model = fake("m", 64, None);
    let broken = spawn("broken", 64, Box::new(|_| Err("no plugin".into())));
    wait_until(|| broken.status().as_str() == "failed");
    let app = app(&[&model.worker, &broken]);
    let route = "/v2/models/m/infer";
    let with_input = |input: Value| json!({"inputs": [bytes_input("question", &["q"]), input]});
    let mut binary = post_json(route, &infer_body(&["q"]));
    binary.headers_mut().insert(
        "inference-header-content-length",
        "99999".parse().expect("header"),
    );
    let cases: Vec<(Request<Body>, u16, &str, &str)> = vec![
        (
            post(route, "{not json", None),
            400,
            "malformed_json",
            "not JSON",
        ),
        (
            post_json(route, &json!([1])),
            400,
            "validation",
            "infer request object",
        ),
        (
            post_json(route, &json!({"inputs": 3})),
            400,
            "validation",
            "`inputs`",
        ),
        (
            post_json(route, &json!({"inputs": [bytes_input("question", &["q"])]})),
            400,
            "validation",
            "both required",
        ),
        (
            post_json(route, &with_input(bytes_input("answer", &["a"]))),
            400,
            "validation",
            "unknown input `answer`",
        ),
        (
            post_json(route, &with_input(bytes_input("question", &["a"]))),
            400,
            "validation",
            "given twice",
        ),
        (
            post_json(
                route,
                &with_input(
                    json!({"name": "context", "datatype": "FP32", "shape": [1], "data": [1.0]}),
                ),
            ),
            400,
            "validation",
            "must be BYTES",
        ),
        (
            post_json(
                route,
                &with_input(
                    json!({"name": "context", "datatype": "BYTES", "shape": [2], "data": ["a"]}),
                ),
            ),
            400,
            "validation",
            "shape [2] says 2",
        ),
        (
            // A shape is the client's word: nothing is allocated by it (this aborted the
            // process once, found by schemathesis).
            post_json(
                route,
                &with_input(
                    json!({"name": "context", "datatype": "BYTES", "shape": [1_000_000_000_000_000_000_i64], "data": ["a"]}),
                ),
            ),
            400,
            "validation",
            "says 1000000000000000000",
        ),
        (
            post_json(
                route,
                &with_input(
                    json!({"name": "context", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}),
                ),
            ),
            400,
            "validation",
            "must be [N]",
        ),
        (
            post_json(
                route,
                &with_input(
                    json!({"name": "context", "datatype": "BYTES", "shape": [1], "data": [7]}),
                ),
            ),
            400,
            "validation",
            "must be strings",
        ),
        (
            post_json(
                route,
                &with_input(json!({"name": "context", "datatype": "BYTES", "shape": [1]})),
            ),
            400,
            "validation",
            "no `data`",
        ),
        (
            post_json(route, &with_input(bytes_input("context", &["a", "b"]))),
            400,
            "validation",
            "must match",
        ),
        (
            post_json(route, &infer_body(&[])),
            400,
            "validation",
            "no pair",
        ),
        (
            post_json(route, &infer_body(&["q", "  "])),
            400,
            "validation",
            "element 1: `question` is empty",
        ),
        (
            post_json(route, &infer_body(&["1", "2", "3", "4", "5"])),
            400,
            "validation",
            "limit is 4",
        ),
        (
            post_json(route, &infer_body(&["bad"])),
            400,
            "validation",
            "refuses `bad`",
        ),
        (
            post_json(
                route,
                &json!({"inputs": infer_body(&["q"])["inputs"], "outputs": [{"name": "probabilities"}]}),
            ),
            400,
            "validation",
            "unknown output `probabilities`",
        ),
        (
            binary,
            400,
            "validation",
            "says the JSON part is 99999 bytes",
        ),
        (
            post(route, "x".repeat(5000), None),
            413,
            "payload_too_large",
            "over the limit",
        ),
        (
            post_json("/v2/models/nope/infer", &infer_body(&["q"])),
            404,
            "not_found",
            "unknown model `nope`",
        ),
        (
            post_json("/v2/models/m/versions/9/infer", &infer_body(&["q"])),
            404,
            "not_found",
            "no version `9`",
        ),
        (
            post_json("/v2/models/broken/infer", &infer_body(&["q"])),
            503,
            "unavailable",
            "not ready",
        ),
        (
            post_json(route, &infer_body(&["fail"])),
            500,
            "plugin_error",
            "request id",
        ),
        (
            post_json(route, &infer_body(&["panic"])),
            500,
            "plugin_panic",
            "request id",
        ),
    ];
    for (request, status, kind, says) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = send(&app, request).await;
        assert_v2_error(&answer, status, kind);
        let error = answer.1["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{what}: `{error}` lacks `{says}`");
        assert!(!error.contains("/srv/secret"), "{what} leaks: {error}");
    }
    let answer = send(
        &app,
        Request::get(route).body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED, "{}", answer.1);
    assert_eq!(
        model.calls(),
        vec![1, 1, 1],
        "only `bad`, `fail` and `panic` reached the model"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_shares_the_in_flight_bound_with_the_seed_routes() {
    let gate = Gate::closed();
    let model = fake("m", 64, Some(Arc::clone(&gate)));
    let limits = Limits {
        max_concurrent_requests: 1,
        ..LIMITS
    };
    let app = app_with(&[&model.worker], limits);
    let running = tokio::spawn(send_owned(app.clone(), pair("running")));
    wait_until(|| model.calls().len() == 1);
    let (refused, headers) =
        send_for_headers(&app, post_json("/v2/models/m/infer", &infer_body(&["q"]))).await;
    assert_v2_error(&refused, 429, "overloaded");
    assert_eq!(retry_after(&headers), Some(1), "{headers:?}");
    gate.open();
    assert_eq!(running.await.expect("task"), StatusCode::OK);
    let answer = send(&app, post_json("/v2/models/m/infer", &infer_body(&["q"]))).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_are_open_and_inference_needs_the_key() {
    let model = fake("m", 64, None);
    let keys = ["v2-key".to_string()];
    let open: Vec<String> = DEFAULT_OPEN_ROUTES.iter().map(|r| r.to_string()).collect();
    let app = app_with_auth(
        &[&model.worker],
        Auth::new(&keys, None, &open).expect("auth"),
    );
    for path in ["/v2/health/live", "/v2/health/ready"] {
        assert_eq!(get(&app, path).await.0, StatusCode::OK, "{path}");
    }
    for path in ["/v2", "/v2/models/m", "/v2/models/m/ready"] {
        assert_eq!(get(&app, path).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    let refused = send(&app, post_json("/v2/models/m/infer", &infer_body(&["q"]))).await;
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED, "{}", refused.1);
    let mut keyed = post_json("/v2/models/m/infer", &infer_body(&["q"]));
    keyed.headers_mut().insert(
        header::AUTHORIZATION,
        "Bearer v2-key".parse().expect("header"),
    );
    let answer = send(&app, keyed).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_v2_route() {
    let model = fake("m", 64, None);
    let app = app(&[&model.worker]);
    let (_, doc, _) = get(&app, "/openapi.json").await;
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/ready", "get"),
        ("/v2/models/{name}/infer", "post"),
        ("/v2/models/{name}/versions/{version}", "get"),
        ("/v2/models/{name}/versions/{version}/ready", "get"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{path} {method}: {doc}");
    }
    let infer = &paths["/v2/models/{name}/infer"]["post"];
    assert_eq!(
        infer["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/V2InferRequest"
    );
    for status in ["400", "404", "429", "503", "504"] {
        assert!(infer["responses"][status].is_object(), "{status}: {infer}");
    }
    assert!(doc["components"]["schemas"]["V2Error"]["required"] == json!(["error"]));
}

/// A body in the binary tensor extension: the JSON, then each input's raw BYTES.
fn binary_request(json_part: &Value, tail: &[u8]) -> Request<Body> {
    let mut body = json_part.to_string().into_bytes();
    let length = body.len();
    body.extend_from_slice(tail);
    let mut request = post("/v2/models/m/infer", body, Some("application/octet-stream"));
    request.headers_mut().insert(
        "inference-header-content-length",
        length.to_string().parse().expect("header"),
    );
    request
}

fn raw_bytes(items: &[&str]) -> Vec<u8> {
    items
        .iter()
        .flat_map(|s| {
            let mut raw = (s.len() as u32).to_le_bytes().to_vec();
            raw.extend_from_slice(s.as_bytes());
            raw
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_tensor_extension_works_both_ways() {
    let model = fake("m", 64, None);
    let app = app(&[&model.worker]);
    let questions = raw_bytes(&["one", "two"]);
    let contexts = raw_bytes(&["Q: a\nA: b", "Q: c\nA: d"]);
    let tensor = |name: &str, size: usize| json!({"name": name, "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": size}});
    // Triton's client default: binary inputs, and no `outputs` but binary_data_output.
    let header = json!({"inputs": [tensor("question", questions.len()), tensor("context", contexts.len())],
                        "parameters": {"binary_data_output": true}});
    let tail = [questions.clone(), contexts.clone()].concat();
    let response = app
        .clone()
        .oneshot(binary_request(&header, &tail))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .expect("header")
        .parse()
        .expect("length");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&bytes[..json_length]).expect("JSON part");
    let scores = &answer["outputs"][0];
    assert_eq!(scores["name"], "scores");
    assert_eq!(scores["parameters"]["binary_data_size"], 24, "{answer}");
    assert!(scores.get("data").is_none(), "{answer}");
    let blob = &bytes[json_length..];
    let floats: Vec<f32> = blob[..24]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(floats, vec![1.0 / 3.0; 6]);
    assert_eq!(&blob[24..], raw_bytes(&[LABELS[0], LABELS[0]]).as_slice());
    assert_eq!(
        answer["outputs"][1]["parameters"]["binary_data_size"],
        blob.len() - 24
    );

    // Binary in, JSON out when the output asks for it; JSON in, binary out for one output.
    let mut header = json!({"inputs": [tensor("question", questions.len()), tensor("context", contexts.len())],
                            "outputs": [{"name": "label", "parameters": {"binary_data": false}}]});
    let answer = send(&app, binary_request(&header, &tail)).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    assert_eq!(
        answer.1["outputs"][0]["data"],
        json!([LABELS[0], LABELS[0]])
    );
    let mut mixed = infer_body(&["q"]);
    mixed["outputs"] = json!([{"name": "label", "parameters": {"binary_data": true}}]);
    let response = app
        .clone()
        .oneshot(post_json("/v2/models/m/infer", &mixed))
        .await
        .expect("infallible");
    assert!(response
        .headers()
        .contains_key("inference-header-content-length"));

    // Sizes that do not add up are 400s that say which input.
    header["inputs"][0]["parameters"]["binary_data_size"] = json!(questions.len() + 1);
    let answer = send(&app, binary_request(&header, &tail)).await;
    assert_v2_error(&answer, 400, "validation");
    assert!(
        answer.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("input `question`"),
        "{}",
        answer.1
    );
    let header =
        json!({"inputs": [tensor("question", questions.len()), tensor("context", contexts.len())]});
    let answer = send(
        &app,
        binary_request(&header, &[tail.clone(), vec![0]].concat()),
    )
    .await;
    assert_v2_error(&answer, 400, "validation");
    assert!(
        answer.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("belong to no input"),
        "{}",
        answer.1
    );
    let mut both = header.clone();
    both["inputs"][0]["data"] = json!(["one", "two"]);
    let answer = send(&app, binary_request(&both, &tail)).await;
    assert_v2_error(&answer, 400, "validation");
    assert_eq!(
        model.calls(),
        vec![2, 2, 1],
        "only the good requests reached the model"
    );
}
