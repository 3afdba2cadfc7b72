//! The Open Inference Protocol (KServe v2 REST), so KServe, Triton clients and their tooling
//! talk to Clarity unchanged: server and model metadata, liveness and readiness, and
//! `POST /v2/models/{name}/infer` with BYTES inputs `question` and `context` (shape `[N]`)
//! answering FP32 `scores` `[N, labels]` (row-major, flattened) and BYTES `label` `[N]`.
//!
//! Inference goes through the model's worker queue like the seed route, so batching, the
//! in-flight bound, the deadline, metrics and request ids apply alike. Errors are the
//! protocol's `{"error": "..."}` (plus our `kind` and `request_id`), with 400 for anything
//! wrong with the request instead of the seed route's 422. Tensors travel as JSON `data` or,
//! as Triton's clients send them by default, in the binary tensor extension ([`binary`]).

mod binary;

use super::backpressure::BodyArrived;
use super::error::{ApiError, BodyStyle};
use super::AppState;
use crate::worker::{ModelWorker, Status};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use clarity_sdk::config::ServingConfig;
use clarity_sdk::{ErrorKind, TextPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The one version every model has (the protocol's version paths accept only this).
pub const MODEL_VERSION: &str = "1";

/// Whether `path` is one of the protocol's (its errors are answered in its shape).
pub fn is_v2_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// An [`ApiError`] answered in the protocol's shape and statuses.
#[derive(Debug)]
pub struct V2Error(ApiError);

impl V2Error {
    fn bad_request(message: impl Into<String>) -> Self {
        Self(ApiError::Validation(message.into()))
    }

    fn unknown_model(name: &str) -> Self {
        Self(ApiError::NotFound(format!(
            "unknown model `{name}` (GET / lists the served models)"
        )))
    }

    /// The protocol says 400 for a request it cannot run, where the seed route says 422.
    fn status(&self) -> StatusCode {
        match &self.0 {
            ApiError::MalformedJson(_)
            | ApiError::Validation(_)
            | ApiError::UnsupportedMediaType(_) => StatusCode::BAD_REQUEST,
            ApiError::Plugin { source, .. } if source.kind == ErrorKind::InvalidInput => {
                StatusCode::BAD_REQUEST
            }
            other => other.status(),
        }
    }
}

impl From<ApiError> for V2Error {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<crate::worker::ClassifyError> for V2Error {
    fn from(err: crate::worker::ClassifyError) -> Self {
        Self(ApiError::from(err))
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let status = self.status();
        self.0.respond(status, BodyStyle::OpenInference)
    }
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "clarity-host",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [],
    }))
}

/// `GET /v2/health/live`: 200 while the process runs.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: 200 once every served model is ready, 503 before.
pub async fn server_ready(State(state): State<AppState>) -> Response {
    let table = state.models();
    let waiting: Vec<&str> = table
        .iter()
        .filter(|w| w.status() != Status::Ready)
        .map(|w| w.spec().name.as_str())
        .collect();
    if waiting.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        let error = format!("not ready: {}", waiting.join(", "));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "error": error})),
        )
            .into_response()
    }
}

/// `{name}` or `{name}/versions/{version}` from the path.
#[derive(Debug, Deserialize)]
pub struct ModelPath {
    name: String,
    version: Option<String>,
}

/// The served model named in the path, at a version it has.
fn find(state: &AppState, path: &ModelPath) -> Result<Arc<ModelWorker>, V2Error> {
    let worker = state
        .model_named(&path.name)
        .ok_or_else(|| V2Error::unknown_model(&path.name))?;
    match path.version.as_deref() {
        None | Some(MODEL_VERSION) => Ok(worker),
        Some(other) => Err(V2Error(ApiError::NotFound(format!(
            "model `{}` has no version `{other}` (versions: [\"{MODEL_VERSION}\"])",
            path.name
        )))),
    }
}

