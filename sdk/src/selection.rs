//! Which evaluation counts as the best one, as the Hugging Face Trainer decides it:
//! `training_config.metric_for_best_model`, `greater_is_better` and
//! `early_stopping_threshold`.
//!
//! The best model is the one with the strictly best metric so far (no threshold, like the
//! Trainer's `best_metric`); early stopping's patience is reset only by an evaluation that
//! beats the best so far by more than the threshold (like `EarlyStoppingCallback`).

use crate::config::TrainingConfig;
use crate::metrics::Evaluation;

/// The metrics `metric_for_best_model` may name (each also with an `eval_` prefix).
pub const SUPPORTED_METRICS: &[&str] = &["eval_loss", "accuracy", "f1", "macro_f1"];

/// A metric the best model can be chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BestMetric {
    /// Mean validation cross-entropy (`eval_loss`, `loss`).
    Loss,
    /// Validation accuracy.
    Accuracy,
    /// Validation macro-F1 (`f1`, `macro_f1`).
    MacroF1,
}

impl BestMetric {
    /// The metric `name` means, with or without the `eval_` prefix; `None` when unsupported.
    pub fn parse(name: &str) -> Option<Self> {
        let lower = name.trim().to_ascii_lowercase();
        match lower.strip_prefix("eval_").unwrap_or(&lower) {
            "loss" => Some(Self::Loss),
            "accuracy" => Some(Self::Accuracy),
            "f1" | "macro_f1" => Some(Self::MacroF1),
            _ => None,
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "eval_loss",
            Self::Accuracy => "accuracy",
            Self::MacroF1 => "macro-F1",
        }
    }

    /// The Trainer's default direction: lower is better for a loss, higher for the rest.
    pub fn greater_is_better_by_default(self) -> bool {
        self != Self::Loss
    }

    /// Its value in an evaluation (`loss` is the mean validation loss, when there is one).
    pub fn value(self, evaluation: &Evaluation, loss: Option<f64>) -> Option<f64> {
        match self {
            Self::Loss => loss,
            Self::Accuracy => Some(evaluation.accuracy),
            Self::MacroF1 => Some(evaluation.macro_f1),
        }
    }
}

/// The message for an unsupported `metric_for_best_model`.
pub fn unsupported_metric(name: &str) -> String {
    format!(
        "metric_for_best_model \"{name}\" is not supported; use one of {} (each also with or without the `eval_` prefix, e.g. `loss` or `eval_accuracy`)",
        SUPPORTED_METRICS
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// How evaluations are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// What is compared.
    pub metric: BestMetric,
    /// Whether a larger value is better.
    pub greater_is_better: bool,
    /// How much better than the best so far an evaluation must be to reset early stopping's
    /// patience.
    pub threshold: f64,
}

impl Selection {
    /// The selection `config` asks for; the error names the supported metrics.
    pub fn from_config(config: &TrainingConfig) -> Result<Self, String> {
        let metric = BestMetric::parse(&config.metric_for_best_model)
            .ok_or_else(|| unsupported_metric(&config.metric_for_best_model))?;
        Ok(Self {
            metric,
            greater_is_better: config
                .greater_is_better
                .unwrap_or_else(|| metric.greater_is_better_by_default()),
            threshold: config.early_stopping_threshold.max(0.0),
        })
    }

    /// Whether `candidate` is strictly better than `best` (anything beats no best; a
    /// missing or NaN value is never better).
    pub fn is_better(&self, candidate: Option<f64>, best: Option<f64>) -> bool {
        let Some(c) = candidate.filter(|c| !c.is_nan()) else {
            return false;
        };
        match best {
            None => true,
            Some(b) if self.greater_is_better => c > b,
            Some(b) => c < b,
        }
    }

    /// Whether `candidate` resets early stopping's patience: better than `best` by more
    /// than the threshold.
    pub fn resets_patience(&self, candidate: Option<f64>, best: Option<f64>) -> bool {
        match (candidate, best) {
            (Some(c), Some(b)) => self.is_better(candidate, best) && (c - b).abs() > self.threshold,
            _ => self.is_better(candidate, best),
        }
    }

    /// "lower eval_loss" / "higher macro-F1", for messages.
    pub fn describe(&self) -> String {
        let way = if self.greater_is_better {
            "higher"
        } else {
            "lower"
        };
        format!("{way} {}", self.metric.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(metric: &str, greater: Option<bool>, threshold: f64) -> TrainingConfig {
        TrainingConfig {
            metric_for_best_model: metric.into(),
            greater_is_better: greater,
            early_stopping_threshold: threshold,
            ..TrainingConfig::default()
        }
    }

    #[test]
    fn names_with_and_without_the_eval_prefix() {
        for (name, metric) in [
            ("eval_loss", BestMetric::Loss),
            ("loss", BestMetric::Loss),
            ("accuracy", BestMetric::Accuracy),
            ("eval_accuracy", BestMetric::Accuracy),
            ("f1", BestMetric::MacroF1),
            ("eval_f1", BestMetric::MacroF1),
            ("macro_f1", BestMetric::MacroF1),
            ("eval_macro_f1", BestMetric::MacroF1),
        ] {
            assert_eq!(BestMetric::parse(name), Some(metric), "{name}");
        }
        assert_eq!(BestMetric::parse("eval_bleu"), None);
        let message = Selection::from_config(&config("bleu", None, 0.0)).unwrap_err();
        assert!(message.contains("\"bleu\""), "{message}");
        for m in SUPPORTED_METRICS {
            assert!(message.contains(m), "{message}");
        }
    }

    #[test]
    fn the_direction_defaults_as_in_the_trainer() {
        let loss = Selection::from_config(&config("eval_loss", None, 0.0)).unwrap();
        assert!(!loss.greater_is_better);
        let f1 = Selection::from_config(&config("f1", None, 0.0)).unwrap();
        assert!(f1.greater_is_better);
        let flipped = Selection::from_config(&config("loss", Some(true), 0.0)).unwrap();
        assert!(flipped.greater_is_better);
    }
}
