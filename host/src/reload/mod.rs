//! Hot reload: re-read `models.yaml` (SIGHUP or `POST /admin/reload`), or reload one model's
//! artifacts (`POST /admin/models/{name}/reload`), while the server keeps answering.
//!
//! New and changed entries load on new workers beside the served ones; every one that turns
//! ready joins the table in one atomic swap, so a route switches from the old model to the
//! new one between two requests. A new worker that fails leaves the old model serving, and
//! its error goes to the reply, the log and `GET /`. Entries the file dropped leave the table;
//! requests in flight keep their own handle on the old worker, which stops when the last of
//! them is answered. A `models.yaml` that does not parse changes nothing.
//!
//! A new entry that must be trained first (auto-train) does not hold the reply for the whole
//! run: it is reported `pending`, and joins the table by itself once it is ready.

pub mod plan;
pub mod table;
#[cfg(test)]
mod tests;

pub use table::{ModelTable, SharedTable};

use crate::config::{Config, ConfigError};
use crate::worker::{ModelWorker, Status};
use clarity_sdk::ModelSpec;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Starts a worker for an entry of `config`; `true` lets it train first if it never was.
pub type SpawnWorker =
    dyn Fn(Arc<Config>, ModelSpec, bool) -> std::io::Result<ModelWorker> + Send + Sync;

/// Longest a reload waits for a new worker to load before answering (under the default
/// `--request-timeout` of 60 s); one still loading then is reported `pending` and joins the
/// table when it is ready.
const SETTLE_WAIT: Duration = Duration::from_secs(30);

/// How often a loading worker's status is looked at.
const POLL: Duration = Duration::from_millis(25);

/// What a reload did, for the reply, the log and `GET /`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    /// What asked for it: `POST /admin/reload`, `SIGHUP`, ...
    pub trigger: String,
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// New or changed models now serving on a new worker.
    pub loaded: Vec<String>,
    /// Models whose entry did not change: same worker.
    pub unchanged: Vec<String>,
    /// Models no longer served (they finish their requests in flight, then stop).
    pub removed: Vec<String>,
    /// Models whose new worker failed; an old one, if any, keeps serving.
    pub failed: Vec<Failure>,
    /// Models still loading or training: they join the table when ready.
    pub pending: Vec<String>,
}

/// A model that failed to (re)load.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failure {
    /// The model.
    pub name: String,
    /// Why.
    pub error: String,
    /// Whether its previous worker is still serving its route.
    pub old_model_serving: bool,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `models.yaml` cannot be read, does not parse, or an entry is invalid.
    #[error("models.yaml was not reloaded, nothing changed: {0}")]
    Config(#[from] ConfigError),
    /// No served model has that name.
    #[error("no served model is named `{0}` (GET / lists them)")]
    UnknownModel(String),
    /// The reload task itself failed (a bug).
    #[error("the reload stopped unexpectedly: {0}")]
    Aborted(String),
}

/// Reloads the served table from `models.yaml`.
pub struct Reloader {
    config_path: PathBuf,
    /// `--model` names: a reload serves these only (all enabled entries when empty).
    selected: Vec<String>,
    table: SharedTable,
    spawn: Box<SpawnWorker>,
    /// One reload at a time: a second waits for the first.
    one_at_a_time: tokio::sync::Mutex<()>,
    state: Mutex<Progress>,
}

/// What reloads leave behind them.
struct Progress {
    /// The configuration the served entries come from (per-model reloads reuse it).
    config: Arc<Config>,
    /// Workers still loading or training, not yet in the table.
    pending: Vec<Arc<ModelWorker>>,
    /// The last reload's report.
    last: Option<Report>,
}

impl Reloader {
    /// A reloader over `table`, whose entries come from `config`.
    pub fn new(
        config: Arc<Config>,
        selected: Vec<String>,
        table: SharedTable,
        spawn: Box<SpawnWorker>,
    ) -> Self {
        Self {
            config_path: config.path.clone(),
            selected,
            table,
            spawn,
            one_at_a_time: tokio::sync::Mutex::new(()),
            state: Mutex::new(Progress {
                config,
                pending: Vec::new(),
                last: None,
            }),
        }
    }

