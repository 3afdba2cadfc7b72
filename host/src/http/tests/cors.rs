//! CORS in-process: no CORS headers unless origins are configured; a configured origin gets
//! its preflight answered even when API keys guard the route, and other origins do not.

use super::*;
use crate::http::cors;

fn with_cors(worker: &Arc<ModelWorker>, origins: &[&str], keys: &[&str]) -> Router {
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let auth = super::super::auth::Auth::new(&keys, None, &[]).expect("keys");
    let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
    let layer = cors::layer(&origins).expect("valid origins");
    cors::wrap(app_with_auth(&[worker], auth), layer)
}

fn preflight(origin: &str) -> Request<Body> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/classify/m")
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .expect("request")
}

fn allowed_origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let served = fake("m", 64, None);
    let app = with_cors(&served.worker, &[], &[]);
    let mut request = post_json("/classify/m", &pair("From a page?"));
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://page.example".parse().unwrap());
    let ((status, _, _), headers) = send_for_headers(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allowed_origin(&headers), None);
    let ((status, _, _), headers) = send_for_headers(&app, preflight("https://page.example")).await;
    assert_eq!(allowed_origin(&headers), None, "{status}");
}

#[tokio::test]
async fn a_configured_origin_passes_preflight_before_the_key_check() {
    let served = fake("m", 64, None);
    let app = with_cors(&served.worker, &["https://page.example"], &["k-123456"]);
    let ((status, _, _), headers) = send_for_headers(&app, preflight("https://page.example")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the preflight carries no key and must not get 401"
    );
    assert_eq!(allowed_origin(&headers), Some("https://page.example"));
    let allowed = headers
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    // The real request still needs the key, and its answer carries the CORS headers.
    let mut request = post_json("/classify/m", &pair("From a page?"));
    request
        .headers_mut()
        .insert(header::ORIGIN, "https://page.example".parse().unwrap());
    let ((status, body, _), headers) = send_for_headers(&app, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(allowed_origin(&headers), Some("https://page.example"));
    let exposed = headers
        .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // Another origin is not allowed.
    let (_, headers) = send_for_headers(&app, preflight("https://evil.example")).await;
    assert_eq!(allowed_origin(&headers), None);
}

#[tokio::test]
async fn a_star_allows_any_origin() {
    let served = fake("m", 64, None);
    let app = with_cors(&served.worker, &["*"], &[]);
    let (_, headers) = send_for_headers(&app, preflight("https://any.example")).await;
    assert_eq!(allowed_origin(&headers), Some("*"));
}

#[test]
fn values_that_are_not_origins_are_refused_with_the_fix() {
    for bad in [
        "page.example",
        "https://page.example/",
        "ftp://x",
        "https://a b",
    ] {
        let err = cors::layer(&[bad.to_string()]).expect_err(bad);
        assert!(err.to_string().contains("scheme://host[:port]"), "{err}");
    }
    assert!(cors::layer(&["http://localhost:3000".into()]).is_ok());
}
