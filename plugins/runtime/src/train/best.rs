//! The best-model and early-stopping decision after each evaluation, by
//! `metric_for_best_model` / `greater_is_better` / `early_stopping_threshold`
//! ([`Selection`]), as the Hugging Face Trainer and its `EarlyStoppingCallback` decide.

use super::checkpoint::Best;
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::selection::Selection;

/// What one evaluation means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// It is strictly better than the best so far: its weights become the best.
    pub improved: bool,
    /// It beats the best so far by more than the threshold: early stopping's count restarts.
    pub resets_patience: bool,
}

/// Judge `evaluation` (with its mean validation `loss`) against `best`.
pub fn judge(
    selection: &Selection,
    evaluation: &Evaluation,
    loss: Option<f64>,
    best: Option<&Best>,
) -> Verdict {
    let value = selection.metric.value(evaluation, loss);
    let best_value = best.and_then(|b| selection.metric.value(&b.evaluation, b.loss));
    Verdict {
        improved: selection.is_better(value, best_value),
        resets_patience: selection.resets_patience(value, best_value),
    }
}

/// Whether `evals_since_best` evaluations without a reset exhaust `patience` (none or 0:
/// early stopping is off).
pub fn patience_ran_out(patience: Option<usize>, evals_since_best: u64) -> bool {
    patience.is_some_and(|p| p > 0 && evals_since_best >= p as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clarity_sdk::config::TrainingConfig;

    fn evaluation(accuracy: f64, macro_f1: f64) -> Evaluation {
        Evaluation {
            total: 10,
            accuracy,
            macro_f1,
            per_label: Vec::new(),
            confusion: Vec::new(),
        }
    }

    fn best(accuracy: f64, macro_f1: f64, loss: f64) -> Best {
        Best {
            epoch: 1,
            step: 1,
            evaluation: evaluation(accuracy, macro_f1),
            loss: Some(loss),
        }
    }

    fn selection(metric: &str, greater: Option<bool>, threshold: f64) -> Selection {
        Selection::from_config(&TrainingConfig {
            metric_for_best_model: metric.into(),
            greater_is_better: greater,
            early_stopping_threshold: threshold,
            ..TrainingConfig::default()
        })
        .expect("a supported metric")
    }

    /// Replays evaluations (accuracy, macro-F1, loss) and returns the index of the one kept
    /// as best and the evaluation early stopping (patience `p`) ends the run at, if any.
    fn replay(s: &Selection, evals: &[(f64, f64, f64)], p: usize) -> (usize, Option<usize>) {
        let mut kept: Option<(usize, Best)> = None;
        let mut since = 0u64;
        for (i, &(acc, f1, loss)) in evals.iter().enumerate() {
            let v = judge(
                s,
                &evaluation(acc, f1),
                Some(loss),
                kept.as_ref().map(|k| &k.1),
            );
            if v.improved {
                kept = Some((i, best(acc, f1, loss)));
            }
            since = if v.resets_patience { 0 } else { since + 1 };
            if patience_ran_out(Some(p), since) {
                return (kept.map_or(0, |k| k.0), Some(i));
            }
        }
        (kept.map_or(0, |k| k.0), None)
    }

    // (accuracy, macro-F1, loss) per evaluation: each metric has its best elsewhere.
    const RUN: [(f64, f64, f64); 4] = [
        (0.50, 0.40, 0.90),
        (0.70, 0.45, 0.60),
        (0.60, 0.55, 0.70),
        (0.55, 0.50, 0.95),
    ];

    #[test]
    fn each_metric_and_direction_picks_its_own_best() {
        for (metric, greater, expected) in [
            ("eval_loss", None, 1),       // lowest loss
            ("loss", Some(false), 1),     // the same
            ("eval_loss", Some(true), 3), // highest loss, as asked
            ("accuracy", None, 1),        // highest accuracy
            ("eval_accuracy", Some(false), 0),
            ("f1", None, 2), // highest macro-F1
            ("eval_macro_f1", Some(true), 2),
            ("macro_f1", Some(false), 0),
        ] {
            let (kept, _) = replay(&selection(metric, greater, 0.0), &RUN, 10);
            assert_eq!(kept, expected, "{metric} greater_is_better={greater:?}");
        }
    }

    #[test]
    fn early_stopping_follows_the_metric_and_its_direction() {
        // Loss improves at 1 only: with patience 2, evaluations 2 and 3 end the run at 3.
        assert_eq!(
            replay(&selection("eval_loss", None, 0.0), &RUN, 2),
            (1, Some(3))
        );
        // macro-F1 improves at 1 and 2: patience 2 never runs out in 4 evaluations.
        assert_eq!(replay(&selection("f1", None, 0.0), &RUN, 2), (2, None));
        // Patience 0 or none: never stops.
        assert!(!patience_ran_out(Some(0), 100));
        assert!(!patience_ran_out(None, 100));
    }

    #[test]
    fn the_threshold_is_for_early_stopping_only() {
        // Loss 0.90 -> 0.60 improves by 0.3. With a threshold of 0.31 that is not enough:
        // the best weights still move (strictly better), but patience keeps counting, so
        // patience 2 ends the run at evaluation 2 instead of 3.
        let s = selection("eval_loss", None, 0.31);
        assert_eq!(replay(&s, &RUN, 2), (1, Some(2)));
        let s = selection("eval_loss", None, 0.29);
        assert_eq!(replay(&s, &RUN, 2), (1, Some(3)));
        // Higher is better, threshold 0.1: accuracy 0.5 -> 0.7 (+0.2) resets, nothing after.
        let s = selection("accuracy", None, 0.1);
        assert_eq!(replay(&s, &RUN, 2), (1, Some(3)));
        // The first evaluation always counts as an improvement.
        let v = judge(&s, &evaluation(0.1, 0.1), Some(1.0), None);
        assert_eq!(
            v,
            Verdict {
                improved: true,
                resets_patience: true
            }
        );
    }

    #[test]
    fn a_missing_or_nan_loss_is_never_an_improvement() {
        let s = selection("eval_loss", None, 0.0);
        let b = best(0.5, 0.5, 0.8);
        assert!(!judge(&s, &evaluation(0.9, 0.9), None, Some(&b)).improved);
        assert!(!judge(&s, &evaluation(0.9, 0.9), Some(f64::NAN), Some(&b)).improved);
    }
}
