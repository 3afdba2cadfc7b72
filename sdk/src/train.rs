//! Training jobs, progress events and reports.
//!
//! The host loads and samples the data, then hands the plugin a [`TrainJob`]. The plugin
//! reports progress through a [`TrainContext`]; the host turns those events into progress
//! bars, log lines and TensorBoard scalars, so every plugin gets them for free.

use crate::groups::LabelGroups;
use crate::metrics::Evaluation;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One labelled training example. `label` indexes [`TrainJob::labels`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The question asked.
    pub question: String,
    /// The context (interview question and answer).
    pub context: String,
    /// Index of the gold label.
    pub label: usize,
}

/// Everything a plugin needs to train one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainJob {
    /// The labels, in output order.
    pub labels: Vec<String>,
    /// Training examples, already sampled.
    pub train: Vec<Example>,
    /// Validation examples, already sampled (may be empty).
    pub valid: Vec<Example>,
    /// Write the finished model here. The host moves this folder into place only after
    /// `train` returns successfully, so a failed run never leaves a half-written model.
    pub output_dir: PathBuf,
    /// Checkpoints for `--resume` go here; it survives failed and interrupted runs.
    pub checkpoint_dir: PathBuf,
    /// Continue from the newest checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// Set when `labels` are fine labels grouped into coarse ones (`label_config.groups`):
    /// validation scores and model selection are on the coarse labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<LabelGroups>,
}

impl TrainJob {
    /// Score predictions on the validation set: `gold` and `scores` over `labels`, judged on
    /// the coarse labels when the job has groups.
    pub fn evaluate(&self, gold: &[usize], scores: &[Vec<f32>]) -> Evaluation {
        match &self.groups {
            None => Evaluation::from_scores(&self.labels, gold, scores),
            Some(groups) => {
                let gold: Vec<usize> = gold
                    .iter()
                    .map(|&g| groups.coarse_index(g).unwrap_or(usize::MAX))
                    .collect();
                let scores: Vec<Vec<f32>> =
                    scores.iter().map(|row| groups.coarse_scores(row)).collect();
                Evaluation::from_scores(&groups.coarse, &gold, &scores)
            }
        }
    }
}

/// A progress event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TrainEvent {
    /// Training begins.
    Started {
        /// Optimizer steps planned in all (if known).
        total_steps: Option<u64>,
        /// Epochs planned.
        epochs: u64,
        /// Training examples.
        train_examples: u64,
        /// Step training starts at (non-zero when resuming).
        start_step: u64,
    },
    /// One optimizer step (or one iteration of a classic solver) finished.
    Step {
        /// Global step, counting from 1.
        step: u64,
        /// Epoch, counting from 1.
        epoch: u64,
        /// Training loss of this step.
        loss: f64,
        /// Learning rate used.
        learning_rate: Option<f64>,
    },
    /// An evaluation on the validation set.
    Eval {
        /// Global step it was taken at.
        step: u64,
        /// Epoch it was taken at.
        epoch: u64,
        /// Validation loss, where the plugin has one.
        loss: Option<f64>,
        /// The scores.
        metrics: Evaluation,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Global step it holds.
        step: u64,
        /// Where it is.
        path: PathBuf,
    },
    /// A free-form message for the training log.
    Message {
        /// The text.
        text: String,
    },
}

/// What a finished training run returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Optimizer steps taken in all (including those before a resume).
    pub steps: u64,
    /// Epochs completed.
    pub epochs: u64,
    /// Epoch whose model was kept (best validation macro-F1), if evaluated.
    pub best_epoch: Option<u64>,
    /// Final training loss.
    pub train_loss: Option<f64>,
    /// Validation scores of the kept model.
    pub valid: Option<Evaluation>,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// Files written to the output folder.
    pub artifacts: Vec<String>,
}

/// The host's answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop as soon as possible: write a checkpoint and return an
    /// [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) error.
    Stop,
}

/// A plugin's handle on the host during [`Classifier::train`](crate::Classifier::train).
pub struct TrainContext<'a> {
    /// Delivers one JSON event; `false` means "stop".
    sink: Option<&'a mut dyn FnMut(&str) -> bool>,
    stop_requested: bool,
}

impl<'a> TrainContext<'a> {
    /// A context that hands every event, as JSON, to `sink`; `false` from it means "stop".
    /// The host builds one per run; plugin tests use it to watch events.
    pub fn new(sink: &'a mut dyn FnMut(&str) -> bool) -> Self {
        Self {
            sink: Some(sink),
            stop_requested: false,
        }
    }

    /// A context that records nothing and never asks to stop: for unit tests of a plugin.
    pub fn detached() -> TrainContext<'static> {
        TrainContext {
            sink: None,
            stop_requested: false,
        }
    }

    /// Send `event` to the host.
    pub fn emit(&mut self, event: TrainEvent) -> Flow {
        if let Some(sink) = self.sink.as_mut() {
            // Serialising these plain structs cannot fail; an empty string is ignored by the host.
            let json = serde_json::to_string(&event).unwrap_or_default();
            if !sink(&json) {
                self.stop_requested = true;
            }
        }
        if self.stop_requested {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// Log a free-form line in the training log.
    pub fn message(&mut self, text: impl Into<String>) -> Flow {
        self.emit(TrainEvent::Message { text: text.into() })
    }

    /// Whether the host has asked training to stop.
    pub fn should_stop(&self) -> bool {
        self.stop_requested
    }
}
