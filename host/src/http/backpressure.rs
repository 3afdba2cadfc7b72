//! Backpressure the way text-embeddings-inference users expect it: a global bound on model
//! requests in flight (429 `overloaded` with `Retry-After` beyond it, at once) and a request
//! deadline answered with a JSON 504 `timeout`.
//!
//! The deadline drops the handler's future, and with it the reply channel of any job it
//! queued; the model's worker skips jobs nobody waits for, so timed-out pairs that have not
//! started are never scored.

use super::error::ApiError;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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

/// Middleware on every route: answer 504 `timeout` when the request takes longer than the
/// limit.
pub async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "no answer within {} s (--request-timeout); the request was dropped",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}
