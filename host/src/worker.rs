//! One thread per served model: it owns the model's backend (a [`LoadedModel`], so any
//! [`crate::backend::Classify`]), loads it, and runs requests in batches.
//!
//! Async handlers never call into a plugin. They queue a [`Job`] and await a oneshot reply;
//! the worker drains whatever is queued (up to `max_batch_size` pairs) into one
//! `classify_batch` call, so concurrent requests share a forward pass. The queue is bounded
//! in pairs: when it is full a request fails at once with [`ClassifyError::Overloaded`], which
//! says how long the queue should take to drain (for `Retry-After`). A job whose caller gave
//! up (timed out, disconnected) before its batch started is dropped without being scored.
//!
//! A plugin call that never returns cannot be stopped from outside its thread. The worker
//! records when each call started ([`ModelWorker::busy_for`]); the watchdog
//! ([`crate::watchdog`]) then [abandons](ModelWorker::abandon) a stuck worker (its queued
//! callers are answered at once, the thread ends if the call ever returns) and starts the
//! model again on a fresh one.

use crate::backend::{LoadedModel, Stopper};
use crate::metrics;
use clarity_sdk::config::ServingConfig;
use clarity_sdk::{Error as SdkError, ModelInfo, ModelSpec, TextPair};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;
use tokio::sync::oneshot;

/// Where a model is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Opening the plugin and loading the model.
    Loading,
    /// No trained model was found, so it is being trained first.
    Training,
    /// Serving.
    Ready,
    /// Could not be loaded; the reason.
    Failed(String),
}

impl Status {
    /// Short name for JSON and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Loading => "loading",
            Status::Training => "training",
            Status::Ready => "ready",
            Status::Failed(_) => "failed",
        }
    }
}

/// Why a classification request did not get scores.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The model is still loading or failed to load.
    #[error("model `{model}` is not ready ({status}){}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    NotReady {
        /// Model name.
        model: String,
        /// Its status.
        status: &'static str,
        /// Why it failed, if it did.
        reason: Option<String>,
    },
    /// The queue is full.
    #[error(
        "model `{model}` is overloaded: {queued} pairs queued (capacity {capacity}); retry in {retry_after_secs} s"
    )]
    Overloaded {
        /// Model name.
        model: String,
        /// Pairs waiting.
        queued: usize,
        /// Queue capacity in pairs.
        capacity: usize,
        /// Seconds the queued pairs should take to drain, at least 1.
        retry_after_secs: u64,
    },
    /// The plugin returned an error (a caught panic included).
    #[error("model `{model}`: {source}")]
    Plugin {
        /// Model name.
        model: String,
        /// What the plugin said.
        source: SdkError,
    },
    /// The worker thread is gone.
    #[error("model `{0}` worker stopped")]
    WorkerGone(String),
}

struct Job {
    pairs: Vec<TextPair>,
    /// Per pair, `true` when the request said `"truncate": false`: such a pair longer than
    /// the model's `max_length` is refused instead of cut. Empty: every pair may be cut.
    keep_whole: Vec<bool>,
    /// Whoever sets it first takes the job's pairs off the queue count: the worker when it
    /// drains the job, or the caller when it gives up before that, so a timed-out request
    /// frees its queue room at once.
    claimed: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, SdkError>>,
    enqueued: Instant,
}

/// What the worker thread is doing, for the hang watchdog.
struct Activity {
    /// Origin of `busy_since_ms`.
    epoch: Instant,
    /// When the running plugin call started, in milliseconds after `epoch` plus one; 0
    /// while the thread waits for work.
    busy_since_ms: AtomicU64,
    /// Set when the worker is given up on: the thread ends after its stuck call returns.
    abandoned: AtomicBool,
    /// Ends a stuck call, when the backend can (a model's process is killed).
    stopper: Mutex<Option<Stopper>>,
}

impl Activity {
    fn start_call(&self) {
        let now = self.epoch.elapsed().as_millis().min(u64::MAX as u128 - 1) as u64;
        self.busy_since_ms.store(now + 1, Ordering::SeqCst);
    }

