//! The whole router in-process over workers with fake backends: every status the API
//! answers, batching, the one-by-one retry after a failed batch, and a backend that gets
//! the shape of its answer wrong. No sockets, no plugins: these run in milliseconds.

use super::{router, AppState, Limits};
use crate::backend::{Classify, LoadedModel};
use crate::worker::{ModelWorker, Startup};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use clarity_sdk::{Error as SdkError, ErrorKind, ModelInfo, ModelSpec, TextPair};
use serde_json::{json, Value};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

mod auth;
mod cors;
mod reload;
mod truncate;
mod v2;

const LABELS: [&str; 3] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];

/// A door the fake backend waits at, so a test decides when a batch finishes.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn closed() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }
}

/// Scores uniformly, except for questions that ask it to misbehave: `bad` (refused input),
/// `fail` (an internal error), `panic` (a caught panic), `wide` (one score too many).
struct Fake {
    calls: Arc<Mutex<Vec<usize>>>,
    gate: Option<Arc<Gate>>,
}

impl Classify for Fake {
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        self.calls.lock().unwrap().push(pairs.len());
        if let Some(gate) = &self.gate {
            gate.wait();
        }
        let asks = |word: &str| pairs.iter().any(|p| p.question() == word);
        if asks("bad") {
            return Err(SdkError::input("the fake refuses `bad` questions"));
        }
        if asks("fail") {
            return Err(SdkError::other("cannot read /srv/secret/model.onnx"));
        }
        if asks("panic") {
            return Err(SdkError::new(
                ErrorKind::Panic,
                "plugin panicked in classify_batch: secret panic text",
            ));
        }
        let width = LABELS.len() + usize::from(asks("wide"));
        Ok(pairs
            .iter()
            .map(|_| vec![1.0 / width as f32; width])
            .collect())
    }
}

/// A served fake model and what its backend saw.
struct Served {
    worker: Arc<ModelWorker>,
    calls: Arc<Mutex<Vec<usize>>>,
}

impl Served {
    fn calls(&self) -> Vec<usize> {
        self.calls.lock().unwrap().clone()
    }
}

fn spec(name: &str, queue_capacity: usize) -> ModelSpec {
    serde_json::from_value(json!({
        "name": name,
        "type": "classic",
        "label_config": {"labels": LABELS},
        "serving_config": {"max_batch_size": 32, "queue_capacity": queue_capacity,
                           "max_request_pairs": 4},
    }))
    .expect("a valid model entry")
}

fn spawn(name: &str, queue_capacity: usize, startup: Startup) -> Arc<ModelWorker> {
    let worker = ModelWorker::spawn(spec(name, queue_capacity), "fake".into(), startup);
    Arc::new(worker.expect("worker thread"))
}

/// A fake model that becomes ready at once; `gate` holds every batch until opened.
fn fake(name: &str, queue_capacity: usize, gate: Option<Arc<Gate>>) -> Served {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let backend = Fake {
        calls: Arc::clone(&calls),
        gate,
    };
    let labels = LABELS.iter().map(|l| l.to_string()).collect();
    let info = ModelInfo::new("fake", labels);
    let worker = spawn(
        name,
        queue_capacity,
        Box::new(move |_| Ok(LoadedModel::new(Box::new(backend), info))),
    );
    wait_until(|| worker.status().as_str() == "ready");
    Served { worker, calls }
}

const LIMITS: Limits = Limits {
    body_bytes: 4096,
    timeout: Duration::from_secs(30),
    max_concurrent_requests: 512,
};

fn app(workers: &[&Arc<ModelWorker>]) -> Router {
    app_with(workers, LIMITS)
}

fn app_with_auth(workers: &[&Arc<ModelWorker>], auth: super::auth::Auth) -> Router {
    app_with_state(workers, LIMITS, auth)
}

fn app_with(workers: &[&Arc<ModelWorker>], limits: Limits) -> Router {
    app_with_state(workers, limits, super::auth::Auth::default())
}

fn app_with_state(
    workers: &[&Arc<ModelWorker>],
    limits: Limits,
    auth: super::auth::Auth,
) -> Router {
    let models = workers.iter().map(|w| Arc::clone(w)).collect();
    router(AppState::fixed(models, None, auth), limits)
}

fn wait_until(done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn post(route: &str, body: impl Into<Body>, content_type: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(Method::POST).uri(route);
    if let Some(ct) = content_type {
        request = request.header(header::CONTENT_TYPE, ct);
    }
    request.body(body.into()).expect("request")
}

fn post_json(route: &str, body: &Value) -> Request<Body> {
    post(route, body.to_string(), Some("application/json"))
}

fn pair(question: &str) -> Value {
    json!({"question": question, "context": "Q: a question\nA: an answer"})
}

/// Status and JSON body (`Value::Null` if the body is not JSON).
async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value, Option<String>) {
    send_for_headers(app, request).await.0
}

