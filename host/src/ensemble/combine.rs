//! Combining members' probability vectors: label alignment, weights, per-label bias.
//!
//! Pure arithmetic on numbers the members returned; no model code. Sums run in f64 so the
//! served scores equal the weighted combination of the members' own answers to f32 precision.

use clarity_sdk::config::Combine;

/// Smallest probability taken to a logarithm (a member's exact 0 must not give -inf).
const FLOOR: f64 = 1e-12;

/// How an ensemble turns its members' rows into one.
#[derive(Debug, Clone, PartialEq)]
pub struct Combiner {
    /// One per member, summing to 1.
    weights: Vec<f64>,
    /// One log-probability offset per label (all 0: none).
    bias: Vec<f64>,
    mode: Combine,
}

impl Combiner {
    /// `weights` (any non-negative numbers, not all 0: they are scaled to sum to 1), `bias`
    /// one per label.
    pub fn new(weights: &[f64], bias: Vec<f64>, mode: Combine) -> Self {
        let total: f64 = weights.iter().sum();
        let weights = if total > 0.0 {
            weights.iter().map(|w| w / total).collect()
        } else {
            vec![1.0 / weights.len().max(1) as f64; weights.len()]
        };
        Self {
            weights,
            bias,
            mode,
        }
    }

    /// The weights, scaled to sum to 1.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The per-label offsets.
    pub fn bias(&self) -> &[f64] {
        &self.bias
    }

    /// One combined row from one row per member (each already in the ensemble's label
    /// order): a probability vector summing to 1.
    pub fn row(&self, rows: &[&[f32]]) -> Vec<f64> {
        let biased = self.bias.iter().any(|b| *b != 0.0);
        if self.mode == Combine::MeanProb && !biased {
            // The plain weighted mean, not a round trip through logarithms.
            let p = self.mean(rows);
            let total: f64 = p.iter().sum();
            if total > 0.0 {
                return p.iter().map(|x| x / total).collect();
            }
        }
        let logits: Vec<f64> = self
            .logits(rows)
            .iter()
            .zip(&self.bias)
            .map(|(l, b)| l + b)
            .collect();
        softmax(&logits)
    }

    /// The combined log-scores before the bias and the final normalisation: the log of the
    /// weighted mean (`mean_prob`) or the weighted mean of the logs (`mean_log_prob`). The
    /// label with the largest `logits + bias` is the prediction.
    pub fn logits(&self, rows: &[&[f32]]) -> Vec<f64> {
        match self.mode {
            Combine::MeanProb => self.mean(rows).iter().map(|p| p.max(FLOOR).ln()).collect(),
            Combine::MeanLogProb => {
                let mut logits = vec![0.0f64; self.bias.len()];
                for (row, w) in rows.iter().zip(&self.weights) {
                    for (acc, s) in logits.iter_mut().zip(row.iter()) {
                        *acc += w * f64::from(*s).max(FLOOR).ln();
                    }
                }
                logits
            }
        }
    }

    fn mean(&self, rows: &[&[f32]]) -> Vec<f64> {
        let mut p = vec![0.0f64; self.bias.len()];
        for (row, w) in rows.iter().zip(&self.weights) {
            for (acc, s) in p.iter_mut().zip(row.iter()) {
                *acc += w * f64::from(*s);
            }
        }
        p
    }

    /// Combine per-member score tables (`members[m][pair]`, rows in the ensemble's label
    /// order) into one row per pair.
    pub fn combine(&self, members: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
        let pairs = members.first().map_or(0, Vec::len);
        (0..pairs)
            .map(|i| {
                let rows: Vec<&[f32]> = members.iter().map(|m| m[i].as_slice()).collect();
                self.row(&rows).into_iter().map(|x| x as f32).collect()
            })
            .collect()
    }
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// For each of the ensemble's labels, the column of `member` holding it; `None` when the two
/// are not the same set of labels.
pub fn alignment(ensemble: &[String], member: &[String]) -> Option<Vec<usize>> {
    if ensemble.len() != member.len() {
        return None;
    }
    ensemble
        .iter()
        .map(|label| member.iter().position(|m| m == label))
        .collect()
}

/// `rows` with their columns put in the ensemble's order by `columns` (from [`alignment`]).
pub fn align(rows: Vec<Vec<f32>>, columns: &[usize]) -> Vec<Vec<f32>> {
    if columns.iter().enumerate().all(|(i, c)| i == *c) {
        return rows;
    }
    rows.into_iter()
        .map(|row| columns.iter().map(|&c| row[c]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mean_prob_is_the_weighted_mean() {
        let c = Combiner::new(&[3.0, 1.0], vec![0.0; 3], Combine::MeanProb);
        assert_eq!(c.weights(), &[0.75, 0.25]);
        let row = c.row(&[&[0.6, 0.3, 0.1], &[0.2, 0.2, 0.6]]);
        let expected = [0.5, 0.275, 0.225];
        for (got, want) in row.iter().zip(expected) {
            assert!((got - want).abs() < 1e-7, "{row:?}");
        }
    }

    #[test]
    fn mean_log_prob_is_a_normalised_geometric_mean() {
        let c = Combiner::new(&[1.0, 1.0], vec![0.0; 2], Combine::MeanLogProb);
        let row = c.row(&[&[0.8, 0.2], &[0.2, 0.8]]);
        assert!(
            (row[0] - 0.5).abs() < 1e-9 && (row[1] - 0.5).abs() < 1e-9,
            "{row:?}"
        );
        let row = c.row(&[&[0.9, 0.1], &[0.5, 0.5]]);
        let a = (0.9f64 * 0.5).sqrt();
        let b = (0.1f64 * 0.5).sqrt();
        assert!((row[0] - a / (a + b)).abs() < 1e-7, "{row:?}");
        // A member's exact 0 stays finite.
        let row = c.row(&[&[1.0, 0.0], &[0.5, 0.5]]);
        assert!(row.iter().all(|x| x.is_finite()), "{row:?}");
    }

    #[test]
    fn bias_shifts_the_log_probabilities() {
        let c = Combiner::new(&[1.0], vec![0.0, 2.0f64.ln()], Combine::MeanProb);
        let row = c.row(&[&[0.6, 0.4]]);
        // 0.6 : 0.4 * 2, renormalised.
        assert!((row[0] - 0.6 / 1.4).abs() < 1e-7, "{row:?}");
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn labels_are_matched_by_name() {
        let ens = labels(&["a", "b", "c"]);
        let member = labels(&["c", "a", "b"]);
        let columns = alignment(&ens, &member).expect("same labels");
        assert_eq!(columns, vec![1, 2, 0]);
        assert_eq!(
            align(vec![vec![0.5, 0.3, 0.2]], &columns),
            vec![vec![0.3, 0.2, 0.5]]
        );
        assert_eq!(alignment(&ens, &labels(&["a", "b", "d"])), None);
        assert_eq!(alignment(&ens, &labels(&["a", "b"])), None);
    }

    #[test]
    fn combine_keeps_pair_order_and_sums_to_one() {
        let c = Combiner::new(&[1.0, 1.0], vec![0.0; 2], Combine::MeanProb);
        let a = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let b = vec![vec![0.5, 0.5], vec![0.5, 0.5]];
        let out = c.combine(&[a, b]);
        assert_eq!(out, vec![vec![0.75, 0.25], vec![0.25, 0.75]]);
    }
}
