//! Prometheus metrics, rendered at `GET /metrics`.
//!
//! Requests are counted and timed per matched route (not the raw URI, so the label set stays
//! bounded); each model's worker records its batch sizes, inference time, time in queue and
//! queue length.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::time::{Duration, Instant};

/// HTTP requests by route, method and status.
pub const REQUESTS: &str = "clarity_http_requests_total";
/// HTTP request latency by route.
pub const REQUEST_SECONDS: &str = "clarity_http_request_duration_seconds";
/// Pairs per `classify_batch` call, by model.
pub const BATCH_PAIRS: &str = "clarity_batch_pairs";
/// Time spent inside the plugin per batch, by model.
pub const INFERENCE_SECONDS: &str = "clarity_inference_duration_seconds";
/// Time a request waited for its batch, by model.
pub const QUEUE_SECONDS: &str = "clarity_queue_duration_seconds";
/// Pairs waiting, by model.
pub const QUEUED_PAIRS: &str = "clarity_queued_pairs";
/// Pairs dropped unscored because their caller gave up (timed out, disconnected), by model.
pub const DROPPED_PAIRS: &str = "clarity_dropped_pairs_total";
/// Failed classifications by model and error kind.
pub const FAILURES: &str = "clarity_classify_failures_total";
/// Model (re)loads by hot reload, by outcome: `loaded`, `failed` or `invalid_config`.
pub const RELOADS: &str = "clarity_model_reloads_total";
/// Models given up on because a plugin call never returned, by model and what followed:
/// `restarted` or `failed` (too many restarts).
pub const HUNG: &str = "clarity_model_hangs_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often histogram samples are folded into their buckets. The recorder keeps every
/// sample until then (`install_recorder` runs no upkeep of its own; only a scrape of
/// `/metrics` would), so without it a server nobody scrapes grew by ~30 bytes a request
/// (found by `bench/soak.py`: +8 MiB in 8 minutes).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Install the process-wide recorder, with a thread that keeps it from growing, and return
/// the handle that renders it.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_PAIRS.into()), BATCH_BUCKETS))
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| format!("cannot start the metrics upkeep thread: {e}"))?;
    Ok(handle)
}

/// Middleware: count and time every request by its matched route.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    track_as(route, request, next).await
}

/// Count and time one request under the route label `route` (the HTTP layer names model
/// routes, which are looked up in the served table rather than matched by the router).
pub async fn track_as(route: String, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "route" => route).record(started.elapsed());
    response
}

/// Record one batch run by a model's worker.
pub fn record_batch(model: &str, pairs: usize, inference: Duration) {
    metrics::histogram!(BATCH_PAIRS, "model" => model.to_owned()).record(pairs as f64);
    metrics::histogram!(INFERENCE_SECONDS, "model" => model.to_owned()).record(inference);
}

/// Record how long a request waited in a model's queue.
pub fn record_queue_wait(model: &str, waited: Duration) {
    metrics::histogram!(QUEUE_SECONDS, "model" => model.to_owned()).record(waited);
}

/// Set a model's queue length.
pub fn set_queued(model: &str, pairs: usize) {
    metrics::gauge!(QUEUED_PAIRS, "model" => model.to_owned()).set(pairs as f64);
}

/// Count a failed classification.
pub fn record_failure(model: &str, kind: &str) {
    metrics::counter!(FAILURES, "model" => model.to_owned(), "kind" => kind.to_owned())
        .increment(1);
}

/// Count pairs dropped before their batch ran because nobody waits for them any more.
pub fn record_dropped(model: &str, pairs: usize) {
    metrics::counter!(DROPPED_PAIRS, "model" => model.to_owned()).increment(pairs as u64);
}

/// Count `n` model reloads that ended in `outcome`.
pub fn record_reloads(outcome: &'static str, n: usize) {
    metrics::counter!(RELOADS, "outcome" => outcome).increment(n as u64);
}

/// Record a model whose plugin call hung.
pub fn record_hang(model: &str, outcome: &'static str) {
    metrics::counter!(HUNG, "model" => model.to_string(), "outcome" => outcome).increment(1);
}
