//! Run a sweep's trials one after another, each a whole training run into its own folder,
//! and keep the best on validation as the model.
//!
//! Trials train into `.<name>.sweep-<pid>/` beside the model folder (so the kept one is moved
//! into place with one rename), and their TensorBoard runs go to
//! `<logdir>/<name>/sweep-<time>/<trial>/`, each an HParams session. A failed trial is
//! reported and the sweep goes on; Ctrl-C stops the sweep and changes no model.

use super::grid::Trial;
use crate::artifacts::{Staging, CHECKPOINTS};
use crate::config::Config;
use crate::plugins::Registry;
use crate::training::{self, Interrupted, TrainOptions, TrialRun};
use anyhow::Context;
use clarity_sdk::selection::BestMetric;
use clarity_sdk::ModelSpec;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The file beside the kept model and in the sweep's run folder: the whole table.
pub const SWEEP_FILE: &str = "sweep.json";

/// What one trial reached.
#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    /// `learning_rate=2e-5 max_length=128`.
    pub trial: String,
    /// The swept keys and values.
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Validation macro-F1 and accuracy of the model it kept.
    pub macro_f1: Option<f64>,
    pub accuracy: Option<f64>,
    /// Wall time of its training run.
    pub seconds: f64,
    /// Its TensorBoard run.
    pub run_dir: PathBuf,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The sweep as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct SweepOutcome {
    pub model: String,
    /// `macro-F1` or `accuracy`: what chose the best trial.
    pub chosen_by: &'static str,
    pub trials: Vec<TrialResult>,
    /// Index of the kept trial.
    pub best: usize,
    /// `path: value` lines that make models.yaml train the kept trial.
    pub best_keys: Vec<String>,
    /// Where the kept model now is.
    pub artifact_dir: PathBuf,
    /// The sweep's TensorBoard folder.
    pub run_dir: PathBuf,
    pub seconds: f64,
}

