//! Route handlers.

use super::backpressure::InFlight;
use super::error::ApiError;
use super::request_body;
use super::types::{ModelSummary, PairRequest, Prediction};
use super::AppState;
use crate::data::json_kind;
use crate::worker::{ModelWorker, Status};
use axum::extract::{FromRequest, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use clarity_sdk::config::ServingConfig;
use clarity_sdk::TextPair;
use serde_json::{json, Value};
use std::sync::Arc;

/// `axum::Json`, but malformed bodies are answered in the API's own error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// The catch-all route model requests arrive on (see [`model_route`]).
pub const MODEL_ROUTES: &str = "/{*path}";

/// Any path the fixed routes do not take: the model served there now, if any. The request
/// keeps its own handle on that model, so it finishes on it even if a reload swaps it out.
pub async fn model_route(state: AppState, in_flight: InFlight, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let Some(worker) = state.model_at(uri.path()) else {
        return not_found(method, uri).await.into_response();
    };
    if method != Method::POST {
        return method_not_allowed(method, uri).await.into_response();
    }
    let _slot = match in_flight.enter() {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    match request_body::read(request, &state, worker.max_request_pairs()).await {
        Ok(body) => classify(worker, ApiJson(body)).await.into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// Middleware: request metrics, labelled by the matched route, or for model requests by the
/// model's route (`unmatched` for paths no model serves), so the label set stays bounded.
pub async fn track_requests(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = match matched {
        Some(path) if path == MODEL_ROUTES => state
            .model_at(request.uri().path())
            .map(|w| w.spec().route())
            .unwrap_or_else(|| "unmatched".into()),
        Some(path) => path,
        None => "unmatched".into(),
    };
    crate::metrics::track_as(route, request, next).await
}

/// `POST <route>`: one pair (an object) or a batch (a list of objects).
pub async fn classify(
    worker: Arc<ModelWorker>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let (pairs, batch) = parse_pairs(body, &worker.spec().serving_config)?;
    let (pairs, keep_whole): (Vec<TextPair>, Vec<bool>) = pairs.into_iter().unzip();
    let scores = worker.classify_with(pairs, keep_whole).await?;
    // The worker's model checked that every row has one score per label.
    let labels = worker.labels();
    let mut predictions: Vec<Prediction> = scores
        .iter()
        .map(|s| Prediction::from_scores(&labels, s))
        .collect();
    Ok(if batch {
        Json(predictions).into_response()
    } else {
        match predictions.pop() {
            Some(p) => Json(p).into_response(),
            None => return Err(ApiError::Validation("no pair to classify".into())),
        }
    })
}

/// A pair, and whether it must not be truncated (`"truncate": false`).
type ParsedPair = (TextPair, bool);

/// Turn a JSON body into pairs; `true` when it was the batch (list) form.
fn parse_pairs(body: Value, limits: &ServingConfig) -> Result<(Vec<ParsedPair>, bool), ApiError> {
    let max_pairs = limits.max_request_pairs;
    match body {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ApiError::Validation("the list of pairs is empty".into()));
            }
            if items.len() > max_pairs {
                return Err(request_body::too_many_pairs(items.len(), max_pairs));
            }
            let pairs = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    parse_pair(item, limits.max_text_chars)
                        .map_err(|e| ApiError::Validation(format!("item {i}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((pairs, true))
        }
        Value::Object(_) => {
            let pair = parse_pair(body, limits.max_text_chars).map_err(ApiError::Validation)?;
            Ok((vec![pair], false))
        }
        other => Err(ApiError::Validation(format!(
            "expected an object {{\"question\": ..., \"context\": ...}} or a list of them, got {}",
            json_kind(&other)
        ))),
    }
}

fn parse_pair(item: Value, max_chars: usize) -> Result<ParsedPair, String> {
    if !item.is_object() {
        return Err(format!("expected an object, got {}", json_kind(&item)));
    }
    let req: PairRequest = serde_json::from_value(item).map_err(|e| e.to_string())?;
    let keep_whole = req.truncate == Some(false);
    Ok((
        checked_pair(req.question, req.context, max_chars)?,
        keep_whole,
    ))
}

/// A pair, unless one side is blank or longer than `max_chars` characters (every route
/// refuses those alike).
pub(super) fn checked_pair(
    question: String,
    context: String,
    max_chars: usize,
) -> Result<TextPair, String> {
    for (field, text) in [("question", &question), ("context", &context)] {
        if blank(text) {
            return Err(format!("`{field}` is empty (no visible character)"));
        }
        // A byte count within the limit bounds the characters without counting them.
        if text.len() > max_chars {
            let chars = text.chars().count();
            if chars > max_chars {
                return Err(format!(
                    "`{field}` has {chars} characters; the limit is {max_chars} \
                     (serving_config.max_text_chars)"
                ));
            }
        }
    }
    Ok(TextPair::new(question, context))
}

/// Only whitespace and control characters (NULs included): nothing a model could read. The
/// OpenAPI document says the same with [`super::openapi::VISIBLE_TEXT`].
fn blank(text: &str) -> bool {
    // U+FEFF is in ECMA-262's `\s`, the schema's regex, but not in Rust's whitespace.
    text.chars()
        .all(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
}

/// The last component of `path`.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

fn summary(worker: &ModelWorker) -> ModelSummary {
    let status = worker.status();
    let info = worker.info();
    ModelSummary {
        name: worker.spec().name.clone(),
        kind: worker.spec().kind.clone(),
        route: worker.spec().route(),
        status: status.as_str(),
        error: match status {
            // The whole reason is in the log; clients do not learn the server's folders.
            Status::Failed(reason) => Some(super::redact::paths(&reason)),
            _ => None,
        },
        labels: info.as_ref().map(|i| i.labels.clone()).unwrap_or_default(),
        backend: info.as_ref().map(|i| i.backend.clone()),
        device: info.as_ref().map(|i| i.device.clone()),
        max_length: info.as_ref().and_then(|i| i.max_length),
        details: info
            .as_ref()
            .map(|i| i.details.clone().into_iter().collect())
            .unwrap_or_default(),
        plugin: file_name(worker.plugin_path()),
        queued: worker.queued(),
    }
}

/// `GET /`: the service and its models. `endpoints` (the models' routes) is the Python
/// Clarity's field. A browser (`Accept: text/html`) gets the playground page instead.
pub async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if super::playground::wants_page(&headers) {
        return super::playground::page().await;
    }
    let table = state.models();
    let models: Vec<ModelSummary> = table.iter().map(|w| summary(w)).collect();
    let endpoints: Vec<String> = table.iter().map(|w| w.spec().route()).collect();
    let mut index = json!({
        "service": "clarity-host",
        "version": env!("CARGO_PKG_VERSION"),
        "sdk_version": clarity_sdk::SDK_VERSION,
        "models": models,
        "endpoints": endpoints,
    });
    // The last reload: what it loaded, kept, removed, and why an entry failed.
    if let Some(mut report) = state.reloader.as_ref().and_then(|r| r.last_report()) {
        for failure in &mut report.failed {
            failure.error = super::redact::paths(&failure.error);
        }
        index["last_reload"] = json!(report);
    }
    Json(index).into_response()
}

/// `GET /health`: the process is up; `models_loaded` (the Python Clarity's field) counts the
/// models ready to classify.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let loaded = state
        .models()
        .iter()
        .filter(|w| w.status() == Status::Ready)
        .count();
    Json(json!({"status": "ok", "models_loaded": loaded}))
}

/// `GET /ready`: 200 once every served model is loaded, 503 before (or if one failed).
pub async fn ready(State(state): State<AppState>) -> Response {
    let table = state.models();
    let statuses: serde_json::Map<String, Value> = table
        .iter()
        .map(|w| (w.spec().name.clone(), json!(w.status().as_str())))
        .collect();
    let all_ready = table.iter().all(|w| w.status() == Status::Ready);
    if all_ready {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "models": statuses})),
        )
            .into_response()
    } else {
        let waiting: Vec<&String> = statuses
            .iter()
            .filter(|(_, s)| s.as_str() != Some("ready"))
            .map(|(name, _)| name)
            .collect();
        let message = format!(
            "not ready: {}",
            waiting
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let body = json!({
            "error": message,
            "kind": "not_ready",
            "detail": message,
            "models": statuses,
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => {
            ApiError::unavailable("metrics are not available in this process", None).into_response()
        }
    }
}

/// `GET /openapi.json`.
pub async fn openapi(State(state): State<AppState>) -> Json<Value> {
    let mut document = super::openapi::document(state.models().workers());
    super::auth::secure_document(&mut document, &state.auth);
    Json(document)
}

/// `GET /docs`: a page describing every route.
pub async fn docs(State(state): State<AppState>) -> axum::response::Html<String> {
    axum::response::Html(super::openapi::docs_page(state.models().workers()))
}

/// `GET /redoc`: the OpenAPI document in ReDoc, as FastAPI serves it.
pub async fn redoc(State(state): State<AppState>) -> axum::response::Html<String> {
    axum::response::Html(super::openapi::redoc_page(state.models().workers()))
}

/// Unknown routes.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Known route, wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}
