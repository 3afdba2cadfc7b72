//! Cross-origin requests (`--cors-origin`): off by default, so a browser page from another
//! origin cannot read the API's answers unless the operator names that origin.
//!
//! The layer wraps the whole application, outside the API-key check: a browser's preflight
//! `OPTIONS` carries no `Authorization` header and must be answered, while the request that
//! follows still needs the key.

use axum::http::{header, HeaderValue, Method};
use axum::Router;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// A `--cors-origin` value that is not an origin.
#[derive(Debug, thiserror::Error)]
#[error(
    "--cors-origin {value:?} is not an origin: give scheme://host[:port] (e.g. \
     https://app.example.com, no path or trailing slash) or * for any origin"
)]
pub struct BadOrigin {
    /// The value given.
    pub value: String,
}

/// The layer answering cross-origin requests from `origins` (`*`: any); `None` when there
/// are none (CORS off).
pub fn layer(origins: &[String]) -> Result<Option<CorsLayer>, BadOrigin> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .map(|o| parse_origin(o))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                super::request_id::HEADER,
            ])
            .expose_headers([super::request_id::HEADER, header::RETRY_AFTER])
            .max_age(PREFLIGHT_MAX_AGE),
    ))
}

/// `app` with `cors` around everything, when set.
pub fn wrap(app: Router, cors: Option<CorsLayer>) -> Router {
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn parse_origin(value: &str) -> Result<HeaderValue, BadOrigin> {
    let bad = || BadOrigin {
        value: value.to_string(),
    };
    let (scheme, rest) = value.split_once("://").ok_or_else(bad)?;
    let host_ok = !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']);
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(bad());
    }
    HeaderValue::from_str(value).map_err(|_| bad())
}