    fn end_call(&self) {
        self.busy_since_ms.store(0, Ordering::SeqCst);
    }

    fn busy_for(&self) -> Option<std::time::Duration> {
        match self.busy_since_ms.load(Ordering::SeqCst) {
            0 => None,
            since => {
                let since = std::time::Duration::from_millis(since - 1);
                Some(self.epoch.elapsed().saturating_sub(since))
            }
        }
    }
}

/// The queue's receiving end: the worker thread takes jobs from it, and an abandoning
/// watchdog drains it (the thread holds the lock only while it waits for or collects jobs,
/// never during a plugin call).
type Jobs = Arc<Mutex<mpsc::Receiver<Job>>>;

struct State {
    status: Status,
    info: Option<ModelInfo>,
    /// The loaded model's labels, shared with every response without copying the info.
    labels: Arc<[String]>,
}

/// What a [`Delegate`] answers with.
pub type DelegateFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>, ClassifyError>> + Send + 'a>>;

/// A model that answers by asking other models' workers (an ensemble asks its members), so
/// its requests skip its own queue: the members' queues and batching apply, and a member's
/// error (its status included) is the request's.
pub trait Delegate: Send + Sync {
    /// Score `pairs` (see [`ModelWorker::classify_with`]).
    fn classify(&self, pairs: Vec<TextPair>, keep_whole: Vec<bool>) -> DelegateFuture<'_>;
}

/// What a delegating worker's thread runs first: what the model reports about itself, and
/// who answers for it.
pub type DelegateStartup =
    Box<dyn FnOnce(&dyn Fn(Status)) -> Result<(ModelInfo, Arc<dyn Delegate>), String> + Send>;

/// The backend a delegating worker's thread holds: never called, requests go to the
/// delegate.
struct Delegated;

impl crate::backend::Classify for Delegated {
    fn classify(&self, _pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        Err(SdkError::other(
            "this model is answered by the models it delegates to",
        ))
    }
}

/// The handle async code holds for one model.
pub struct ModelWorker {
    /// Set for a model answered by other models' workers (an ensemble).
    delegate: Arc<OnceLock<Arc<dyn Delegate>>>,
    spec: ModelSpec,
    plugin_path: String,
    state: Arc<RwLock<State>>,
    queue: mpsc::Sender<Job>,
    jobs: Jobs,
    activity: Arc<Activity>,
    queued: Arc<AtomicUsize>,
    /// Recent forward-pass time per pair in microseconds (0 before the first batch).
    micros_per_pair: Arc<AtomicU64>,
    serving: ServingConfig,
}

/// Longest `Retry-After` we advise, whatever the drain estimate says.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// What the worker thread runs first: open the plugin and produce a loaded model. It gets
/// a callback to report that it is training before it can serve.
pub type Startup = Box<dyn FnOnce(&dyn Fn(Status)) -> Result<LoadedModel, String> + Send>;

