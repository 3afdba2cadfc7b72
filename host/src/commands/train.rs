//! `clarity-host train`: load the data, run the plugin's training, check the result, and
//! move it into place.

use super::report;
use crate::artifacts::{Staging, CHECKPOINTS};
use crate::cli::TrainArgs;
use crate::config::Config;
use crate::data;
use crate::plugins::{self, Model, Registry};
use crate::tensorboard;
use crate::training::report::{PLOT_FILE, REPORT_FILE};
use crate::training::{History, Progress, ProgressMode, RunRecorder, RunReport};
use anyhow::{bail, Context};
use clarity_sdk::metrics::{majority_label, Evaluation};
use clarity_sdk::{ErrorKind, Example, ModelSpec, PluginInit, TextPair, TrainJob, TrainReport};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Set by Ctrl-C during `train`: the plugin is asked to stop at its next event.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn run(config: &Config, args: &TrainArgs) -> anyhow::Result<ExitCode> {
    install_interrupt_handler();
    let spec = config.model(&args.model)?;
    // Dropped when `run` returns, whatever the outcome: TensorBoard goes with the command.
    let _tensorboard = tensorboard::start_for(config, &[spec], &args.tensorboard);
    let registry = Registry::default();
    let outcome = train_model(
        &registry,
        config,
        spec,
        args.resume,
        &STOP,
        ProgressMode::detect(),
    )?;
    println!();
    println!(
        "Trained `{}` in {:.1} s ({} steps, {} epochs{}); model in {}",
        spec.name,
        outcome.seconds,
        outcome.report.steps,
        outcome.report.epochs,
        match outcome.best_epoch {
            Some(epoch) => format!(", best epoch {epoch}"),
            None => String::new(),
        },
        outcome.artifact_dir.display()
    );
    if let Some(valid) = &outcome.valid {
        report::print_evaluation("Validation", valid, outcome.baseline.as_ref());
    }
    if let Some(dir) = &outcome.run_dir {
        println!();
        println!(
            "Report: {} (plot {}, TensorBoard events in the same folder)",
            dir.join(REPORT_FILE).display(),
            dir.join(PLOT_FILE).display()
        );
    }
    Ok(ExitCode::SUCCESS)
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

/// Train `spec` and commit its model folder. `stop` asks the plugin to stop early; a run
/// stopped so ends with an [`Interrupted`] error.
pub fn train_model(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    resume: bool,
    stop: &AtomicBool,
    progress_mode: ProgressMode,
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
    let plugin_path = plugins::plugin_path(spec, &config.dir);
    let plugin = registry.open_for(&plugin_path, spec)?;
    let init = config.plugin_init(spec, Some(data.labels.clone()));
    let mut model = plugin.instantiate(&init).with_context(|| {
        format!(
            "model `{}`: {} refused its entry",
            spec.name,
            plugin_path.display()
        )
    })?;

    let final_dir = config.artifact_dir(spec);
    let staging = Staging::create(&final_dir).with_context(|| {
        format!(
            "cannot create a staging folder beside {}",
            final_dir.display()
        )
    })?;
    let checkpoint_dir = final_dir.join(CHECKPOINTS);
    std::fs::create_dir_all(&checkpoint_dir)
        .with_context(|| format!("cannot create {}", checkpoint_dir.display()))?;
    let job = TrainJob {
        labels: data.labels.clone(),
        train: data.train,
        valid: data.valid,
        output_dir: staging.path().to_path_buf(),
        checkpoint_dir,
        resume,
    };

    let mut recorder = match RunRecorder::create(&config.tensorboard_logdir(spec), spec) {
        Ok(recorder) => {
            tracing::info!("TensorBoard run: {}", recorder.dir().display());
            Some(recorder)
        }
        Err(e) => {
            tracing::warn!(
                "no TensorBoard events for this run: cannot create a run folder in {}: {e}",
                config.tensorboard_logdir(spec).display()
            );
            None
        }
    };
    tracing::info!("Training started");
    let mut progress = Progress::new(
        &spec.name,
        spec.training_config.logging_steps,
        progress_mode,
    );
    let mut history = History::default();
    let result = model.train(&job, |event| {
        history.on_event(&event);
        progress.on_event(&event);
        if let Some(recorder) = recorder.as_mut() {
            recorder.on_event(&event);
        }
        !stop.load(Ordering::SeqCst)
    });
    drop(progress);
    let report = match result {
        Ok(report) => report,
        Err(e) if e.kind == ErrorKind::Cancelled || stop.load(Ordering::SeqCst) => {
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
        Err(e) => bail!(
            "training of `{}` failed ({}): {}",
            spec.name,
            e.kind,
            e.message
        ),
    };
    drop(model);

    // Check the staged model before it replaces anything: it must load and score.
    let mut staged_init = init.clone();
    staged_init.artifact_dir = staging.path().to_path_buf();
    let (valid, baseline) = verify_staged(&plugin, &staged_init, &job)?;

    let best_epoch = report
        .best_epoch
        .or_else(|| history.best_evaluation().map(|e| e.epoch));
    let run_dir = recorder.as_ref().map(|r| r.dir().to_path_buf());
    let run_report = RunReport {
        model: &spec.name,
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
    write_host_files(staging.path(), spec, &job, &run_report)?;
    if let Some(dir) = &run_dir {
        if let Err(e) = run_report.write_run_files(dir) {
            tracing::warn!("cannot write the training report in {}: {e}", dir.display());
        }
    }
    let artifact_dir = staging
        .commit()
        .with_context(|| format!("cannot move the trained model into {}", final_dir.display()))?;
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

/// Load the staged model in a fresh backend and score the validation set with it.
fn verify_staged(
    plugin: &plugins::Plugin,
    init: &PluginInit,
    job: &TrainJob,
) -> anyhow::Result<(Option<Evaluation>, Option<Evaluation>)> {
    let mut staged = plugin
        .instantiate(init)
        .context("cannot reopen the trained model")?;
    staged.load().map_err(|e| {
        anyhow::anyhow!(
            "the trained model does not load ({}): {}",
            e.kind,
            e.message
        )
    })?;
    if job.valid.is_empty() {
        return Ok((None, None));
    }
    let scores = classify_examples(&staged, &job.valid, 64).map_err(|e| {
        anyhow::anyhow!(
            "the trained model fails to classify ({}): {}",
            e.kind,
            e.message
        )
    })?;
    let gold: Vec<usize> = job.valid.iter().map(|e| e.label).collect();
    let valid = Evaluation::from_scores(&job.labels, &gold, &scores);
    let majority = majority_label(
        &job.train.iter().map(|e| e.label).collect::<Vec<_>>(),
        job.labels.len(),
    );
    let baseline = Evaluation::compute(&job.labels, &gold, &vec![majority; gold.len()]);
    Ok((Some(valid), Some(baseline)))
}

/// Score examples in chunks of `batch`.
pub fn classify_examples(
    model: &Model,
    examples: &[Example],
    batch: usize,
) -> Result<Vec<Vec<f32>>, clarity_sdk::Error> {
    let mut scores = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch.max(1)) {
        let pairs: Vec<TextPair> = chunk
            .iter()
            .map(|e| TextPair::new(e.question.clone(), e.context.clone()))
            .collect();
        scores.extend(model.classify(&pairs)?);
    }
    Ok(scores)
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
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
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

/// First Ctrl-C asks the plugin to stop and checkpoint; a second exits at once.
fn install_interrupt_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    static PRESSES: AtomicUsize = AtomicUsize::new(0);
    INSTALLED.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            if PRESSES.fetch_add(1, Ordering::SeqCst) == 0 {
                STOP.store(true, Ordering::SeqCst);
                eprintln!("\nStopping after the current step (press Ctrl-C again to exit now)...");
            } else {
                eprintln!("\nExiting now.");
                // Destructors do not run on this path: TensorBoard must not outlive us.
                crate::tensorboard::stop_all();
                std::process::exit(130);
            }
        });
        if let Err(e) = result {
            tracing::warn!("Ctrl-C will not stop training cleanly: {e}");
        }
    });
}
