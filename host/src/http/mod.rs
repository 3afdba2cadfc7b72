//! The HTTP API (axum): one `POST` route per served model, plus `/`, `/health`, `/ready`.

mod error;
mod routes;
pub mod types;

use crate::worker::ModelWorker;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// What every handler can see.
#[derive(Clone)]
pub struct AppState {
    /// The served models, in `models.yaml` order.
    pub models: Arc<Vec<Arc<ModelWorker>>>,
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body in bytes.
    pub body_bytes: usize,
    /// Longest a request may take before it is answered with an error.
    pub timeout: Duration,
}

/// The full application router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let mut app = Router::new()
        .route("/", get(routes::index))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready));
    for worker in state.models.iter() {
        let worker = Arc::clone(worker);
        app = app.route(
            &worker.spec().route(),
            post(move |body| routes::classify(worker, body)),
        );
    }
    app.fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            limits.timeout,
        ))
        .with_state(state)
}
