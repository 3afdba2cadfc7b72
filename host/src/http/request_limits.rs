//! Limits checked on a request's head, before any work: a URI over [`MAX_URI_BYTES`] is
//! answered 414, and a `Content-Length` over the body limit 413 at once (otherwise a client
//! that declares a huge body and sends a few bytes would hold its connection and an
//! in-flight slot until `--request-timeout`). Both with the API's JSON error and request id.
//! hyper's own URI limit (65,534 bytes, fixed) lies beyond its header-size limit, so the
//! 414 here is the one clients see.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest accepted request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Answer 414 to a request whose URI is over [`MAX_URI_BYTES`], and 413 to one that
/// declares a body over `body_limit` bytes.
pub async fn check(State(body_limit): State<usize>, request: Request, next: Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!(
            "the request URI is {length} bytes; the limit is {MAX_URI_BYTES}"
        ))
        .into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared {
        if declared > body_limit as u64 {
            return ApiError::PayloadTooLarge(format!(
                "request body is over the limit: Content-Length {declared} bytes, the limit is {body_limit} (--body-limit)"
            ))
            .into_response();
        }
    }
    next.run(request).await
}
