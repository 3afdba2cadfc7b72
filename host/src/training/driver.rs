//! One training run from the host's side, for every caller (`train`, `serve`'s auto-train):
//! load the data, run the plugin's training with progress and TensorBoard events, check the
//! staged model, and move it into place.
//!
//! A run stopped through [`TrainOptions::stop`] ends with [`Interrupted`]: the plugin has
//! written its checkpoint, and no model folder was touched.

use super::report::RunReport;
use super::{History, Progress, ProgressMode, RunRecorder};
use crate::artifacts::{self, Staging, CHECKPOINTS};
use crate::backend::LoadedModel;
use crate::config::Config;
use crate::data;
use crate::plugins::Registry;
use anyhow::Context;
use clarity_sdk::metrics::{majority_label, Evaluation};
use clarity_sdk::{ErrorKind, Example, ModelSpec, PluginInit, TextPair, TrainJob, TrainReport};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Pairs per call when the staged model scores the validation set.
const VERIFY_BATCH: usize = 64;

/// How to run one training.
pub struct TrainOptions<'a> {
    /// Continue from the last checkpoint.
    pub resume: bool,
    /// Turns true to ask the plugin to checkpoint and stop (Ctrl-C, SIGTERM).
    pub stop: &'a AtomicBool,
    /// Bars on a terminal, or log lines.
    pub progress: ProgressMode,
    /// Set when the run is one trial of a sweep.
    pub trial: Option<&'a TrialRun>,
}

/// A run that is one trial of a sweep: where its TensorBoard run goes and what it tries.
#[derive(Debug, Clone)]
pub struct TrialRun {
    /// The run folder (inside the sweep's folder).
    pub run_dir: PathBuf,
    /// The swept keys and this trial's values: its HParams session.
    pub settings: Vec<(String, serde_json::Value)>,
}

/// A run stopped by Ctrl-C (or SIGTERM): the checkpoint is kept, no model was written.
#[derive(Debug, thiserror::Error)]
#[error(
    "training of `{model}` was interrupted{at}; no model was written. Resume with \
     `clarity-host train --model {model} --resume`"
)]
pub struct Interrupted {
    model: String,
    at: String,
}

/// The result of a successful training run.
pub struct TrainOutcome {
    /// What the plugin reported.
    pub report: TrainReport,
    /// The committed model scored on the validation set.
    pub valid: Option<Evaluation>,
    /// The majority-class baseline on the same set.
    pub baseline: Option<Evaluation>,
    /// Wall time.
    pub seconds: f64,
    /// Where the model now is.
    pub artifact_dir: PathBuf,
    /// The epoch whose model was kept.
    pub best_epoch: Option<u64>,
    /// The TensorBoard run folder with `report.json`, if it could be created.
    pub run_dir: Option<PathBuf>,
}

