//! API errors: every failure is JSON `{"error": "...", "kind": "..."}` with a fitting status.

use crate::worker::ClassifyError;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarity_sdk::ErrorKind;
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON.
    #[error("{0}")]
    MalformedJson(String),
    /// The body is JSON but not what the route takes.
    #[error("{0}")]
    Validation(String),
    /// Wrong or missing `Content-Type`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// No such route.
    #[error("{0}")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too much queued work.
    #[error("{0}")]
    Overloaded(String),
    /// The model is loading or failed to load.
    #[error("{0}")]
    Unavailable(String),
    /// The plugin failed (a caught panic included).
    #[error("{message}")]
    Plugin {
        /// What the plugin said.
        message: String,
        /// Its error kind.
        kind: ErrorKind,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    kind: &'a str,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin { kind, .. } => match kind {
                ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorKind::NotLoaded | ErrorKind::NotTrained => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// Machine-readable kind for the JSON body.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Validation(_) => "validation",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Plugin { kind, .. } => match kind {
                ErrorKind::InvalidInput => "validation",
                ErrorKind::Panic => "plugin_panic",
                _ => "plugin_error",
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{} {}: {self}", status.as_u16(), self.kind());
        } else if status.is_server_error() {
            tracing::warn!("{} {}: {self}", status.as_u16(), self.kind());
        } else {
            tracing::debug!("{} {}: {self}", status.as_u16(), self.kind());
        }
        let message = self.to_string();
        let body = ErrorBody {
            error: &message,
            kind: self.kind(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonSyntaxError(_) => ApiError::MalformedJson(text),
            JsonRejection::JsonDataError(_) => ApiError::Validation(text),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
            }
            JsonRejection::BytesRejection(ref b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge(format!("request body is over the limit: {text}"))
            }
            _ => ApiError::MalformedJson(text),
        }
    }
}

impl From<ClassifyError> for ApiError {
    fn from(err: ClassifyError) -> Self {
        match err {
            ClassifyError::Overloaded { .. } => ApiError::Overloaded(err.to_string()),
            ClassifyError::NotReady { .. } | ClassifyError::WorkerGone(_) => {
                ApiError::Unavailable(err.to_string())
            }
            ClassifyError::Plugin(e) => ApiError::Plugin {
                message: e.message,
                kind: e.kind,
            },
        }
    }
}