/// Train every trial of `grid` for `spec` and commit the best.
pub fn run(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    grid: &[Trial],
    options: TrainOptions<'_>,
) -> anyhow::Result<SweepOutcome> {
    let started = Instant::now();
    // Every trial's entry is checked before anything trains.
    let entries = grid
        .iter()
        .map(|trial| trial.apply(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let by = match BestMetric::parse(&spec.training_config.metric_for_best_model) {
        Some(BestMetric::Accuracy) => BestMetric::Accuracy,
        _ => BestMetric::MacroF1,
    };
    let final_dir = config.artifact_dir(spec);
    let work = WorkDir::create(&final_dir)?;
    let run_dir = sweep_run_dir(&config.tensorboard_logdir(spec).join(&spec.name))?;
    tracing::info!(
        "Sweep of `{}`: {} trials in {}, TensorBoard runs in {}",
        spec.name,
        grid.len(),
        work.path.display(),
        run_dir.display()
    );

    let mut results: Vec<TrialResult> = Vec::new();
    // The best trial so far: its index, score, model folder and entry.
    let mut best: Option<(usize, f64, PathBuf, ModelSpec)> = None;
    for (i, (trial, entry)) in grid.iter().zip(entries).enumerate() {
        println!(
            "\nTrial {}/{} of `{}`: {}",
            i + 1,
            grid.len(),
            spec.name,
            trial.describe()
        );
        let folder = trial.folder_name(i);
        let model_dir = work.path.join(&folder);
        let mut trial_entry = entry.clone();
        trial_entry.output_dir = Some(model_dir.clone());
        let trial_run = TrialRun {
            run_dir: run_dir.join(&folder),
            settings: trial.hparams(),
        };
        let trial_options = TrainOptions {
            resume: false,
            stop: options.stop,
            progress: options.progress,
            trial: Some(&trial_run),
        };
        let trial_started = Instant::now();
        let mut result = TrialResult {
            trial: trial.describe(),
            settings: trial.hparams().into_iter().collect(),
            macro_f1: None,
            accuracy: None,
            seconds: 0.0,
            run_dir: trial_run.run_dir.clone(),
            error: None,
        };
        match training::run(registry, config, &trial_entry, trial_options) {
            Ok(outcome) => {
                result.seconds = outcome.seconds;
                let Some(valid) = outcome.valid else {
                    anyhow::bail!(
                        "a sweep chooses on validation data, and `{}` has none: set data_config.valid_file or training_config.valid_split",
                        spec.name
                    );
                };
                result.macro_f1 = Some(valid.macro_f1);
                result.accuracy = Some(valid.accuracy);
                let score = match by {
                    BestMetric::Accuracy => valid.accuracy,
                    _ => valid.macro_f1,
                };
                println!(
                    "Trial {}: validation macro-F1 {:.4}, accuracy {:.4} ({:.1} s)",
                    i + 1,
                    valid.macro_f1,
                    valid.accuracy,
                    outcome.seconds
                );
                // Only the best model so far is kept on disk.
                if best.as_ref().is_none_or(|(_, s, _, _)| score > *s) {
                    if let Some((_, _, beaten, _)) = best.take() {
                        let _ = std::fs::remove_dir_all(beaten);
                    }
                    best = Some((i, score, model_dir, entry));
                } else {
                    let _ = std::fs::remove_dir_all(&model_dir);
                }
            }
            Err(e) if e.is::<Interrupted>() => {
                return Err(e.context(format!(
                    "the sweep of `{}` stopped at trial {}; the model was not changed",
                    spec.name,
                    i + 1
                )));
            }
            Err(e) => {
                result.seconds = trial_started.elapsed().as_secs_f64();
                let message = format!("{e:#}");
                eprintln!("Trial {} failed: {message}", i + 1);
                result.error = Some(message);
            }
        }
        results.push(result);
    }

    let Some((best_index, _, best_dir, best_entry)) = best else {
        anyhow::bail!(
            "every trial of the sweep of `{}` failed; the model was not changed",
            spec.name
        );
    };
    let outcome = SweepOutcome {
        model: spec.name.clone(),
        chosen_by: by.name(),
        best_keys: grid[best_index].as_yaml_keys(),
        trials: results,
        best: best_index,
        artifact_dir: final_dir.clone(),
        run_dir: run_dir.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    keep(spec, best_entry, &best_dir, &final_dir, &outcome)?;
    let table = serde_json::to_string_pretty(&outcome)?;
    if let Err(e) = std::fs::write(run_dir.join(SWEEP_FILE), &table) {
        tracing::warn!("cannot write {}: {e}", run_dir.join(SWEEP_FILE).display());
    }
    Ok(outcome)
}

/// Move the kept trial's model into place: its checkpoints dropped, its recorded entry
/// pointing at the model folder, the sweep's table beside it.
fn keep(
    spec: &ModelSpec,
    mut entry: ModelSpec,
    model: &Path,
    final_dir: &Path,
    outcome: &SweepOutcome,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(model.join(CHECKPOINTS));
    entry.output_dir = spec.output_dir.clone();
    let write = |name: &str, text: String| {
        let path = model.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("model_spec.json", serde_json::to_string_pretty(&entry)?)?;
    write(SWEEP_FILE, serde_json::to_string_pretty(outcome)?)?;
    Staging::adopt(final_dir, model)
        .and_then(Staging::commit)
        .with_context(|| {
            format!(
                "cannot move the kept trial's model into {}",
                final_dir.display()
            )
        })?;
    Ok(())
}

/// `<runs>/<model>/sweep-<time>` (suffixed when taken).
fn sweep_run_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let stamp = chrono::Local::now()
        .format("sweep-%Y%m%d-%H%M%S")
        .to_string();
    let mut dir = parent.join(&stamp);
    let mut n = 2;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                dir = parent.join(format!("{stamp}-{n}"));
                n += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
}

/// The trials' model folders, removed with the sweep whatever its end.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// `.<name>.sweep-<pid>` beside `final_dir`, after removing what killed sweeps left.
    fn create(final_dir: &Path) -> anyhow::Result<Self> {
        let parent = final_dir
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = final_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.sweep-");
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let pid = file
                .strip_prefix(&prefix)
                .and_then(|p| p.parse::<u32>().ok());
            // A live process is found in /proc (Linux); elsewhere nothing is taken for dead.
            let dead = |pid: u32| {
                cfg!(target_os = "linux") && !Path::new(&format!("/proc/{pid}")).exists()
            };
            if pid.is_some_and(dead) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let path = parent.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the sweep's folder {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