/// Train `spec` and commit its model folder.
pub fn run(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    options: TrainOptions<'_>,
) -> anyhow::Result<TrainOutcome> {
    let started = Instant::now();
    let data = data::prepare_training(config, spec)?;
    tracing::info!(
        "Training `{}`: {} training pairs from {}, {} validation pairs from {}, labels {:?}",
        spec.name,
        data.train.len(),
        data.train_file.display(),
        data.valid.len(),
        data.valid_source,
        data.labels
    );
    tracing::info!(
        "Label counts: train {:?}, valid {:?}",
        data::label_counts(&data.train, &data.labels),
        data::label_counts(&data.valid, &data.labels)
    );
    if spec.model_config.trust_remote_code.is_some() {
        tracing::info!(
            "model_config.trust_remote_code has no effect here: architectures are built in and no model code is downloaded or run"
        );
    }
    let init = config.plugin_init(spec, Some(data.labels.clone()));
    let mut model = registry.model_with(config, spec, &init)?;

    let final_dir = config.artifact_dir(spec);
    // Before any training: a folder the model cannot be written to fails now, not at the end.
    let unwritable = || {
        format!(
            "model `{}` cannot be saved to {} (output_dir); nothing was trained",
            spec.name,
            final_dir.display()
        )
    };
    let staging = Staging::create(&final_dir).with_context(unwritable)?;
    let checkpoint_dir = final_dir.join(CHECKPOINTS);
    std::fs::create_dir_all(&checkpoint_dir)
        .map_err(|e| artifacts::ArtifactError {
            action: "create",
            path: checkpoint_dir.clone(),
            error: e,
        })
        .with_context(unwritable)?;
    let job = TrainJob {
        labels: data.labels.clone(),
        train: data.train,
        valid: data.valid,
        output_dir: staging.path().to_path_buf(),
        checkpoint_dir,
        resume: options.resume,
        groups: data.groups,
    };

    let mut recorder = open_recorder(config, spec, options.trial);
    tracing::info!("Training started");
    let mut progress = Progress::new(
        &spec.name,
        spec.training_config.logging_steps,
        options.progress,
    );
    let mut history = History::default();
    let result = model.train(&job, |event| {
        history.on_event(&event);
        progress.on_event(&event);
        if let Some(recorder) = recorder.as_mut() {
            recorder.on_event(&event);
        }
        !options.stop.load(Ordering::SeqCst)
    });
    drop(progress);
    let report = match result {
        Ok(report) => report,
        Err(e) if e.kind == ErrorKind::Cancelled || options.stop.load(Ordering::SeqCst) => {
            tracing::debug!("the plugin stopped: {}", e.message);
            let at = match history.last_checkpoint {
                Some(step) => format!(
                    " at step {step} (checkpoint in {})",
                    job.checkpoint_dir.display()
                ),
                None => String::new(),
            };
            return Err(Interrupted {
                model: spec.name.clone(),
                at,
            }
            .into());
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!("training of `{}` failed; {}", spec.name, kept(&final_dir))
            })
        }
    };
    drop(model);

    // Check the staged model before it replaces anything: it must load and score.
    let mut staged_init = init.clone();
    staged_init.artifact_dir = staging.path().to_path_buf();
    let (valid, baseline) = verify_staged(registry, config, spec, &staged_init, &job)
        .with_context(|| kept(&final_dir))?;

    let best_epoch = report
        .best_epoch
        .or_else(|| history.best_evaluation().map(|e| e.epoch));
    let run_dir = recorder.as_ref().map(|r| r.dir().to_path_buf());
    if let (Some(recorder), Some(valid)) = (recorder.as_mut(), valid.as_ref()) {
        recorder.final_scores(report.steps, valid);
    }
    let run_report = RunReport {
        model: &spec.name,
        entry: spec,
        seconds: started.elapsed().as_secs_f64(),
        train_examples: job.train.len(),
        valid_examples: job.valid.len(),
        valid_source: &data.valid_source,
        resumed: job.resume,
        best_epoch,
        valid: valid.as_ref(),
        majority_baseline: baseline.as_ref(),
        report: &report,
        history: &history,
        artifact_dir: &final_dir,
        run_dir: run_dir.as_deref(),
    };
    write_host_files(staging.path(), spec, &job, &run_report).with_context(|| kept(&final_dir))?;
    if let Some(dir) = &run_dir {
        if let Err(e) = run_report.write_run_files(dir) {
            tracing::warn!("cannot write the training report in {}: {e}", dir.display());
        }
    }
    let artifact_dir = staging.commit().with_context(|| {
        format!(
            "cannot move the trained model into {}; {}",
            final_dir.display(),
            kept(&final_dir)
        )
    })?;
    if let Some(recorder) = recorder.as_mut() {
        recorder.end_session(crate::tensorboard::hparams::Status::Success);
    }
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!("Training finished: `{}` in {seconds:.1} s", spec.name);
    Ok(TrainOutcome {
        report,
        valid,
        baseline,
        seconds,
        artifact_dir,
        best_epoch,
        run_dir,
    })
}

