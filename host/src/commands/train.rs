//! `clarity-host train`: load the data, run the plugin's training, check the result, and
//! move it into place.

use super::report;
use crate::artifacts::{Staging, CHECKPOINTS};
use crate::cli::TrainArgs;
use crate::config::Config;
use crate::data;
use crate::plugins::{self, Model, Registry};
use anyhow::{bail, Context};
use clarity_sdk::metrics::{majority_label, Evaluation};
use clarity_sdk::{
    ErrorKind, Example, ModelSpec, PluginInit, TextPair, TrainEvent, TrainJob, TrainReport,
};
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
    let registry = Registry::default();
    let outcome = train_model(&registry, config, spec, args.resume, &STOP)?;
    println!();
    println!(
        "Trained `{}` in {:.1} s ({} steps, {} epochs); model in {}",
        spec.name,
        outcome.seconds,
        outcome.report.steps,
        outcome.report.epochs,
        outcome.artifact_dir.display()
    );
    if let Some(valid) = &outcome.valid {
        report::print_evaluation("Validation", valid, outcome.baseline.as_ref());
    }
    Ok(ExitCode::SUCCESS)
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
}

/// Train `spec` and commit its model folder. `stop` asks the plugin to stop early.
pub fn train_model(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    resume: bool,
    stop: &AtomicBool,
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

    tracing::info!("Training started");
    let mut progress = ProgressLog::new(&spec.name, spec.training_config.logging_steps);
    let result = model.train(&job, |event| {
        progress.on_event(&event);
        !stop.load(Ordering::SeqCst)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) if e.kind == ErrorKind::Cancelled || stop.load(Ordering::SeqCst) => bail!(
            "training of `{}` was interrupted ({}); no model was written. Resume with `clarity-host train --model {} --resume`",
            spec.name,
            e.message,
            spec.name
        ),
        Err(e) => bail!("training of `{}` failed ({}): {}", spec.name, e.kind, e.message),
    };
    drop(model);

    // Check the staged model before it replaces anything: it must load and score.
    let mut staged_init = init.clone();
    staged_init.artifact_dir = staging.path().to_path_buf();
    let (valid, baseline) = verify_staged(&plugin, &staged_init, &job)?;

    write_host_files(
        staging.path(),
        spec,
        &job,
        &report,
        valid.as_ref(),
        baseline.as_ref(),
        &data.valid_source,
        started,
        &progress,
    )?;
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
/// validation metrics and a training report.
#[allow(clippy::too_many_arguments)]
fn write_host_files(
    dir: &Path,
    spec: &ModelSpec,
    job: &TrainJob,
    report: &TrainReport,
    valid: Option<&Evaluation>,
    baseline: Option<&Evaluation>,
    valid_source: &str,
    started: Instant,
    progress: &ProgressLog,
) -> anyhow::Result<()> {
    let write = |name: &str, value: serde_json::Value| -> anyhow::Result<()> {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value)?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("model_spec.json", serde_json::to_value(spec)?)?;
    write("labels.json", json!(job.labels))?;
    write(
        "metrics.json",
        json!({ "valid": valid, "majority_baseline": baseline }),
    )?;
    write(
        "train_report.json",
        json!({
            "model": spec.name,
            "train_examples": job.train.len(),
            "valid_examples": job.valid.len(),
            "valid_source": valid_source,
            "resumed": job.resume,
            "seconds": started.elapsed().as_secs_f64(),
            "report": report,
            "history": progress.evaluations,
            "step_losses": progress.steps,
        }),
    )
}

/// Turns training events into log lines.
struct ProgressLog {
    model: String,
    every: u64,
    total_steps: Option<u64>,
    /// Every evaluation, for the training report.
    evaluations: Vec<serde_json::Value>,
    /// (step, loss) of every optimizer step, for the training report.
    steps: Vec<(u64, f64)>,
}

impl ProgressLog {
    fn new(model: &str, every: usize) -> Self {
        Self {
            model: model.to_string(),
            every: every.max(1) as u64,
            total_steps: None,
            evaluations: Vec::new(),
            steps: Vec::new(),
        }
    }

    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                total_steps,
                epochs,
                train_examples,
                start_step,
            } => {
                self.total_steps = *total_steps;
                tracing::info!(
                    "`{}`: {train_examples} examples, {epochs} epochs, {} steps{}",
                    self.model,
                    total_steps
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "?".into()),
                    if *start_step > 0 {
                        format!(", resuming at step {start_step}")
                    } else {
                        String::new()
                    }
                );
            }
            TrainEvent::Step {
                step,
                epoch,
                loss,
                learning_rate,
            } => {
                self.steps.push((*step, *loss));
                if step % self.every == 0 || Some(*step) == self.total_steps {
                    let total = self
                        .total_steps
                        .map(|t| format!("/{t}"))
                        .unwrap_or_default();
                    let lr = learning_rate
                        .map(|l| format!(" lr {l:.2e}"))
                        .unwrap_or_default();
                    tracing::info!(
                        "`{}`: epoch {epoch} step {step}{total} loss {loss:.4}{lr}",
                        self.model
                    );
                }
            }
            TrainEvent::Eval {
                step,
                epoch,
                loss,
                metrics,
            } => {
                self.evaluations.push(json!({
                    "step": step, "epoch": epoch, "loss": loss,
                    "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1,
                }));
                let loss = loss.map(|l| format!(" loss {l:.4}")).unwrap_or_default();
                tracing::info!(
                    "`{}`: eval at epoch {epoch} step {step}: accuracy {:.4} macro-F1 {:.4}{loss}",
                    self.model,
                    metrics.accuracy,
                    metrics.macro_f1
                );
            }
            TrainEvent::Checkpoint { step, path } => {
                tracing::info!(
                    "`{}`: checkpoint at step {step}: {}",
                    self.model,
                    path.display()
                );
            }
            TrainEvent::Message { text } => tracing::info!("`{}`: {text}", self.model),
        }
    }
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
                std::process::exit(130);
            }
        });
        if let Err(e) = result {
            tracing::warn!("Ctrl-C will not stop training cleanly: {e}");
        }
    });
}
