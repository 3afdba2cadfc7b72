//! Long URIs: no route takes a path or query anywhere near [`MAX_URI_BYTES`], so a longer one
//! is answered 414 with the API's JSON error (and the request id) before any other work.
//! hyper's own limit (65,534 bytes, fixed) lies beyond the header-size limit, so this is the
//! 414 clients see.

use super::error::ApiError;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest accepted request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Answer 414 to a request whose URI is over [`MAX_URI_BYTES`].
pub async fn check(request: Request, next: Next) -> Response {
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
    next.run(request).await
}