/// What a failed run left of the model folder: the previous model, untouched.
fn kept(final_dir: &Path) -> String {
    if artifacts::has_model(final_dir) {
        format!("the previous model in {} is unchanged", final_dir.display())
    } else {
        format!("no model was written to {}", final_dir.display())
    }
}

/// The TensorBoard run folder, or `None` (with a warning) when it cannot be created. A
/// trial's run is also an HParams session.
fn open_recorder(
    config: &Config,
    spec: &ModelSpec,
    trial: Option<&TrialRun>,
) -> Option<RunRecorder> {
    let (opened, place) = match trial {
        Some(trial) => (
            RunRecorder::create_at(trial.run_dir.clone(), spec),
            trial.run_dir.clone(),
        ),
        None => {
            let logdir = config.tensorboard_logdir(spec);
            (RunRecorder::create(&logdir, spec), logdir)
        }
    };
    match opened {
        Ok(mut recorder) => {
            tracing::info!("TensorBoard run: {}", recorder.dir().display());
            if let Some(trial) = trial {
                recorder.start_session(&trial.settings);
            }
            Some(recorder)
        }
        Err(e) => {
            tracing::warn!(
                "no TensorBoard events for this run: cannot create a run folder in {}: {e}",
                place.display()
            );
            None
        }
    }
}

/// Load the staged model in a fresh backend and score the validation set with it.
fn verify_staged(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    init: &PluginInit,
    job: &TrainJob,
) -> anyhow::Result<(Option<Evaluation>, Option<Evaluation>)> {
    let staged = registry
        .model_with(config, spec, init)
        .context("cannot reopen the trained model")?
        .into_loaded()
        .context("the trained model does not load")?;
    if job.valid.is_empty() {
        return Ok((None, None));
    }
    let scores = classify_examples(&staged, &job.valid, VERIFY_BATCH)
        .context("the trained model fails to classify")?;
    // The loaded model answers the coarse labels when the job groups fine ones.
    let (labels, answer_label): (&[String], Box<dyn Fn(usize) -> usize>) = match &job.groups {
        Some(g) => (
            &g.coarse,
            Box::new(|fine| g.coarse_index(fine).unwrap_or(usize::MAX)),
        ),
        None => (&job.labels, Box::new(|label| label)),
    };
    let gold: Vec<usize> = job.valid.iter().map(|e| answer_label(e.label)).collect();
    let valid = Evaluation::from_scores(labels, &gold, &scores);
    let majority = majority_label(
        &job.train
            .iter()
            .map(|e| answer_label(e.label))
            .collect::<Vec<_>>(),
        labels.len(),
    );
    let baseline = Evaluation::compute(labels, &gold, &vec![majority; gold.len()]);
    Ok((Some(valid), Some(baseline)))
}

/// Score examples in calls of `batch` pairs.
pub fn classify_examples(
    model: &LoadedModel,
    examples: &[Example],
    batch: usize,
) -> Result<Vec<Vec<f32>>, clarity_sdk::Error> {
    let pairs: Vec<TextPair> = examples
        .iter()
        .map(|e| TextPair::new(e.question.clone(), e.context.clone()))
        .collect();
    model.classify_chunked(&pairs, batch)
}

/// Files every model folder gets, whatever its plugin: the entry used, the labels, the
/// validation metrics and the training report.
fn write_host_files(
    dir: &Path,
    spec: &ModelSpec,
    job: &TrainJob,
    run_report: &RunReport,
) -> anyhow::Result<()> {
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| artifacts::ArtifactError {
            action: "write",
            path,
            error: e,
        })?;
        Ok(())
    };
    let pretty = |value: serde_json::Value| serde_json::to_string_pretty(&value);
    write("model_spec.json", pretty(serde_json::to_value(spec)?)?)?;
    write("labels.json", pretty(json!(job.labels))?)?;
    write(
        "metrics.json",
        pretty(json!({
            "valid": run_report.valid,
            "majority_baseline": run_report.majority_baseline,
        }))?,
    )?;
    write("train_report.json", run_report.json()?)
}