impl ModelWorker {
    /// Start the worker thread for `spec`; `startup` loads the model on that thread.
    pub fn spawn(spec: ModelSpec, plugin_path: String, startup: Startup) -> std::io::Result<Self> {
        let state = Arc::new(RwLock::new(State {
            status: Status::Loading,
            info: None,
            labels: Arc::from(Vec::new()),
        }));
        let (queue, receiver) = mpsc::channel::<Job>();
        let jobs: Jobs = Arc::new(Mutex::new(receiver));
        let thread_jobs = Arc::clone(&jobs);
        let activity = Arc::new(Activity {
            epoch: Instant::now(),
            busy_since_ms: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
            stopper: Mutex::new(None),
        });
        let thread_activity = Arc::clone(&activity);
        let queued = Arc::new(AtomicUsize::new(0));
        let micros_per_pair = Arc::new(AtomicU64::new(0));
        let thread_pace = Arc::clone(&micros_per_pair);
        let serving = spec.serving_config.clone();
        let max_batch = serving.max_batch_size;
        let thread_state = Arc::clone(&state);
        let thread_queued = Arc::clone(&queued);
        let name = spec.name.clone();
        std::thread::Builder::new()
            .name(format!("model-{}", spec.name))
            .spawn(move || {
                let set_status = |s: Status| write(&thread_state).status = s;
                match startup(&set_status) {
                    Ok(model) => {
                        *thread_activity
                            .stopper
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = model.stopper();
                        let info = model.info().clone();
                        tracing::info!(
                            "Model `{name}` ready: {} on {}, labels {:?}",
                            info.backend,
                            info.device,
                            info.labels
                        );
                        {
                            let mut st = write(&thread_state);
                            st.labels = Arc::from(info.labels.clone());
                            st.info = Some(info);
                            st.status = Status::Ready;
                        }
                        let queue = Queue {
                            jobs: &thread_jobs,
                            queued: &thread_queued,
                            micros_per_pair: &thread_pace,
                            activity: &thread_activity,
                        };
                        run_batches(&name, &model, queue, max_batch);
                        if thread_activity.abandoned.load(Ordering::SeqCst) {
                            tracing::warn!(
                                "Model `{name}`: the abandoned call returned at last; its thread ends"
                            );
                        } else {
                            // Every handle is gone (a reload replaced or removed the model,
                            // or the server stops): the last request is answered.
                            tracing::info!("Model `{name}` stopped");
                        }
                    }
                    Err(reason) => {
                        tracing::error!("Model `{name}` failed to load: {reason}");
                        write(&thread_state).status = Status::Failed(reason);
                        // Keep draining so queued callers get an answer instead of hanging.
                        while let Some(job) = next_job(&thread_jobs) {
                            job.unqueue(&thread_queued);
                            drop(job.reply);
                        }
                    }
                }
            })?;
        Ok(Self {
            delegate: Arc::new(OnceLock::new()),
            spec,
            plugin_path,
            state,
            queue,
            jobs,
            activity,
            queued,
            micros_per_pair,
            serving,
        })
    }

    /// Start a worker for `spec` whose requests are answered by the [`Delegate`] `startup`
    /// returns (on the worker's thread); it is ready once `startup` returns.
    pub fn spawn_delegating(
        spec: ModelSpec,
        plugin_path: String,
        startup: DelegateStartup,
    ) -> std::io::Result<Self> {
        let slot: Arc<OnceLock<Arc<dyn Delegate>>> = Arc::new(OnceLock::new());
        let thread_slot = Arc::clone(&slot);
        let load: Startup = Box::new(move |set_status| {
            let (info, delegate) = startup(set_status)?;
            // Set before the worker turns ready, so no request reaches the queue.
            let _ = thread_slot.set(delegate);
            Ok(LoadedModel::new(Box::new(Delegated), info))
        });
        let mut worker = Self::spawn(spec, plugin_path, load)?;
        worker.delegate = slot;
        Ok(worker)
    }

    /// How long the plugin call running now has been running (`None`: none is).
    pub fn busy_for(&self) -> Option<std::time::Duration> {
        self.activity.busy_for()
    }

    /// Give up on this worker (its plugin call is stuck): it is marked failed with
    /// `reason`, the requests queued behind the stuck call are answered now (503), and the
    /// thread ends when the call returns: at once for a backend that can be stopped (a
    /// model's process is killed), otherwise if it ever does.
    pub fn abandon(&self, reason: String) {
        self.activity.abandoned.store(true, Ordering::SeqCst);
        write(&self.state).status = Status::Failed(reason);
        let stopper = self
            .activity
            .stopper
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(stop) = stopper {
            stop(); // the stuck call returns now, and the thread ends
        }
        // The thread is inside the plugin, so the receiver is free; if it is not, the
        // thread is taking jobs and will see `abandoned` before running them.
        let Ok(jobs) = self.jobs.try_lock() else {
            return;
        };
        let mut answered = 0;
        while let Ok(job) = jobs.try_recv() {
            job.unqueue(&self.queued);
            answered += 1;
            drop(job.reply);
        }
        metrics::set_queued(&self.spec.name, self.queued());
        if answered > 0 {
            tracing::warn!(
                "Model `{}`: {answered} queued request(s) answered 503 (the model is stuck)",
                self.spec.name
            );
        }
    }

