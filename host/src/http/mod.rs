//! The HTTP API (axum): one `POST` route per served model, plus `/`, `/health`, `/ready` and
//! `/metrics`, `/openapi.json`, `/docs` and `/redoc`, the Open Inference Protocol under
//! `/v2` ([`v2`]), and hot reload under `/admin` ([`admin`]).
//!
//! Model routes are not axum routes: the served models change on reload, so one catch-all
//! route looks the path up in the current [`ModelTable`] for each request.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests drive it
//! in-process (`router(...).oneshot(request)`) over workers with fake backends.

mod admin;
pub mod auth;
mod backpressure;
pub mod cors;
pub mod error;
pub mod listener;
mod openapi;
mod parse_errors;
mod playground;
mod redact;
mod request_body;
pub mod request_id;
mod request_limits;
mod routes;
pub mod types;
pub mod v2;

use crate::reload::{ModelTable, Reloader, SharedTable};
use crate::worker::ModelWorker;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware;
use axum::routing::{any, get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;

/// What every handler can see.
#[derive(Clone)]
pub struct AppState {
    /// The served models, in `models.yaml` order; swapped whole on reload.
    pub models: SharedTable,
    /// Renders `GET /metrics`; `None` if the recorder could not be installed.
    pub metrics: Option<PrometheusHandle>,
    /// API keys and the routes open without one.
    pub auth: Arc<auth::Auth>,
    /// Hot reload (`None`: the admin routes answer 503).
    pub reloader: Option<Arc<Reloader>>,
}

impl AppState {
    /// A state serving `models`, without hot reload.
    pub fn fixed(
        models: Vec<Arc<ModelWorker>>,
        metrics: Option<PrometheusHandle>,
        auth: auth::Auth,
    ) -> Self {
        Self {
            models: ModelTable::shared(models),
            metrics,
            auth: Arc::new(auth),
            reloader: None,
        }
    }

    /// The served models now, in `models.yaml` order.
    pub fn models(&self) -> Arc<ModelTable> {
        self.models.load_full()
    }

    /// The served model called `name`: the caller's own handle, so a request finishes on
    /// this model even if a reload replaces it meanwhile.
    pub fn model_named(&self, name: &str) -> Option<Arc<ModelWorker>> {
        self.models.load().by_name(name).cloned()
    }

    /// The served model at `route` (see [`AppState::model_named`]).
    pub fn model_at(&self, route: &str) -> Option<Arc<ModelWorker>> {
        self.models.load().by_route(route).cloned()
    }
}

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body in bytes.
    pub body_bytes: usize,
    /// Longest a request may take before it is answered with 504.
    pub timeout: Duration,
    /// Most model requests in flight at once, across models; more get 429.
    pub max_concurrent_requests: usize,
}

/// The full application router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let mut app = Router::new()
        .route("/", get(routes::index))
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi))
        .route("/docs", get(routes::docs))
        .route("/redoc", get(routes::redoc))
        .route("/ui", get(playground::page));
    let in_flight = backpressure::InFlight::new(limits.max_concurrent_requests);
    app = open_inference_routes(app, &in_flight);
    let app = app
        .route("/admin/reload", post(admin::reload))
        .route("/admin/models/{name}/reload", post(admin::reload_model))
        .route(
            routes::MODEL_ROUTES,
            any(move |State(state): State<AppState>, request: Request| {
                routes::model_route(state, in_flight.clone(), request)
            }),
        );
    // The deadline sits inside the request metrics, so timeouts are counted as 504s; the key
    // check sits inside the request id, so 401 bodies carry it.
    app.route_layer(middleware::from_fn_with_state(
        limits.timeout,
        backpressure::deadline,
    ))
    .route_layer(middleware::from_fn_with_state(
        state.clone(),
        routes::track_requests,
    ))
    .fallback(routes::not_found)
    .method_not_allowed_fallback(routes::method_not_allowed)
    .layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_key,
    ))
    .layer(DefaultBodyLimit::max(limits.body_bytes))
    .layer(middleware::from_fn_with_state(
        limits.body_bytes,
        request_limits::check,
    ))
    .layer(middleware::from_fn(request_id::assign))
    .with_state(state)
}

/// The Open Inference Protocol (KServe v2) routes, each model also at `/versions/1`; infer
/// counts against the in-flight bound like the seed routes.
fn open_inference_routes(
    app: Router<AppState>,
    in_flight: &backpressure::InFlight,
) -> Router<AppState> {
    let limited = || {
        post(v2::infer).route_layer(middleware::from_fn_with_state(
            in_flight.clone(),
            backpressure::limit_in_flight,
        ))
    };
    let mut app = app
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::server_ready));
    for model in ["/v2/models/{name}", "/v2/models/{name}/versions/{version}"] {
        app = app
            .route(model, get(v2::model_metadata))
            .route(&format!("{model}/ready"), get(v2::model_ready))
            .route(&format!("{model}/infer"), limited());
    }
    app
}

#[cfg(test)]
mod tests;
