//! The playground: one self-contained page (`playground/index.html`, embedded in the binary,
//! no external script, style or font) at `/ui`, and at `/` for browsers. It lists the models
//! from `GET /`, sends a pair to one or every ready model and draws the scores as bars, and
//! classifies a pasted or uploaded JSON/JSONL list, with accuracy, macro-F1 and the confusion
//! matrix when the rows carry labels.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

/// The page.
const PAGE: &str = include_str!("playground/index.html");

/// Scripts and styles are inline and every request goes to this server: nothing else loads.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// `GET /ui` (and `GET /` from a browser).
pub async fn page() -> Response {
    let mut response = Html(PAGE).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// A browser navigating: `Accept` names `text/html` before any JSON type (and not with
/// `q=0`). API clients (`*/*`, `application/json`, no header) keep the JSON.
pub fn wants_page(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let kind = parts.next().unwrap_or("").to_ascii_lowercase();
        let refused = parts.any(|p| p.replace(' ', "") == "q=0");
        match kind.as_str() {
            "text/html" | "application/xhtml+xml" => return !refused,
            "application/json" => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn browsers_get_the_page_and_api_clients_the_json() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
        assert!(wants_page(&accept(chrome)));
        assert!(wants_page(&accept("application/xhtml+xml")));
        assert!(!wants_page(&accept("*/*")));
        assert!(!wants_page(&accept("application/json")));
        assert!(!wants_page(&accept("application/json, text/html")));
        assert!(!wants_page(&accept("text/html;q=0")));
        assert!(!wants_page(&HeaderMap::new()));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for external in ["http://", "https://", "src=", "@import", "url("] {
            assert!(!PAGE.contains(external), "the page refers to {external}");
        }
        // Every form field has a label.
        for id in [
            "api-key",
            "model",
            "question",
            "context",
            "batch-model",
            "batch-text",
            "batch-file",
        ] {
            assert!(
                PAGE.contains(&format!("for=\"{id}\"")),
                "no label for #{id}"
            );
            assert!(PAGE.contains(&format!("id=\"{id}\"")), "no field #{id}");
        }
    }
}
