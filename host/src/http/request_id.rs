//! Every response carries an `x-request-id` (the client's own, when it sent a sane one), and
//! every error body names it: the middleware here logs an error's full detail under that id
//! and writes the JSON body the client gets (see [`super::error`]).

use super::error::{BodyStyle, ErrorBody, ErrorReport};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The header that carries the id both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied id we keep (longer ones are replaced by our own).
const MAX_CLIENT_ID: usize = 64;

/// The request's id, as an extension handlers can read.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Middleware: assign the id, log errors under it, and put it in the response.
pub async fn assign(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v))
        .map(str::to_owned)
        .unwrap_or_else(new_id);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Some(mut report) = response.extensions_mut().remove::<ErrorReport>() {
        let status = response.status();
        let line = format!(
            "{method} {path} -> {} {} [request {id}]: {}",
            status.as_u16(),
            report.kind,
            report.detail
        );
        if status.is_server_error() {
            tracing::error!("{line}");
        } else {
            tracing::debug!("{line}");
        }
        // Errors from the layers (401, 429, 504) on a protocol route take its shape too.
        if super::v2::is_v2_path(&path) {
            report.style = BodyStyle::OpenInference;
        }
        response = with_body(response, &report, &id);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

/// The error body with the request id, keeping the status and any other headers
/// (`Retry-After`, ...).
fn with_body(response: Response, report: &ErrorReport, id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    let public = if parts.status.is_server_error() {
        format!(
            "{}; the server log has the details under request id {id}",
            report.public
        )
    } else {
        report.public.clone()
    };
    let body = ErrorBody {
        error: &public,
        kind: report.kind,
        detail: (report.style == BodyStyle::Clarity).then_some(public.as_str()),
        request_id: Some(id),
    };
    let fresh = Json(body).into_response();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let (fresh_parts, fresh_body) = fresh.into_parts();
    parts.headers.extend(fresh_parts.headers);
    Response::from_parts(parts, fresh_body)
}

/// Printable, short, and free of anything a log line could be confused by.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLIENT_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// 16 random hex digits.
fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(is_sane("abc-123_x.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane("line\nbreak"));
        assert!(!is_sane(&"a".repeat(MAX_CLIENT_ID + 1)));
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(is_sane(&id));
    }
}
