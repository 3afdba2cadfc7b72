//! Backpressure the way text-embeddings-inference users expect it: a global bound on model
//! requests in flight (429 `overloaded` with `Retry-After` beyond it, at once) and a request
//! deadline answered with a JSON 504 `timeout` (408 `request_timeout` when the client never
//! sent its whole body).
//!
//! The deadline drops the handler's future, and with it the reply channel of any job it
//! queued; the model's worker skips jobs nobody waits for, so timed-out pairs that have not
//! started are never scored.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `Retry-After` for a request refused by the in-flight bound: slots free as soon as any
/// running request finishes, so one second is enough.
const IN_FLIGHT_RETRY_AFTER_SECS: u64 = 1;

/// Slots for model requests, shared by every model route.
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    limit: usize,
}

impl InFlight {
    /// Allow at most `limit` model requests at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }
}

impl InFlight {
    /// A slot for one model request, held until it is dropped, or 429 at once.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                message: format!(
                    "the server is overloaded: {} model requests in flight (--max-concurrent-requests); retry later",
                    self.limit
                ),
                retry_after_secs: IN_FLIGHT_RETRY_AFTER_SECS,
            })
    }
}

/// Middleware on model routes: take a slot for the whole request, or refuse it at once.
pub async fn limit_in_flight(
    State(in_flight): State<InFlight>,
    request: Request,
    next: Next,
) -> Response {
    match in_flight.enter() {
        Ok(_slot) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Marked by the handlers once a request's body has arrived whole, so the deadline can tell
/// a client that never sent its body (408, its fault) from a slow answer (504).
#[derive(Debug, Clone, Default)]
pub struct BodyArrived(Arc<AtomicBool>);

impl BodyArrived {
    /// The body has been read whole.
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_marked(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Middleware on every route: answer when the request takes longer than the limit: 408
/// `request_timeout` if its body never arrived whole, else 504 `timeout`.
pub async fn deadline(State(limit): State<Duration>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let arrived = BodyArrived::default();
    request.extensions_mut().insert(arrived.clone());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) if has_body && !arrived.is_marked() => ApiError::RequestTimeout(format!(
            "the request body did not arrive within {} s (--request-timeout)",
            limit.as_secs_f64()
        ))
        .into_response(),
        Err(_) => ApiError::Timeout(format!(
            "no answer within {} s (--request-timeout); the request was dropped",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}