/// [`send`], and the response's headers.
async fn send_for_headers(
    app: &Router,
    request: Request<Body>,
) -> ((StatusCode, Value, Option<String>), HeaderMap) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let headers = response.headers().clone();
    let status = response.status();
    let id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    ((status, body, id), headers)
}

/// The `Retry-After` header as whole seconds.
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Assert an error answer: status, kind, a message, the request id in body and header.
fn assert_error(answer: &(StatusCode, Value, Option<String>), status: u16, kind: &str) {
    let (got, body, id) = answer;
    assert_eq!(got.as_u16(), status, "{body}");
    assert_eq!(body["kind"], kind, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert_eq!(body["request_id"].as_str(), id.as_deref(), "{body}");
    assert_eq!(body["detail"], body["error"], "FastAPI's field: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_the_api_answers() {
    let ready = fake("ready", 64, None);
    let broken = spawn(
        "broken",
        64,
        Box::new(|_| Err("cannot open /srv/secret/libplugin.so".into())),
    );
    wait_until(|| broken.status().as_str() == "failed");
    let loading_gate = Gate::closed();
    let held = Arc::clone(&loading_gate);
    let loading = spawn(
        "loading",
        64,
        Box::new(move |_| {
            held.wait();
            Err("never loads".into())
        }),
    );
    let app = app(&[&ready.worker, &broken, &loading]);
    let route = "/classify/ready";

    let ok = send(&app, post_json(route, &pair("q"))).await;
    assert_eq!(ok.0, StatusCode::OK, "{}", ok.1);
    assert_eq!(ok.1["clarity_label"], "Clear Reply");
    assert!(ok.2.is_some(), "every response has an x-request-id");
    let batch = json!([pair("one"), pair("two")]);
    let list = send(&app, post_json(route, &batch)).await;
    assert_eq!(list.1.as_array().map(Vec::len), Some(2), "{}", list.1);

    let cases: Vec<(Request<Body>, u16, &str)> = vec![
        (
            post(route, "{not json", Some("application/json")),
            400,
            "malformed_json",
        ),
        (
            post(route, "x".repeat(5000), Some("application/json")),
            413,
            "payload_too_large",
        ),
        (
            post(route, pair("q").to_string(), None),
            415,
            "unsupported_media_type",
        ),
        (
            post(route, "{}", Some("text/plain")),
            415,
            "unsupported_media_type",
        ),
        (
            post_json(route, &json!({"question": "q"})),
            422,
            "validation",
        ),
        (post_json(route, &pair("  ")), 422, "validation"),
        // No visible character: NULs, other controls, a BOM (the schema's `pattern` agrees).
        (post_json(route, &pair("\u{0}\u{0}")), 422, "validation"),
        (post_json(route, &pair("\t\u{7f}\u{85}")), 422, "validation"),
        (post_json(route, &pair("\u{feff}")), 422, "validation"),
        (
            post_json(route, &json!({"question": "q", "context": "\u{0}\n"})),
            422,
            "validation",
        ),
        (post_json(route, &json!([])), 422, "validation"),
        (post_json(route, &json!("text")), 422, "validation"),
        (
            post_json(
                route,
                &json!([pair("1"), pair("2"), pair("3"), pair("4"), pair("5")]),
            ),
            422,
            "validation",
        ),
        (post_json(route, &pair("bad")), 422, "validation"),
        (post_json("/classify/nothing", &pair("q")), 404, "not_found"),
        (
            Request::get(route).body(Body::empty()).expect("request"),
            405,
            "method_not_allowed",
        ),
        (post_json(route, &pair("fail")), 500, "plugin_error"),
        (post_json(route, &pair("panic")), 500, "plugin_panic"),
        (post_json(route, &pair("wide")), 500, "plugin_error"),
        (
            post_json("/classify/broken", &pair("q")),
            503,
            "unavailable",
        ),
        (
            post_json("/classify/loading", &pair("q")),
            503,
            "unavailable",
        ),
    ];
    for (request, status, kind) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = send(&app, request).await;
        assert_error(&answer, status, kind);
        let text = answer.1.to_string();
        // 5xx bodies say what failed and the request id, never internals.
        if status >= 500 {
            for secret in ["/srv/secret", "secret panic text", "never loads"] {
                assert!(!text.contains(secret), "{what} leaks `{secret}`: {text}");
            }
            let id = answer.2.unwrap_or_default();
            assert!(text.contains(&id), "{what}: {text}");
        }
    }
    // The refused input's own message reaches the client: it is about the request.
    let refused = send(&app, post_json(route, &pair("bad"))).await;
    assert!(refused.1["error"]
        .as_str()
        .unwrap_or_default()
        .contains("refuses `bad`"));
    // A client's own request id is kept.
    let mut tagged = post_json(route, &pair("fail"));
    tagged
        .headers_mut()
        .insert("x-request-id", "trace-42".parse().expect("header"));
    let answer = send(&app, tagged).await;
    assert_eq!(answer.2.as_deref(), Some("trace-42"));
    assert_eq!(answer.1["request_id"], "trace-42");
    loading_gate.open();
}

async fn get(app: &Router, path: &str) -> (StatusCode, Value, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_clarity_fields_are_served_beside_ours() {
    let ready = fake("ready", 64, None);
    let broken = spawn("broken", 64, Box::new(|_| Err("no plugin".into())));
    wait_until(|| broken.status().as_str() == "failed");
    let app = app(&[&ready.worker, &broken]);

    let (status, health, _) = get(&app, "/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health, json!({"status": "ok", "models_loaded": 1}));
    let (_, index, _) = get(&app, "/").await;
    assert_eq!(
        index["endpoints"],
        json!(["/classify/ready", "/classify/broken"])
    );
    assert_eq!(index["service"], "clarity-host");
    assert_eq!(index["models"][1]["status"], "failed");

    let (status, ready_body, _) = get(&app, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready_body["detail"], "not ready: broken");
    assert_eq!(ready_body["detail"], ready_body["error"]);

    let (status, _, page) = get(&app, "/redoc").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("redoc.standalone.js"), "{page}");
    assert!(page.contains("Redoc.init('/openapi.json'"), "{page}");
    assert!(
        page.contains("POST /classify/ready"),
        "offline fallback: {page}"
    );

    let (_, spec, _) = get(&app, "/openapi.json").await;
    let schemas = &spec["components"]["schemas"];
    assert_eq!(schemas["Error"]["properties"]["detail"]["type"], "string");
    assert_eq!(
        schemas["Health"]["required"],
        json!(["status", "models_loaded"])
    );
    assert!(schemas["Index"]["properties"]["endpoints"].is_object());
    assert!(spec["paths"]["/redoc"]["get"].is_object(), "{spec}");
    let classify = &spec["paths"]["/classify/ready"]["post"]["responses"];
    assert_eq!(
        classify["429"]["headers"]["Retry-After"]["schema"]["type"], "integer",
        "{classify}"
    );
    assert!(classify["504"]["description"].is_string(), "{classify}");
    assert_eq!(
        spec["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Health"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_batch() {
    let gate = Gate::closed();
    let model = fake("m", 64, Some(Arc::clone(&gate)));
    let app = app(&[&model.worker]);
    // The first request holds the worker; the next seven queue up behind it.
    let first = tokio::spawn(send_owned(app.clone(), pair("first")));
    wait_until(|| model.calls().len() == 1);
    let rest: Vec<_> = (0..7)
        .map(|i| tokio::spawn(send_owned(app.clone(), pair(&format!("q{i}")))))
        .collect();
    wait_until(|| model.worker.queued() == 7);
    gate.open();
    assert_eq!(first.await.expect("task"), StatusCode::OK);
    for r in rest {
        assert_eq!(r.await.expect("task"), StatusCode::OK);
    }
    assert_eq!(
        model.calls(),
        vec![1, 7],
        "the seven queued requests ran as one batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_one_by_one_so_only_the_culprit_fails() {
    let gate = Gate::closed();
    let model = fake("m", 64, Some(Arc::clone(&gate)));
    let app = app(&[&model.worker]);
    let first = tokio::spawn(send_owned(app.clone(), pair("first")));
    wait_until(|| model.calls().len() == 1);
    let questions = ["a", "bad", "b", "c"];
    let mut answers = Vec::new();
    for q in questions {
        answers.push(tokio::spawn(send_owned(app.clone(), pair(q))));
        // In this order, so the one-by-one calls below are in a known order too.
        let queued = answers.len();
        wait_until(|| model.worker.queued() == queued);
    }
    gate.open();
    assert_eq!(first.await.expect("task"), StatusCode::OK);
    for (q, answer) in questions.iter().zip(answers) {
        let expected = if *q == "bad" {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        assert_eq!(answer.await.expect("task"), expected, "question {q}");
    }
    assert_eq!(model.calls(), vec![1, 4, 1, 1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once() {
    let gate = Gate::closed();
    let model = fake("m", 1, Some(Arc::clone(&gate)));
    let app = app(&[&model.worker]);
    let running = tokio::spawn(send_owned(app.clone(), pair("running")));
    wait_until(|| model.calls().len() == 1);
    let waiting = tokio::spawn(send_owned(app.clone(), pair("waiting")));
    wait_until(|| model.worker.queued() == 1);
    let (refused, headers) =
        send_for_headers(&app, post_json("/classify/m", &pair("refused"))).await;
    assert_error(&refused, 429, "overloaded");
    // No batch has finished yet, so there is no pace to estimate from: the floor, 1 s.
    assert_eq!(retry_after(&headers), Some(1), "{headers:?}");
    gate.open();
    assert_eq!(running.await.expect("task"), StatusCode::OK);
    assert_eq!(waiting.await.expect("task"), StatusCode::OK);
    assert_eq!(
        model.calls(),
        vec![1, 1],
        "the refused pair was never scored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_max_concurrent_are_refused_at_once_across_models() {
    let gate = Gate::closed();
    let a = fake("m", 64, Some(Arc::clone(&gate)));
    let b = fake("other", 64, Some(Arc::clone(&gate)));
    let limits = Limits {
        max_concurrent_requests: 2,
        ..LIMITS
    };
    let app = app_with(&[&a.worker, &b.worker], limits);
    let running = tokio::spawn(send_owned(app.clone(), pair("running")));
    wait_until(|| a.calls().len() == 1);
    let waiting = tokio::spawn(send_owned(app.clone(), pair("waiting")));
    wait_until(|| a.worker.queued() == 1);
    // The bound is global: the other model's route is refused too, with its queue empty.
    let started = Instant::now();
    let (refused, headers) =
        send_for_headers(&app, post_json("/classify/other", &pair("refused"))).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );
    assert_error(&refused, 429, "overloaded");
    assert!(
        refused.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--max-concurrent-requests"),
        "{}",
        refused.1
    );
    assert_eq!(retry_after(&headers), Some(1), "{headers:?}");
    // Routes that are not model requests stay open.
    assert_eq!(get(&app, "/health").await.0, StatusCode::OK);
    gate.open();
    assert_eq!(running.await.expect("task"), StatusCode::OK);
    assert_eq!(waiting.await.expect("task"), StatusCode::OK);
    assert!(b.calls().is_empty(), "the refused request reached no model");
    // Slots are given back when requests finish.
    let again = send(&app, post_json("/classify/other", &pair("again"))).await;
    assert_eq!(again.0, StatusCode::OK, "{}", again.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_gets_json_504_and_its_pairs_are_not_scored() {
    let gate = Gate::closed();
    let model = fake("m", 64, Some(Arc::clone(&gate)));
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..LIMITS
    };
    let app = app_with(&[&model.worker], limits);
    let running = tokio::spawn(send_owned(app.clone(), pair("running")));
    wait_until(|| model.calls().len() == 1);
    let started = Instant::now();
    let late = send(
        &app,
        post_json("/classify/m", &json!([pair("late1"), pair("late2")])),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_error(&late, 504, "timeout");
    assert!(
        late.1["error"]
            .as_str()
            .unwrap_or_default()
            .contains("--request-timeout"),
        "{}",
        late.1
    );
    // The running request times out too; its batch had started, so it finishes unseen.
    assert_eq!(running.await.expect("task"), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        model.worker.queued(),
        0,
        "the timed-out pairs gave their queue room back at once"
    );
    gate.open();
    // A request after the timeouts is answered; the late pairs, queued before it, were
    // dropped instead of scored.
    let after = send(&app, post_json("/classify/m", &pair("after"))).await;
    assert_eq!(after.0, StatusCode::OK, "{}", after.1);
    assert_eq!(
        model.calls(),
        vec![1, 1],
        "only `running` and `after` were scored"
    );
    assert_eq!(model.worker.queued(), 0);
}

async fn send_owned(app: Router, body: Value) -> StatusCode {
    send(&app, post_json("/classify/m", &body)).await.0
}

#[tokio::test]
async fn text_with_one_visible_character_is_accepted_and_the_schema_says_the_same() {
    let served = fake("m", 64, None);
    let app = app(&[&served.worker]);
    for question in ["a\u{0}", " ?", "\u{202e}x", "\u{4e2d}"] {
        let (status, body, _) = send(&app, post_json("/classify/m", &pair(question))).await;
        assert_eq!(status, StatusCode::OK, "{question:?}: {body}");
    }
    let (_, doc, _) = send(
        &app,
        Request::get("/openapi.json")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    let pair_schema = &doc["components"]["schemas"]["Pair"]["properties"];
    for field in ["question", "context"] {
        assert_eq!(
            pair_schema[field]["pattern"],
            super::openapi::VISIBLE_TEXT,
            "{doc}"
        );
    }
}