    /// The `models.yaml` a reload reads.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config_path
    }

    /// The last reload's report (pending entries as they are now).
    pub fn last_report(&self) -> Option<Report> {
        self.progress().last.clone()
    }

    /// Workers loading or training outside the table (shutdown waits for their training).
    pub fn pending(&self) -> Vec<Arc<ModelWorker>> {
        self.progress().pending.clone()
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-read `models.yaml` and apply it. Runs on its own task, so a client that gives up
    /// (or the request deadline) does not stop it half-way.
    pub async fn reload(self: &Arc<Self>, trigger: &str) -> Result<Report, ReloadError> {
        let this = Arc::clone(self);
        let trigger = trigger.to_string();
        tokio::spawn(async move { this.reload_config(trigger).await })
            .await
            .map_err(|e| ReloadError::Aborted(e.to_string()))?
    }

    /// Load model `name` again from its artifacts (after a `train` in another process) and
    /// switch to it once ready; it is not trained here if it has none.
    pub async fn reload_model(self: &Arc<Self>, name: &str) -> Result<Report, ReloadError> {
        let this = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move { this.reload_one(name).await })
            .await
            .map_err(|e| ReloadError::Aborted(e.to_string()))?
    }

    async fn reload_config(self: Arc<Self>, trigger: String) -> Result<Report, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let read = crate::config::load(&self.config_path)
            .map_err(ReloadError::from)
            .and_then(|config| Ok((self.wanted(&config)?, config)));
        let (wanted, config) = match read {
            Ok((wanted, config)) => (wanted, Arc::new(config)),
            Err(e) => {
                crate::metrics::record_reloads("invalid_config", 1);
                return Err(e);
            }
        };
        let served = self.table.load_full();
        let pending = self.pending();
        let plan = plan::plan(
            &served.specs(),
            &pending.iter().map(|w| w.spec()).collect::<Vec<_>>(),
            &wanted,
        );
        let mut report = Report {
            trigger: trigger.clone(),
            unchanged: plan.unchanged.clone(),
            removed: plan.removed.clone(),
            pending: plan.still_pending.clone(),
            ..Report::default()
        };
        for name in &plan.abandoned {
            tracing::info!("Reload ({trigger}): model `{name}` was still loading; the new models.yaml drops or changes it, so it is abandoned");
        }
        self.progress()
            .pending
            .retain(|w| !plan.abandoned.contains(&w.spec().name));

        let started = self.start_all(&config, plan.start, true, &mut report);
        settle_all(&started).await;
        let mut ready = Vec::new();
        let mut still_loading = Vec::new();
        for worker in started {
            match worker.status() {
                Status::Ready => ready.push(worker),
                Status::Failed(reason) => report.failed.push(Failure {
                    name: worker.spec().name.clone(),
                    error: reason,
                    old_model_serving: served.by_name(&worker.spec().name).is_some(),
                }),
                Status::Loading | Status::Training => still_loading.push(worker),
            }
        }
        let next = next_table(&wanted, &served, &ready, &mut report);
        report.loaded = ready
            .iter()
            .filter(|w| next.by_name(&w.spec().name).is_some())
            .map(|w| w.spec().name.clone())
            .collect();
        self.table.store(Arc::new(next));
        {
            let mut progress = self.progress();
            progress.config = config;
            progress.pending.extend(still_loading.iter().cloned());
        }
        for worker in still_loading {
            report.pending.push(worker.spec().name.clone());
            self.install_when_ready(worker, trigger.clone());
        }
        Ok(self.finish(report))
    }

    async fn reload_one(self: Arc<Self>, name: String) -> Result<Report, ReloadError> {
        let _one = self.one_at_a_time.lock().await;
        let trigger = format!("POST /admin/models/{name}/reload");
        let served = self.table.load_full();
        let Some(old) = served.by_name(&name).cloned() else {
            return Err(ReloadError::UnknownModel(name));
        };
        let config = Arc::clone(&self.progress().config);
        let mut report = Report {
            trigger: trigger.clone(),
            ..Report::default()
        };
        let started = self.start_all(&config, vec![old.spec().clone()], false, &mut report);
        settle_all(&started).await;
        for worker in started {
            match worker.status() {
                Status::Ready => {
                    let models = served
                        .iter()
                        .map(|w| {
                            if Arc::ptr_eq(w, &old) {
                                Arc::clone(&worker)
                            } else {
                                Arc::clone(w)
                            }
                        })
                        .collect();
                    self.table.store(Arc::new(ModelTable::new(models)));
                    report.loaded.push(name.clone());
                }
                Status::Failed(reason) => report.failed.push(Failure {
                    name: name.clone(),
                    error: reason,
                    old_model_serving: true,
                }),
                Status::Loading | Status::Training => {
                    self.progress().pending.push(Arc::clone(&worker));
                    report.pending.push(name.clone());
                    self.install_when_ready(worker, trigger.clone());
                }
            }
        }
        Ok(self.finish(report))
    }

    /// The entries to serve: the `--model` ones, or every enabled one.
    fn wanted(&self, config: &Config) -> Result<Vec<ModelSpec>, ReloadError> {
        if self.selected.is_empty() {
            return Ok(config.enabled().cloned().collect());
        }
        self.selected
            .iter()
            .map(|name| config.model(name).cloned().map_err(ReloadError::from))
            .collect()
    }

    /// Start a worker per entry; one whose thread cannot start is a failure.
    fn start_all(
        &self,
        config: &Arc<Config>,
        specs: Vec<ModelSpec>,
        auto_train: bool,
        report: &mut Report,
    ) -> Vec<Arc<ModelWorker>> {
        let mut started = Vec::new();
        for spec in specs {
            let name = spec.name.clone();
            tracing::info!("Reload: loading model `{name}` beside the served ones");
            match (self.spawn)(Arc::clone(config), spec, auto_train) {
                Ok(worker) => started.push(Arc::new(worker)),
                Err(e) => report.failed.push(Failure {
                    old_model_serving: self.table.load().by_name(&name).is_some(),
                    name,
                    error: format!("cannot start a model thread: {e}"),
                }),
            }
        }
        started
    }

    /// Put `worker` in the table once it is ready (replacing the served model of that name),
    /// unless a later reload abandoned it.
    fn install_when_ready(self: &Arc<Self>, worker: Arc<ModelWorker>, trigger: String) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            while matches!(worker.status(), Status::Loading | Status::Training) {
                tokio::time::sleep(POLL * 4).await;
            }
            let _one = this.one_at_a_time.lock().await;
            let name = worker.spec().name.clone();
            {
                let mut progress = this.progress();
                let before = progress.pending.len();
                progress.pending.retain(|w| !Arc::ptr_eq(w, &worker));
                if progress.pending.len() == before {
                    return; // abandoned by a later reload
                }
            }
            let served = this.table.load_full();
            let outcome = match worker.status() {
                Status::Ready => {
                    let taken = served
                        .by_route(&worker.spec().route())
                        .filter(|w| w.spec().name != name);
                    if let Some(other) = taken {
                        Err(format!(
                            "its route {} is now served by model `{}`",
                            worker.spec().route(),
                            other.spec().name
                        ))
                    } else {
                        let mut models: Vec<_> = served.iter().cloned().collect();
                        match models.iter().position(|w| w.spec().name == name) {
                            Some(i) => models[i] = Arc::clone(&worker),
                            None => models.push(Arc::clone(&worker)),
                        }
                        this.table.store(Arc::new(ModelTable::new(models)));
                        Ok(())
                    }
                }
                Status::Failed(reason) => Err(reason),
                Status::Loading | Status::Training => return,
            };
            crate::metrics::record_reloads(if outcome.is_ok() { "loaded" } else { "failed" }, 1);
            let mut progress = this.progress();
            if let Some(report) = progress.last.as_mut() {
                report.pending.retain(|n| *n != name);
                match &outcome {
                    Ok(()) => report.loaded.push(name.clone()),
                    Err(error) => report.failed.push(Failure {
                        name: name.clone(),
                        error: error.clone(),
                        old_model_serving: served.by_name(&name).is_some(),
                    }),
                }
            }
            match outcome {
                Ok(()) => tracing::info!(
                    "Reload ({trigger}): model `{name}` is ready and now serves {}",
                    worker.spec().route()
                ),
                Err(error) => {
                    tracing::error!("Reload ({trigger}): model `{name}` failed to load: {error}")
                }
            }
        });
    }

    /// Log the report, keep it for `GET /`, and return it.
    fn finish(&self, mut report: Report) -> Report {
        report.finished_at = chrono::Utc::now().to_rfc3339();
        crate::metrics::record_reloads("loaded", report.loaded.len());
        crate::metrics::record_reloads("failed", report.failed.len());
        for failure in &report.failed {
            tracing::error!(
                "Reload ({}): model `{}` failed to load{}: {}",
                report.trigger,
                failure.name,
                if failure.old_model_serving {
                    "; the old model keeps serving"
                } else {
                    ""
                },
                failure.error
            );
        }
        for name in &report.removed {
            tracing::info!("Reload ({}): model `{name}` removed; it stops once its requests in flight are answered", report.trigger);
        }
        tracing::info!(
            "Reload ({}): loaded {:?}, unchanged {:?}, removed {:?}, failed {:?}, pending {:?}",
            report.trigger,
            report.loaded,
            report.unchanged,
            report.removed,
            report.failed.iter().map(|f| &f.name).collect::<Vec<_>>(),
            report.pending
        );
        self.progress().last = Some(report.clone());
        report
    }
}