    /// The model's entry.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Path of its plugin library.
    pub fn plugin_path(&self) -> &str {
        &self.plugin_path
    }

    /// Its status now.
    pub fn status(&self) -> Status {
        read(&self.state).status.clone()
    }

    /// The loaded model's labels, in output order (empty before it is loaded).
    pub fn labels(&self) -> Arc<[String]> {
        Arc::clone(&read(&self.state).labels)
    }

    /// What the loaded model reported about itself.
    pub fn info(&self) -> Option<ModelInfo> {
        read(&self.state).info.clone()
    }

    /// Wait while the model trains before it serves (at most `limit`); `true` when it is
    /// not (or no longer) training. Shutdown uses it so a stopped auto-train can write its
    /// checkpoint before the process exits.
    pub fn wait_while_training(&self, limit: std::time::Duration) -> bool {
        let started = Instant::now();
        while self.status() == Status::Training {
            if started.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        true
    }

    /// Pairs waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Most pairs one request may carry.
    pub fn max_request_pairs(&self) -> usize {
        self.serving.max_request_pairs
    }

    /// Seconds `pairs` queued pairs should take to run at the recent pace.
    fn drain_secs(&self, pairs: usize) -> u64 {
        drain_secs(pairs, self.micros_per_pair.load(Ordering::Relaxed))
    }

    /// Score `pairs`, waiting for a batch slot on the model's thread; pairs longer than
    /// `max_length` are truncated.
    pub async fn classify(&self, pairs: Vec<TextPair>) -> Result<Vec<Vec<f32>>, ClassifyError> {
        self.classify_with(pairs, Vec::new()).await
    }

    /// [`Self::classify`], refusing (as invalid input) any pair flagged in `keep_whole`
    /// that `max_length` would cut.
    pub async fn classify_with(
        &self,
        pairs: Vec<TextPair>,
        keep_whole: Vec<bool>,
    ) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let status = self.status();
        if status != Status::Ready {
            return Err(ClassifyError::NotReady {
                model: self.spec.name.clone(),
                status: status.as_str(),
                reason: match status {
                    Status::Failed(r) => Some(r),
                    _ => None,
                },
            });
        }
        if let Some(delegate) = self.delegate.get() {
            return delegate.classify(pairs, keep_whole).await;
        }
        let n = pairs.len();
        let capacity = self.serving.queue_capacity;
        let before = self.queued.fetch_add(n, Ordering::SeqCst);
        metrics::set_queued(&self.spec.name, before + n);
        if before + n > capacity && before > 0 {
            self.queued.fetch_sub(n, Ordering::SeqCst);
            return Err(ClassifyError::Overloaded {
                model: self.spec.name.clone(),
                queued: before,
                capacity,
                retry_after_secs: self.drain_secs(before),
            });
        }
        let (reply, answer) = oneshot::channel();
        let claimed = Arc::new(AtomicBool::new(false));
        // Dropped when this request ends: answered, failed, or given up (timeout, disconnect).
        let _unqueue_if_abandoned = Unqueue {
            claimed: Arc::clone(&claimed),
            queued: &self.queued,
            pairs: n,
        };
        let job = Job {
            pairs,
            keep_whole,
            claimed,
            reply,
            enqueued: Instant::now(),
        };
        if self.queue.send(job).is_err() {
            return Err(ClassifyError::WorkerGone(self.spec.name.clone()));
        }
        match answer.await {
            Ok(result) => result.map_err(|source| ClassifyError::Plugin {
                model: self.spec.name.clone(),
                source,
            }),
            Err(_) => Err(ClassifyError::WorkerGone(self.spec.name.clone())),
        }
    }
}

impl Job {
    /// Take the job's pairs off the queue count, unless its caller already did.
    fn unqueue(&self, queued: &AtomicUsize) -> usize {
        if self.claimed.swap(true, Ordering::SeqCst) {
            return queued.load(Ordering::SeqCst);
        }
        let n = self.pairs.len();
        queued.fetch_sub(n, Ordering::SeqCst).saturating_sub(n)
    }
}

/// The caller's side of [`Job::claimed`].
struct Unqueue<'a> {
    claimed: Arc<AtomicBool>,
    queued: &'a AtomicUsize,
    pairs: usize,
}

