//! The hang watchdog: a model whose plugin call has not returned within the hang limit is
//! given up on and loaded again on a fresh worker, so one stuck call (a deadlock, an endless
//! loop in a plugin) does not wedge its route for good.
//!
//! A thread cannot be stopped from outside, so the stuck one is abandoned: its queued
//! callers get a 503 at once, `/ready` reports the model failed until the fresh worker is
//! ready, and the thread ends by itself if the call ever returns. A model that hangs again
//! and again is left failed after [`MAX_RESTARTS`] restarts within [`RESTART_WINDOW`], with a
//! message saying how to bring it back.

use crate::reload::{Reloader, SharedTable};
use crate::worker::Status;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Restarts allowed per model within [`RESTART_WINDOW`]; the next hang leaves it failed.
pub const MAX_RESTARTS: usize = 3;

/// The window [`MAX_RESTARTS`] counts over.
pub const RESTART_WINDOW: Duration = Duration::from_secs(3600);

/// What the watchdog decided about a stuck model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Load it again on a fresh worker.
    Restart,
    /// It hung too often: leave it failed.
    GiveUp,
}

/// Restart bookkeeping per model name.
#[derive(Default)]
pub struct Restarts {
    recent: HashMap<String, Vec<Instant>>,
}

impl Restarts {
    /// Record a hang of `model` at `now` and say what to do about it.
    pub fn on_hang(&mut self, model: &str, now: Instant) -> Verdict {
        let times = self.recent.entry(model.to_string()).or_default();
        times.retain(|t| now.saturating_duration_since(*t) < RESTART_WINDOW);
        if times.len() >= MAX_RESTARTS {
            return Verdict::GiveUp;
        }
        times.push(now);
        Verdict::Restart
    }
}

/// Watch every served model; `limit` is the longest one plugin call may run.
pub fn spawn(table: SharedTable, reloader: Arc<Reloader>, limit: Duration) {
    let every = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut restarts = Restarts::default();
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let table = table.load_full();
            for worker in table.iter() {
                let Some(busy) = worker.busy_for() else {
                    continue;
                };
                if busy < limit || worker.status() != Status::Ready {
                    continue;
                }
                let name = worker.spec().name.clone();
                let secs = busy.as_secs();
                match restarts.on_hang(&name, Instant::now()) {
                    Verdict::Restart => {
                        tracing::error!(
                            "Model `{name}`: a call has not returned for {secs} s (hang limit \
                             {} s): restarting the model on a fresh worker",
                            limit.as_secs()
                        );
                        worker.abandon(format!(
                            "a call did not return within {} s; restarting on a fresh worker",
                            limit.as_secs()
                        ));
                        crate::metrics::record_hang(&name, "restarted");
                        let reloader = Arc::clone(&reloader);
                        tokio::spawn(async move {
                            match reloader.reload_model(&name).await {
                                Ok(report) if report.loaded.contains(&name) => {
                                    tracing::info!("Model `{name}` restarted after a hang")
                                }
                                Ok(report) => tracing::error!(
                                    "Model `{name}` did not restart after a hang: {:?}",
                                    report.failed
                                ),
                                Err(e) => tracing::error!(
                                    "Model `{name}` did not restart after a hang: {e}"
                                ),
                            }
                        });
                    }
                    Verdict::GiveUp => {
                        tracing::error!(
                            "Model `{name}`: a call has not returned for {secs} s, and it was \
                             restarted {MAX_RESTARTS} times in the last hour: it stays failed"
                        );
                        worker.abandon(format!(
                            "calls hung {} times within an hour; not restarted again: fix the \
                             plugin, then POST /admin/models/{name}/reload",
                            MAX_RESTARTS + 1
                        ));
                        crate::metrics::record_hang(&name, "failed");
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_bounded_per_model_within_the_window() {
        let mut restarts = Restarts::default();
        let start = Instant::now();
        for i in 0..MAX_RESTARTS {
            let at = start + Duration::from_secs(i as u64);
            assert_eq!(restarts.on_hang("a", at), Verdict::Restart, "hang {i}");
        }
        let next = start + Duration::from_secs(60);
        assert_eq!(restarts.on_hang("a", next), Verdict::GiveUp);
        assert_eq!(restarts.on_hang("b", next), Verdict::Restart, "per model");
        // An hour after the first hangs they no longer count.
        let later = start + RESTART_WINDOW + Duration::from_secs(MAX_RESTARTS as u64);
        assert_eq!(restarts.on_hang("a", later), Verdict::Restart);
    }
}
