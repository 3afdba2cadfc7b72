//! API errors: every failure is JSON `{"error": "...", "kind": "...", "detail": "...",
//! "request_id": "..."}` with a fitting status. `detail` repeats `error` for clients of the
//! Python Clarity, whose FastAPI answered `{"detail": ...}`; it is always a string, also for
//! a 422 (where FastAPI's own validation gives a list of `{loc, msg, type}`). This is the one place that maps an error to a status.
//!
//! A 4xx says what was wrong with the request. A 5xx says what failed and gives the request
//! id; its detail (a plugin's message, a panic's text, a path on this machine) goes to the
//! log under that id, never to the client. [`ApiError::into_response`] attaches an
//! [`ErrorReport`]; the [`super::request_id`] middleware logs it and writes the final body.

use crate::worker::ClassifyError;
use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarity_sdk::{Error as SdkError, ErrorKind};
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
    /// The request URI is over the limit.
    #[error("{0}")]
    UriTooLong(String),
    /// A reload found `models.yaml` unusable (file, line and field in the text); nothing
    /// changed.
    #[error("{0}")]
    InvalidConfig(String),
    /// The route exists but not for this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Too much queued or in-flight work: 429 with `Retry-After`, as text-embeddings-inference
    /// answers, so clients back off and retry instead of treating it as an outage.
    #[error("{message}")]
    Overloaded {
        /// What the client is told.
        message: String,
        /// Seconds to wait before retrying (the `Retry-After` header).
        retry_after_secs: u64,
    },
    /// The request was not answered within `--request-timeout`.
    #[error("{0}")]
    Timeout(String),
    /// The request's body did not arrive within `--request-timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// No API key, or a wrong one (see [`super::auth`]).
    #[error("{message}")]
    Unauthorized {
        /// What the client is told.
        message: String,
        /// RFC 6750 `error` for `WWW-Authenticate` (`None` when no credentials were sent).
        error_code: Option<&'static str>,
    },
    /// The model is loading or failed to load (`detail`: why, for the log).
    #[error("{message}")]
    Unavailable {
        /// What the client is told.
        message: String,
        /// What only the log gets.
        detail: Option<String>,
    },
    /// The plugin failed on this request (a caught panic included).
    #[error("model `{model}`: {source}")]
    Plugin {
        /// The model.
        model: String,
        /// What the plugin said.
        source: SdkError,
    },
}

/// What [`ApiError::into_response`] leaves on the response for the request-id middleware.
#[derive(Debug, Clone)]
pub struct ErrorReport {
    /// What the client is told.
    pub public: String,
    /// Machine-readable kind.
    pub kind: &'static str,
    /// The full story, for the log only.
    pub detail: String,
    /// Which JSON shape the client gets.
    pub style: BodyStyle,
}

/// The shape of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyStyle {
    /// `{"error", "kind", "detail", "request_id"}`: the seed routes' shape.
    Clarity,
    /// `{"error", "kind", "request_id"}`: the Open Inference Protocol's `{"error"}` (see
    /// [`super::v2`]), without FastAPI's `detail`.
    OpenInference,
}

/// The JSON error body.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// What went wrong.
    pub error: &'a str,
    /// Machine-readable kind.
    pub kind: &'a str,
    /// The same text as `error`, under FastAPI's name (not in the Open Inference shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// The request's id, to find its log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

impl ApiError {
    /// A model that is not ready; `detail` (e.g. why loading failed) goes to the log only.
    pub fn unavailable(message: impl Into<String>, detail: Option<String>) -> Self {
        ApiError::Unavailable {
            message: message.into(),
            detail,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::InvalidConfig(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin { source, .. } => match source.kind {
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
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Plugin { source, .. } => match source.kind {
                ErrorKind::InvalidInput => "validation",
                ErrorKind::NotLoaded | ErrorKind::NotTrained => "unavailable",
                ErrorKind::Panic => "plugin_panic",
                _ => "plugin_error",
            },
        }
    }

    /// What the client is told: the whole message for a 4xx, only what failed for a 5xx.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Plugin { model, source } if self.status().is_server_error() => {
                let what = match source.kind {
                    ErrorKind::Panic => "panicked",
                    ErrorKind::NotLoaded | ErrorKind::NotTrained => "is not loaded",
                    _ => "failed",
                };
                format!("model `{model}` {what} on this request")
            }
            ApiError::Plugin { source, .. } => source.message.clone(),
            other => other.to_string(),
        }
    }

    /// The report the middleware logs.
    pub fn report(&self) -> ErrorReport {
        let detail = match self {
            ApiError::Unavailable {
                message,
                detail: Some(detail),
            } => format!("{message}: {detail}"),
            other => other.to_string(),
        };
        ErrorReport {
            public: self.public_message(),
            kind: self.kind(),
            detail,
            style: BodyStyle::Clarity,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        self.respond(status, BodyStyle::Clarity)
    }
}

impl ApiError {
    /// The response with `status` and a body in `style` (the Open Inference routes answer
    /// some errors with other statuses than the seed routes).
    pub fn respond(self, status: StatusCode, style: BodyStyle) -> Response {
        let mut report = self.report();
        report.style = style;
        let body = ErrorBody {
            error: &report.public,
            kind: report.kind,
            detail: (style == BodyStyle::Clarity).then_some(report.public.as_str()),
            request_id: None,
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Unauthorized { error_code, .. } = &self {
            let challenge = match error_code {
                Some(code) => format!("Bearer realm=\"clarity\", error=\"{code}\""),
                None => "Bearer realm=\"clarity\"".to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let ApiError::Overloaded {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response.extensions_mut().insert(report);
        response
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
            ClassifyError::Overloaded {
                retry_after_secs, ..
            } => ApiError::Overloaded {
                message: err.to_string(),
                retry_after_secs,
            },
            ClassifyError::NotReady {
                ref model,
                status,
                ref reason,
            } => ApiError::unavailable(
                format!("model `{model}` is not ready ({status})"),
                reason.clone(),
            ),
            ClassifyError::WorkerGone(_) => ApiError::unavailable(err.to_string(), None),
            ClassifyError::Plugin { model, source } => ApiError::Plugin { model, source },
        }
    }
}
