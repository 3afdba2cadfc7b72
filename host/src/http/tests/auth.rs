//! API keys in-process: 401 without a key, with a wrong or malformed one (and the RFC 6750
//! challenge), 200 with each configured key, the open routes, and the OpenAPI scheme.

use super::*;
use crate::http::auth::{Auth, DEFAULT_OPEN_ROUTES};

const KEYS: [&str; 2] = ["alpha-key-1", "beta-key-22"];

fn keyed(open: &[&str]) -> Auth {
    let keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
    let open: Vec<String> = open.iter().map(|r| r.to_string()).collect();
    Auth::new(&keys, None, &open).expect("valid keys")
}

fn request(method: Method, route: &str, authorization: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(route);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let body = if route.starts_with("/classify") {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from(pair("Will you sign it?").to_string())
    } else {
        Body::empty()
    };
    request.body(body).expect("request")
}

/// Status, body and the `WWW-Authenticate` header.
async fn call(app: &Router, request: Request<Body>) -> (StatusCode, Value, Option<String>) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let id = response.headers().get("x-request-id").cloned();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(body["kind"], "unauthorized", "{body}");
        assert_eq!(body["detail"], body["error"], "{body}");
        let id = id.expect("x-request-id header");
        assert_eq!(body["request_id"].as_str(), id.to_str().ok(), "{body}");
    }
    (status, body, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_routes_need_one_of_the_keys() {
    let served = fake("guarded", 64, None);
    let app = app_with_auth(&[&served.worker], keyed(&DEFAULT_OPEN_ROUTES));
    let route = "/classify/guarded";

    let (status, body, challenge) = call(&app, request(Method::POST, route, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="clarity""#));
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");

    for wrong in [
        "Bearer alpha-key-2",
        "Bearer alpha-key-1x",
        "Bearer a",
        "bearer beta",
    ] {
        let (status, body, challenge) = call(&app, request(Method::POST, route, Some(wrong))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}: {body}");
        assert_eq!(
            challenge.as_deref(),
            Some(r#"Bearer realm="clarity", error="invalid_token""#),
            "{wrong}"
        );
        assert!(!body.to_string().contains("alpha-key-1"), "{body}");
    }
    for malformed in ["alpha-key-1", "Basic YWxwaGEta2V5LTE=", "Bearer ", "Bearer"] {
        let (status, body, challenge) =
            call(&app, request(Method::POST, route, Some(malformed))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{malformed}: {body}");
        assert_eq!(
            challenge.as_deref(),
            Some(r#"Bearer realm="clarity", error="invalid_request""#),
            "{malformed}"
        );
    }
    assert!(served.calls().is_empty(), "no request reached the model");

    for key in KEYS {
        for scheme in ["Bearer", "bearer"] {
            let value = format!("{scheme} {key}");
            let (status, body, _) = call(&app, request(Method::POST, route, Some(&value))).await;
            assert_eq!(status, StatusCode::OK, "{value}: {body}");
            assert_eq!(body["clarity_label"], LABELS[0], "{body}");
        }
    }
    assert_eq!(served.calls().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_metrics_stay_open_and_the_rest_is_guarded() {
    let served = fake("guarded", 64, None);
    let app = app_with_auth(&[&served.worker], keyed(&DEFAULT_OPEN_ROUTES));
    let (status, body, _) = call(&app, request(Method::GET, "/health", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    let (status, body, _) = call(&app, request(Method::GET, "/ready", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No recorder in these tests: /metrics answers 503, but not 401.
    let (status, body, _) = call(&app, request(Method::GET, "/metrics", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // The model list, the docs and unknown paths say nothing without a key.
    for route in ["/", "/openapi.json", "/docs", "/redoc", "/nope"] {
        let (status, body, _) = call(&app, request(Method::GET, route, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: {body}");
    }
    let (status, body, _) = call(&app, request(Method::GET, "/", Some("Bearer beta-key-22"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["models"][0]["name"], "guarded", "{body}");

    // `none` closes even /health.
    let closed = app_with_auth(&[&served.worker], keyed(&["none"]));
    let (status, body, _) = call(&closed, request(Method::GET, "/health", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_marks_the_guarded_operations() {
    let served = fake("guarded", 64, None);
    let guarded = app_with_auth(&[&served.worker], keyed(&["/health", "/openapi.json"]));
    let (status, doc, _) = call(&guarded, request(Method::GET, "/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let classify = &doc["paths"]["/classify/guarded"]["post"];
    assert_eq!(
        classify["security"],
        json!([{"bearerAuth": []}]),
        "{classify}"
    );
    assert!(classify["responses"]["401"].is_object(), "{classify}");
    assert!(doc["paths"]["/"]["get"]["security"].is_array());
    assert!(doc["paths"]["/health"]["get"].get("security").is_none());
    // /ready is not open in this configuration.
    assert!(doc["paths"]["/ready"]["get"]["security"].is_array());

    // Without keys the document names no scheme.
    let open = app(&[&served.worker]);
    let (_, doc, _) = call(&open, request(Method::GET, "/openapi.json", None)).await;
    assert!(doc["components"].get("securitySchemes").is_none(), "{doc}");
    assert!(doc["paths"]["/classify/guarded"]["post"]
        .get("security")
        .is_none());
}
