//! Hot reload over HTTP (guarded by the API key like every route): `POST /admin/reload`
//! re-reads `models.yaml`, `POST /admin/models/{name}/reload` loads one model's artifacts
//! again. Both answer the [`Report`]: 200 when every entry loaded, 422 `reload_failed` with
//! the same report when one failed (the rest is applied and the old model keeps serving).

use super::error::ApiError;
use super::AppState;
use crate::reload::{ReloadError, Report};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `POST /admin/reload`.
pub async fn reload(State(state): State<AppState>) -> Result<Response, ApiError> {
    let reloader = reloader(&state)?;
    Ok(answer(reloader.reload("POST /admin/reload").await?))
}

/// `POST /admin/models/{name}/reload`.
pub async fn reload_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let reloader = reloader(&state)?;
    Ok(answer(reloader.reload_model(&name).await?))
}

fn reloader(state: &AppState) -> Result<&std::sync::Arc<crate::reload::Reloader>, ApiError> {
    state
        .reloader
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("hot reload is not available in this process", None))
}

/// The report; with a failure, 422 and `error`/`kind` beside it so it reads as an error too.
fn answer(report: Report) -> Response {
    if report.failed.is_empty() {
        return Json(report).into_response();
    }
    let names: Vec<&str> = report.failed.iter().map(|f| f.name.as_str()).collect();
    let mut body = serde_json::json!(report);
    body["error"] = format!(
        "failed to load: {} (see `failed`; the rest was applied)",
        names.join(", ")
    )
    .into();
    body["kind"] = "reload_failed".into();
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

impl From<ReloadError> for ApiError {
    fn from(err: ReloadError) -> Self {
        match err {
            ReloadError::Config(_) => ApiError::InvalidConfig(err.to_string()),
            ReloadError::UnknownModel(_) => ApiError::NotFound(err.to_string()),
            ReloadError::Aborted(_) => {
                ApiError::unavailable("the reload stopped unexpectedly", Some(err.to_string()))
            }
        }
    }
}