/// Wait until each worker is ready, failed or training, or [`SETTLE_WAIT`] has passed.
async fn settle_all(workers: &[Arc<ModelWorker>]) {
    let started = Instant::now();
    while started.elapsed() < SETTLE_WAIT && workers.iter().any(|w| w.status() == Status::Loading) {
        tokio::time::sleep(POLL).await;
    }
}

/// The table after a reload, in file order: the new worker where one is ready, else the
/// served one (unchanged, or kept because its new worker failed or is pending). A kept old
/// worker whose route another model now claims leaves the table, with a failure saying so.
fn next_table(
    wanted: &[ModelSpec],
    served: &ModelTable,
    ready: &[Arc<ModelWorker>],
    report: &mut Report,
) -> ModelTable {
    let current = |spec: &ModelSpec| -> Option<Arc<ModelWorker>> {
        ready
            .iter()
            .find(|w| w.spec().name == spec.name)
            .or_else(|| served.by_name(&spec.name).filter(|w| w.spec() == spec))
            .cloned()
    };
    let claimed: Vec<String> = wanted
        .iter()
        .filter(|spec| current(spec).is_some())
        .map(|spec| spec.route())
        .collect();
    let mut models = Vec::new();
    for spec in wanted {
        if let Some(worker) = current(spec) {
            models.push(worker);
            continue;
        }
        let Some(old) = served.by_name(&spec.name) else {
            continue;
        };
        let old_route = old.spec().route();
        if old_route != spec.route() && claimed.contains(&old_route) {
            if let Some(failure) = report.failed.iter_mut().find(|f| f.name == spec.name) {
                failure.old_model_serving = false;
                failure.error.push_str(&format!(
                    "; its old route {old_route} now belongs to another model, so it is no longer served"
                ));
            }
            continue;
        }
        models.push(Arc::clone(old));
    }
    ModelTable::new(models)
}
