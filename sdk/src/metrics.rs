//! Classification metrics: accuracy, macro-F1, per-label precision/recall/F1, confusion.
//!
//! Shared by the host (`clarity-host test --file`) and plugins (validation during training),
//! so both report identical numbers.

use serde::{Deserialize, Serialize};

/// Scores of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    /// The label.
    pub label: String,
    /// Of the pairs predicted as this label, the share that were.
    pub precision: f64,
    /// Of the pairs that were this label, the share predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Pairs whose gold label this is.
    pub support: u64,
}

/// Scores of a set of predictions against gold labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Pairs scored.
    pub total: u64,
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1 (labels with no gold and no predicted pairs excluded).
    pub macro_f1: f64,
    /// Per-label scores, in label order.
    pub per_label: Vec<LabelScores>,
    /// `confusion[gold][predicted]` counts, in label order.
    pub confusion: Vec<Vec<u64>>,
}

impl Evaluation {
    /// Score `predicted` against `gold` (label indices into `labels`). Indices out of range
    /// are ignored, so a malformed prediction can never panic.
    pub fn compute(labels: &[String], gold: &[usize], predicted: &[usize]) -> Self {
        let k = labels.len();
        let mut confusion = vec![vec![0u64; k]; k];
        let mut total = 0u64;
        let mut correct = 0u64;
        for (&g, &p) in gold.iter().zip(predicted) {
            if g < k && p < k {
                confusion[g][p] += 1;
                total += 1;
                correct += u64::from(g == p);
            }
        }
        let per_label: Vec<LabelScores> = (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let gold_c: u64 = confusion[c].iter().sum();
                let pred_c: u64 = confusion.iter().map(|row| row[c]).sum();
                let precision = ratio(tp, pred_c as f64);
                let recall = ratio(tp, gold_c as f64);
                LabelScores {
                    label: labels[c].clone(),
                    precision,
                    recall,
                    f1: ratio(2.0 * precision * recall, precision + recall),
                    support: gold_c,
                }
            })
            .collect();
        // Like scikit-learn's default, every label that occurs in gold or predictions counts.
        let present: Vec<f64> = (0..k)
            .filter(|&c| per_label[c].support > 0 || confusion.iter().any(|row| row[c] > 0))
            .map(|c| per_label[c].f1)
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        };
        Self {
            total,
            accuracy: ratio(correct as f64, total as f64),
            macro_f1,
            per_label,
            confusion,
        }
    }

    /// Score probability vectors: the predicted label is each vector's argmax.
    pub fn from_scores(labels: &[String], gold: &[usize], scores: &[Vec<f32>]) -> Self {
        let predicted: Vec<usize> = scores.iter().map(|s| argmax(s)).collect();
        Self::compute(labels, gold, &predicted)
    }
}

/// Index of the largest value (the first on ties; 0 for an empty slice). NaN never wins.
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Index of the most frequent label (the first on ties).
pub fn majority_label(gold: &[usize], num_labels: usize) -> usize {
    let mut counts = vec![0u64; num_labels];
    for &g in gold {
        if g < num_labels {
            counts[g] += 1;
        }
    }
    let mut best = 0;
    for (i, &c) in counts.iter().enumerate() {
        if c > counts[best] {
            best = i;
        }
    }
    best
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn perfect_predictions_score_one() {
        let gold = [0, 1, 2, 1];
        let e = Evaluation::compute(&labels(), &gold, &gold);
        assert_eq!(e.accuracy, 1.0);
        assert_eq!(e.macro_f1, 1.0);
        assert_eq!(
            e.confusion,
            vec![vec![1, 0, 0], vec![0, 2, 0], vec![0, 0, 1]]
        );
    }

    #[test]
    fn matches_hand_computed_scores() {
        // gold: a a b b c ; predicted: a b b b a
        let e = Evaluation::compute(&labels(), &[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0]);
        assert!((e.accuracy - 0.6).abs() < 1e-12);
        // a: p=1/2 r=1/2 f=1/2 ; b: p=2/3 r=1 f=0.8 ; c: p=0 r=0 f=0
        assert!((e.per_label[0].f1 - 0.5).abs() < 1e-12);
        assert!((e.per_label[1].f1 - 0.8).abs() < 1e-12);
        assert_eq!(e.per_label[2].f1, 0.0);
        assert!((e.macro_f1 - 1.3 / 3.0).abs() < 1e-12);
        assert_eq!(e.per_label[1].support, 2);
    }

    #[test]
    fn majority_baseline_macro_f1() {
        // Always predicting the majority of 3 labels: F1 only on that label.
        let gold = [0, 0, 0, 1, 2];
        let pred = vec![majority_label(&gold, 3); gold.len()];
        let e = Evaluation::compute(&labels(), &gold, &pred);
        let f1_a = 2.0 * 0.6 * 1.0 / 1.6;
        assert!((e.macro_f1 - f1_a / 3.0).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_and_nan_are_harmless() {
        let e = Evaluation::compute(&labels(), &[0, 7], &[9, 0]);
        assert_eq!(e.total, 0);
        assert_eq!(argmax(&[f32::NAN, 0.2, 0.5]), 2);
        assert_eq!(argmax(&[]), 0);
    }
}
