//! What a training run reported, kept for the report and its plot.

use clarity_sdk::metrics::Evaluation;
use clarity_sdk::TrainEvent;
use serde::Serialize;

/// One optimizer step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub learning_rate: Option<f64>,
}

/// One evaluation on the validation set.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRecord {
    pub step: u64,
    pub epoch: u64,
    pub loss: Option<f64>,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_label_f1: Vec<(String, f64)>,
}

/// Every step and evaluation of a run, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct History {
    /// Step the run started at (non-zero when resumed).
    pub start_step: u64,
    pub steps: Vec<StepRecord>,
    pub evaluations: Vec<EvalRecord>,
    /// Step of the newest checkpoint written.
    pub last_checkpoint: Option<u64>,
}

impl History {
    pub fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started { start_step, .. } => self.start_step = *start_step,
            TrainEvent::Step {
                step,
                epoch,
                loss,
                learning_rate,
            } => self.steps.push(StepRecord {
                step: *step,
                epoch: *epoch,
                loss: *loss,
                learning_rate: *learning_rate,
            }),
            TrainEvent::Eval {
                step,
                epoch,
                loss,
                metrics,
            } => self
                .evaluations
                .push(EvalRecord::new(*step, *epoch, *loss, metrics)),
            TrainEvent::Checkpoint { step, .. } => self.last_checkpoint = Some(*step),
            TrainEvent::Message { .. } => {}
        }
    }

    /// The evaluation with the best macro-F1 (the first of equals).
    pub fn best_evaluation(&self) -> Option<&EvalRecord> {
        self.evaluations.iter().fold(None, |best, e| match best {
            Some(b) if b.macro_f1 >= e.macro_f1 => Some(b),
            _ => Some(e),
        })
    }
}

impl EvalRecord {
    fn new(step: u64, epoch: u64, loss: Option<f64>, metrics: &Evaluation) -> Self {
        Self {
            step,
            epoch,
            loss,
            accuracy: metrics.accuracy,
            macro_f1: metrics.macro_f1,
            per_label_f1: metrics
                .per_label
                .iter()
                .map(|l| (l.label.clone(), l.f1))
                .collect(),
        }
    }
}