impl Drop for Unqueue<'_> {
    fn drop(&mut self) {
        if !self.claimed.swap(true, Ordering::SeqCst) {
            self.queued.fetch_sub(self.pairs, Ordering::SeqCst);
        }
    }
}

/// The worker thread's side of the queue.
struct Queue<'a> {
    jobs: &'a Jobs,
    queued: &'a AtomicUsize,
    micros_per_pair: &'a AtomicU64,
    activity: &'a Activity,
}

/// The next job, waiting for one; `None` once every sender is gone.
fn next_job(jobs: &Jobs) -> Option<Job> {
    jobs.lock().unwrap_or_else(|e| e.into_inner()).recv().ok()
}

/// The first job (waiting for it) and whatever else is queued, up to `max_batch` pairs.
fn next_batch(jobs: &Jobs, max_batch: usize) -> Option<Vec<Job>> {
    let jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
    let first = jobs.recv().ok()?;
    let mut size = first.pairs.len();
    let mut batch = vec![first];
    while size < max_batch {
        match jobs.try_recv() {
            Ok(job) => {
                size += job.pairs.len();
                batch.push(job);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The worker loop: take one job, add whatever else is already queued up to `max_batch`
/// pairs, run them together, and answer each job with its own slice of the scores.
fn run_batches(name: &str, model: &LoadedModel, queue: Queue<'_>, max_batch: usize) {
    let Queue {
        jobs,
        queued,
        micros_per_pair,
        activity,
    } = queue;
    let max_batch = max_batch.max(1);
    while let Some(batch) = next_batch(jobs, max_batch) {
        if activity.abandoned.load(Ordering::SeqCst) {
            return; // dropping the batch answers its callers (503)
        }
        let mut batch = batch;
        let mut left = queued.load(Ordering::SeqCst);
        for job in &batch {
            left = job.unqueue(queued);
        }
        metrics::set_queued(name, left);
        // A caller that gave up (timed out, disconnected) does not cost a forward pass.
        let dropped: usize = batch
            .iter()
            .filter(|job| job.reply.is_closed())
            .map(|job| job.pairs.len())
            .sum();
        if dropped > 0 {
            metrics::record_dropped(name, dropped);
            batch.retain(|job| !job.reply.is_closed());
        }
        for job in &batch {
            metrics::record_queue_wait(name, job.enqueued.elapsed());
        }
        activity.start_call();
        let batch = refuse_too_long(name, model, batch);
        if !batch.is_empty() {
            let started = Instant::now();
            let pairs_run: usize = batch.iter().map(|j| j.pairs.len()).sum();
            run_batch(name, model, batch, max_batch);
            record_pace(micros_per_pair, started.elapsed(), pairs_run);
        }
        activity.end_call();
        if activity.abandoned.load(Ordering::SeqCst) {
            return;
        }
    }
}

/// Answer, without scoring them, the jobs holding a pair that must not be truncated but
/// is longer than the model's `max_length`; return the others.
fn refuse_too_long(name: &str, model: &LoadedModel, batch: Vec<Job>) -> Vec<Job> {
    let mut kept = Vec::with_capacity(batch.len());
    for job in batch {
        match check_whole(model, &job) {
            Ok(()) => kept.push(job),
            Err(e) => {
                metrics::record_failure(name, e.kind.as_str());
                let _ = job.reply.send(Err(e));
            }
        }
    }
    kept
}

/// Whether the job's `keep_whole` pairs fit `max_length` untruncated.
fn check_whole(model: &LoadedModel, job: &Job) -> Result<(), SdkError> {
    let strict: Vec<usize> = (0..job.pairs.len())
        .filter(|&i| job.keep_whole.get(i).copied().unwrap_or(false))
        .collect();
    if strict.is_empty() {
        return Ok(());
    }
    let pairs: Vec<TextPair> = strict.iter().map(|&i| job.pairs[i].clone()).collect();
    let too_long = model.too_long(&pairs)?;
    let Some(&(first, tokens)) = too_long.first() else {
        return Ok(());
    };
    let limit = model.info().max_length.unwrap_or(0);
    let which = match job.pairs.len() {
        1 => "the pair".to_string(),
        _ => format!("item {}", strict[first]),
    };
    let others = match too_long.len() {
        1 => String::new(),
        n => format!(" ({} more pairs are too long too)", n - 1),
    };
    Err(SdkError::input(format!(
        "{which} is {tokens} tokens long, more than the model's max_length {limit}{others}, and \
         \"truncate\" is false: shorten it, or send \"truncate\": true to have it cut"
    )))
}

/// Seconds `pairs` take at `micros_per_pair`, rounded up, in 1..=60: `Retry-After` must be
/// a whole number, and an estimate from a slow first batch must not park clients for long.
fn drain_secs(pairs: usize, micros_per_pair: u64) -> u64 {
    let secs = (pairs as u64)
        .saturating_mul(micros_per_pair)
        .div_ceil(1_000_000);
    secs.clamp(1, MAX_RETRY_AFTER_SECS)
}

/// Keep a smoothed time per pair, for the `Retry-After` estimate.
fn record_pace(micros_per_pair: &AtomicU64, took: std::time::Duration, pairs: usize) {
    let sample = (took.as_micros() / pairs.max(1) as u128).min(u64::MAX as u128) as u64;
    let old = micros_per_pair.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old.saturating_mul(3).saturating_add(sample) / 4
    };
    micros_per_pair.store(new, Ordering::Relaxed);
}

/// Run one batch of jobs and answer each.
fn run_batch(name: &str, model: &LoadedModel, batch: Vec<Job>, max_batch: usize) {
    if batch.len() > 1 {
        let pairs: Vec<TextPair> = batch.iter().flat_map(|j| j.pairs.iter().cloned()).collect();
        match classify_chunked(name, model, &pairs, max_batch) {
            Ok(scores) => {
                let mut scores = scores.into_iter();
                for job in batch {
                    let mine = scores.by_ref().take(job.pairs.len()).collect();
                    let _ = job.reply.send(Ok(mine));
                }
                return;
            }
            // One bad request must not fail the others it was batched with: rerun each
            // alone below so only the culprit gets the error.
            Err(err) => tracing::debug!(
                "Model `{name}`: batch failed ({err}); retrying requests one by one"
            ),
        }
    }
    for job in batch {
        let result = classify_chunked(name, model, &job.pairs, max_batch);
        if let Err(e) = &result {
            metrics::record_failure(name, e.kind.as_str());
        }
        let _ = job.reply.send(result);
    }
}

/// Run `pairs` through the plugin in calls of at most `chunk` pairs.
fn classify_chunked(
    name: &str,
    model: &LoadedModel,
    pairs: &[TextPair],
    chunk: usize,
) -> Result<Vec<Vec<f32>>, SdkError> {
    let mut out = Vec::with_capacity(pairs.len());
    for part in pairs.chunks(chunk) {
        let started = Instant::now();
        out.extend(model.classify(part)?);
        metrics::record_batch(name, part.len(), started.elapsed());
    }
    Ok(out)
}

fn read(state: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write(state: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_follows_the_recent_pace_within_bounds() {
        let pace = AtomicU64::new(0);
        assert_eq!(
            drain_secs(100, pace.load(Ordering::Relaxed)),
            1,
            "no pace yet"
        );
        // 32 pairs in 0.8 s: 25 ms a pair.
        record_pace(&pace, Duration::from_millis(800), 32);
        assert_eq!(pace.load(Ordering::Relaxed), 25_000);
        assert_eq!(drain_secs(100, 25_000), 3, "2.5 s rounds up");
        assert_eq!(drain_secs(10_000, 25_000), MAX_RETRY_AFTER_SECS);
        // A faster batch moves the estimate a quarter of the way.
        record_pace(&pace, Duration::from_millis(160), 32);
        assert_eq!(pace.load(Ordering::Relaxed), (25_000 * 3 + 5_000) / 4);
        assert_eq!(drain_secs(usize::MAX, u64::MAX), MAX_RETRY_AFTER_SECS);
    }
}
