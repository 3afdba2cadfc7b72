//! A time limit on silence. hf-hub's HTTP client (ureq) has no read timeout and does not
//! let us set one, so a hub that accepts a connection and then says nothing would block a
//! download forever. The download runs on its own thread and reports each sign of life
//! through a [`Beat`]; when none comes for the limit, the caller gets [`Stalled`] and the
//! thread is left to die with its socket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Signs of life from the worker; cheap to clone and to call often.
#[derive(Debug, Clone)]
pub struct Beat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Beat {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The worker is making progress now.
    pub fn now(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Why the job gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// No beat for the limit.
    #[error("no answer for {} s", .0.as_secs_f64())]
    Stalled(Duration),
    /// The job panicked (a bug, in hf-hub or ours).
    #[error("the download thread panicked")]
    Panicked,
}

/// Run `job` on its own thread and wait for its result, giving up after `limit` without a
/// beat.
pub fn run<T: Send + 'static>(
    limit: Duration,
    job: impl FnOnce(Beat) -> T + Send + 'static,
) -> Result<T, Stopped> {
    let beat = Beat::new();
    let (tx, rx) = mpsc::channel();
    let worker_beat = beat.clone();
    std::thread::Builder::new()
        .name("hub-download".into())
        .spawn(move || {
            // The receiver is gone when we gave up: nothing to tell then.
            let _ = tx.send(job(worker_beat));
        })
        .map_err(|_| Stopped::Panicked)?;
    let poll = limit.min(Duration::from_millis(200));
    loop {
        match rx.recv_timeout(poll) {
            Ok(result) => return Ok(result),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Stopped::Panicked),
            Err(mpsc::RecvTimeoutError::Timeout) if beat.silent_for() >= limit => {
                return Err(Stopped::Stalled(limit))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beating_job_may_take_longer_than_the_limit() {
        let limit = Duration::from_millis(300);
        let got = run(limit, |beat| {
            for _ in 0..8 {
                std::thread::sleep(Duration::from_millis(100));
                beat.now();
            }
            42
        });
        assert_eq!(got, Ok(42));
    }

    #[test]
    fn a_silent_job_is_given_up_on() {
        let started = Instant::now();
        let got = run(Duration::from_millis(300), |_beat| {
            std::thread::sleep(Duration::from_secs(3));
        });
        assert_eq!(got, Err(Stopped::Stalled(Duration::from_millis(300))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_panic_is_an_error_not_a_crash() {
        let got: Result<(), _> = run(Duration::from_secs(5), |_beat| panic!("boom"));
        assert_eq!(got, Err(Stopped::Panicked));
    }
}