/// `GET /v2/models/{name}`: the model's inputs and outputs.
pub async fn model_metadata(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, V2Error> {
    let worker = find(&state, &path)?;
    let spec = worker.spec();
    let labels = labels_of(&worker);
    Ok(Json(json!({
        "name": spec.name,
        "versions": [MODEL_VERSION],
        "platform": format!("clarity_{}", spec.kind),
        "inputs": [
            {"name": "question", "datatype": "BYTES", "shape": [-1]},
            {"name": "context", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "scores", "datatype": "FP32", "shape": [-1, labels.len()]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"labels": labels},
    })))
}

/// The loaded model's labels, or the configured ones before it has loaded.
fn labels_of(worker: &ModelWorker) -> Vec<String> {
    let loaded = worker.labels();
    if loaded.is_empty() {
        worker.spec().label_config.labels.clone()
    } else {
        loaded.to_vec()
    }
}

/// `GET /v2/models/{name}/ready`: 200 when the model serves, 503 while it loads or trains
/// or when it failed.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
) -> Result<Json<Value>, V2Error> {
    let worker = find(&state, &path)?;
    let status = worker.status();
    if status == Status::Ready {
        Ok(Json(json!({"name": path.name, "ready": true})))
    } else {
        Err(V2Error(ApiError::unavailable(
            format!("model `{}` is not ready ({})", path.name, status.as_str()),
            match status {
                Status::Failed(reason) => Some(reason),
                _ => None,
            },
        )))
    }
}

/// The infer request body (unknown keys, e.g. `parameters`, are ignored as the protocol
/// allows).
#[derive(Debug, Deserialize)]
struct InferRequest {
    id: Option<String>,
    inputs: Vec<InputTensor>,
    outputs: Option<Vec<RequestedOutput>>,
    parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    parameters: Option<Map<String, Value>>,
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    parameters: Option<Map<String, Value>>,
}

/// The outputs every model has.
const OUTPUTS: [&str; 2] = ["scores", "label"];

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<AppState>,
    Path(path): Path<ModelPath>,
    headers: HeaderMap,
    arrived: Option<Extension<BodyArrived>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, V2Error> {
    // The extractors above ran to completion: the body is here.
    if let Some(Extension(arrived)) = arrived {
        arrived.mark();
    }
    let worker = find(&state, &path)?;
    let body = body.map_err(|e| {
        V2Error(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(format!("request body is over the limit: {}", e.body_text()))
        } else {
            ApiError::MalformedJson(e.body_text())
        })
    })?;
    let (json_part, tail) =
        binary::split(&body, headers.get(binary::HEADER)).map_err(V2Error::bad_request)?;
    let request: InferRequest = parse_body(json_part)?;
    let wanted = requested_outputs(&request)?;
    let mut tail = binary::Tail::new(tail);
    let pairs = pairs_of(request.inputs, &mut tail, &worker.spec().serving_config)?;
    tail.finish().map_err(V2Error::bad_request)?;
    let n = pairs.len();
    let scores = worker.classify(pairs).await?;
    let labels = worker.labels();
    let mut outputs = Vec::new();
    let mut blobs = Vec::new();
    for (name, as_binary) in wanted {
        let (datatype, shape, data) = if name == "scores" {
            let flat: Vec<f32> = scores.iter().flatten().copied().collect();
            ("FP32", vec![n, labels.len()], TensorData::Fp32(flat))
        } else {
            let best = scores
                .iter()
                .map(|row| {
                    labels
                        .get(clarity_sdk::metrics::argmax(row))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect();
            ("BYTES", vec![n], TensorData::Bytes(best))
        };
        let mut output = OutputTensor {
            name,
            datatype,
            shape,
            parameters: None,
            data: Some(data),
        };
        if as_binary {
            let raw = match output.data.take() {
                Some(TensorData::Fp32(values)) => binary::encode_fp32(&values),
                Some(TensorData::Bytes(items)) => binary::encode_bytes(&items),
                None => Vec::new(),
            };
            output.parameters = Some(json!({"binary_data_size": raw.len()}));
            blobs.push(raw);
        }
        outputs.push(output);
    }
    let answer = InferResponse {
        model_name: worker.spec().name.clone(),
        model_version: MODEL_VERSION,
        id: request.id,
        outputs,
    };
    if blobs.is_empty() {
        return Ok(Json(answer).into_response());
    }
    // JSON first, then each binary output in order, its length in the header.
    let mut body = serde_json::to_vec(&answer).map_err(|e| {
        V2Error(ApiError::unavailable(
            "cannot write the answer",
            Some(e.to_string()),
        ))
    })?;
    let json_length = body.len();
    blobs.iter().for_each(|blob| body.extend_from_slice(blob));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                HeaderName::from_static(binary::HEADER),
                json_length.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

/// The infer response. Typed rather than built with `json!`, so FP32 scores are written as
/// f32 (the same digits as the seed route), not widened to f64.
#[derive(Debug, Serialize)]
pub struct InferResponse {
    model_name: String,
    model_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

#[derive(Debug, Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    /// `binary_data_size` when the data follows the JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<TensorData>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum TensorData {
    Fp32(Vec<f32>),
    Bytes(Vec<String>),
}

/// The body as JSON, whatever its `Content-Type` (Triton's clients send none), with the
/// path of a field of the wrong type in the message.
fn parse_body(body: &[u8]) -> Result<InferRequest, V2Error> {
    // A list is refused before it is built (100,000 items would take ~80 MB as values).
    if super::request_body::list_length(body).is_some() {
        return Err(V2Error::bad_request(
            "expected an infer request object {\"inputs\": [...]}, got a list",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        V2Error(ApiError::MalformedJson(format!(
            "the body is not JSON: {e}"
        )))
    })?;
    if !value.is_object() {
        return Err(V2Error::bad_request(format!(
            "expected an infer request object {{\"inputs\": [...]}}, got {}",
            crate::data::json_kind(&value)
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let at = e.path().to_string();
        V2Error::bad_request(format!("invalid infer request at `{at}`: {}", e.inner()))
    })
}

/// The outputs to answer (all unless `outputs` names some), each with whether it goes in
/// binary: its own `binary_data`, else the request's `binary_data_output`.
fn requested_outputs(request: &InferRequest) -> Result<Vec<(&'static str, bool)>, V2Error> {
    let flag = |parameters: &Option<Map<String, Value>>, key: &str| {
        parameters
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(Value::as_bool)
    };
    let all_binary = flag(&request.parameters, "binary_data_output").unwrap_or(false);
    let Some(requested) = &request.outputs else {
        return Ok(OUTPUTS.iter().map(|o| (*o, all_binary)).collect());
    };
    let mut wanted = Vec::new();
    for output in requested {
        let Some(known) = OUTPUTS.iter().find(|o| **o == output.name) else {
            return Err(V2Error::bad_request(format!(
                "unknown output `{}`; this model has outputs `scores` and `label`",
                output.name
            )));
        };
        wanted.push((
            *known,
            flag(&output.parameters, "binary_data").unwrap_or(all_binary),
        ));
    }
    Ok(wanted)
}

/// The pairs from the `question` and `context` inputs, checked against the protocol and the
/// model's request limits.
fn pairs_of(
    inputs: Vec<InputTensor>,
    tail: &mut binary::Tail<'_>,
    limits: &ServingConfig,
) -> Result<Vec<TextPair>, V2Error> {
    let max_pairs = limits.max_request_pairs;
    let mut questions = None;
    let mut contexts = None;
    for input in inputs {
        let slot = match input.name.as_str() {
            "question" => &mut questions,
            "context" => &mut contexts,
            other => {
                return Err(V2Error::bad_request(format!(
                    "unknown input `{other}`; the inputs are `question` and `context` (BYTES, shape [N])"
                )))
            }
        };
        if slot.is_some() {
            return Err(V2Error::bad_request(format!(
                "input `{}` is given twice",
                input.name
            )));
        }
        *slot = Some(strings_of(input, tail)?);
    }
    let (Some(questions), Some(contexts)) = (questions, contexts) else {
        return Err(V2Error::bad_request(
            "the inputs `question` and `context` are both required (BYTES, shape [N])",
        ));
    };
    if questions.len() != contexts.len() {
        return Err(V2Error::bad_request(format!(
            "`question` has {} elements and `context` {}: they must match",
            questions.len(),
            contexts.len()
        )));
    }
    if questions.is_empty() {
        return Err(V2Error::bad_request("the inputs hold no pair (N = 0)"));
    }
    if questions.len() > max_pairs {
        return Err(V2Error::bad_request(format!(
            "{} pairs in one request; the limit is {max_pairs} (serving_config.max_request_pairs)",
            questions.len()
        )));
    }
    questions
        .into_iter()
        .zip(contexts)
        .enumerate()
        .map(|(i, (question, context))| {
            super::routes::checked_pair(question, context, limits.max_text_chars)
                .map_err(|e| V2Error::bad_request(format!("element {i}: {e}")))
        })
        .collect()
}

/// A BYTES input's strings: shape `[N]` (or `[N, 1]`), `data` a list of N strings (nested
/// lists are flattened, row-major, as the protocol allows), or `binary_data_size` bytes of
/// the binary tail.
fn strings_of(input: InputTensor, tail: &mut binary::Tail<'_>) -> Result<Vec<String>, V2Error> {
    let name = &input.name;
    if input.datatype != "BYTES" {
        return Err(V2Error::bad_request(format!(
            "input `{name}` has datatype {}; it must be BYTES",
            input.datatype
        )));
    }
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
        .map(|size| {
            size.as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    V2Error::bad_request(format!(
                        "input `{name}`: binary_data_size must be a byte count, got {size}"
                    ))
                })
        })
        .transpose()?;
    let rows = match input.shape.as_slice() {
        [n] | [n, 1] if *n >= 0 => *n as usize,
        other => {
            return Err(V2Error::bad_request(format!(
                "input `{name}` has shape {other:?}; it must be [N] (or [N, 1])"
            )))
        }
    };
    let strings = match (binary_size, input.data) {
        (Some(_), Some(_)) => {
            return Err(V2Error::bad_request(format!(
                "input `{name}` has both `data` and binary_data_size: send one"
            )))
        }
        (Some(size), None) => {
            let raw = tail.take(name, size).map_err(V2Error::bad_request)?;
            binary::decode_bytes(name, raw).map_err(V2Error::bad_request)?
        }
        (None, Some(data)) => {
            // Not `with_capacity(rows)`: `rows` is the client's word (a shape of [10^18]
            // aborted the process on the allocation); the strings are checked against it below.
            let mut strings = Vec::new();
            flatten_strings(name, data, &mut strings)?;
            strings
        }
        (None, None) => {
            return Err(V2Error::bad_request(format!(
                "input `{name}` has no `data` (and no binary_data_size)"
            )))
        }
    };
    if strings.len() != rows {
        return Err(V2Error::bad_request(format!(
            "input `{name}` has {} elements in `data` but shape {:?} says {rows}",
            strings.len(),
            input.shape
        )));
    }
    Ok(strings)
}

fn flatten_strings(name: &str, data: Value, out: &mut Vec<String>) -> Result<(), V2Error> {
    match data {
        Value::String(s) => out.push(s),
        Value::Array(items) => {
            for item in items {
                flatten_strings(name, item, out)?;
            }
        }
        other => {
            return Err(V2Error::bad_request(format!(
                "input `{name}`: BYTES data must be strings, got {}",
                crate::data::json_kind(&other)
            )))
        }
    }
    Ok(())
}
