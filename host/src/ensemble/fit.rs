//! Fitting an ensemble on the validation set, deterministically: the weights by a grid over
//! the members' simplex, then (optionally) one log-probability offset per label by
//! coordinate search, both maximising macro-F1.
//!
//! The grid holds every corner (one member alone), so the fitted weights never score below
//! the best member on the data they were fitted on. Among equal scores the weights nearest
//! the uniform ones win, and among equal offsets the current one stays: the fit moves away
//! from the plain average only for a gain.

use super::combine::Combiner;
use clarity_sdk::config::Combine;
use clarity_sdk::metrics::Evaluation;

/// Grid steps per member count: about 20 to 250 weightings, each scored on the whole set.
fn grid_steps(members: usize) -> usize {
    match members {
        0..=2 => 20,
        3 => 12,
        4 => 8,
        5 => 6,
        _ => 5,
    }
}

/// The bias candidates tried for each label, in steps of 0.1 (a factor of e^3 ~ 20 at most).
const BIAS_RANGE: i32 = 30;
const BIAS_STEP: f64 = 0.1;
/// Passes over the labels in the coordinate search.
const BIAS_ROUNDS: usize = 3;

/// Scores differing by less than this are equal.
const EPS: f64 = 1e-12;

/// The members' scores on the validation set, in the ensemble's label order, and the gold
/// labels: `members[m][pair][label]`.
pub struct Validation<'a> {
    /// Per member, one row per pair.
    pub members: &'a [Vec<Vec<f32>>],
    /// Gold label per pair.
    pub gold: &'a [usize],
    /// The labels.
    pub labels: &'a [String],
}

impl Validation<'_> {
    /// The rows of pair `i`, one per member.
    fn rows(&self, i: usize) -> Vec<&[f32]> {
        self.members.iter().map(|m| m[i].as_slice()).collect()
    }

    fn pairs(&self) -> usize {
        self.gold.len()
    }

    /// Macro-F1 of predicting the largest `logits[i] + bias`.
    fn macro_f1(&self, logits: &[Vec<f64>], bias: &[f64]) -> f64 {
        let predicted: Vec<usize> = logits
            .iter()
            .map(|row| {
                let mut best = 0;
                let mut top = f64::NEG_INFINITY;
                for (k, (l, b)) in row.iter().zip(bias).enumerate() {
                    if l + b > top {
                        top = l + b;
                        best = k;
                    }
                }
                best
            })
            .collect();
        Evaluation::compute(self.labels, self.gold, &predicted).macro_f1
    }

    /// Every pair's combined log-scores under `combiner` (bias left out).
    fn logits(&self, combiner: &Combiner) -> Vec<Vec<f64>> {
        (0..self.pairs())
            .map(|i| combiner.logits(&self.rows(i)))
            .collect()
    }

    /// How the ensemble `combiner` does on this set.
    pub fn evaluate(&self, combiner: &Combiner) -> Evaluation {
        Evaluation::from_scores(self.labels, self.gold, &combiner.combine(self.members))
    }
}

/// The weights (one per member, summing to 1) with the best macro-F1 on `data`.
pub fn fit_weights(data: &Validation<'_>, mode: Combine) -> Vec<f64> {
    let m = data.members.len();
    let uniform = 1.0 / m as f64;
    let no_bias = vec![0.0; data.labels.len()];
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    for weights in simplex_grid(m, grid_steps(m)) {
        let combiner = Combiner::new(&weights, no_bias.clone(), mode);
        let f1 = data.macro_f1(&data.logits(&combiner), &no_bias);
        let spread: f64 = weights.iter().map(|w| (w - uniform).powi(2)).sum();
        let better = match &best {
            None => true,
            Some((top, top_spread, _)) => {
                f1 > top + EPS || ((f1 - top).abs() <= EPS && spread < top_spread - EPS)
            }
        };
        if better {
            best = Some((f1, spread, weights));
        }
    }
    best.map_or_else(|| vec![uniform; m], |(_, _, w)| w)
}

/// One log-probability offset per label maximising macro-F1 on `data` with `weights`.
pub fn fit_bias(data: &Validation<'_>, weights: &[f64], mode: Combine) -> Vec<f64> {
    let labels = data.labels.len();
    let logits = data.logits(&Combiner::new(weights, vec![0.0; labels], mode));
    let mut bias = vec![0.0; labels];
    let mut current = data.macro_f1(&logits, &bias);
    for _ in 0..BIAS_ROUNDS {
        let mut moved = false;
        for k in 0..labels {
            let kept = bias[k];
            let mut best = (current, kept);
            for step in -BIAS_RANGE..=BIAS_RANGE {
                let candidate = f64::from(step) * BIAS_STEP;
                bias[k] = candidate;
                let f1 = data.macro_f1(&logits, &bias);
                let nearer = (candidate.abs() < best.1.abs()) && (f1 - best.0).abs() <= EPS;
                if f1 > best.0 + EPS || nearer {
                    best = (f1, candidate);
                }
            }
            bias[k] = best.1;
            moved |= best.1 != kept;
            current = best.0;
        }
        if !moved {
            break;
        }
    }
    bias
}

/// What to fit in [`cross_fit`]: the weights (or the given ones), and the bias or none.
#[derive(Debug, Clone, Copy)]
pub struct Fitting<'a> {
    /// `None`: fitted; `Some`: these weights.
    pub weights: Option<&'a [f64]>,
    /// Fit one offset per label too.
    pub bias: bool,
    pub mode: Combine,
}

/// Folds of [`cross_fit`].
pub const CROSS_FOLDS: usize = 5;

/// How the fitting does on pairs it never saw: the set is cut into `folds` interleaved parts,
/// each predicted by weights (and bias) fitted on the other parts. `None` on fewer pairs than
/// folds.
pub fn cross_fit(data: &Validation<'_>, fitting: Fitting<'_>, folds: usize) -> Option<Evaluation> {
    let n = data.pairs();
    if folds < 2 || n < folds {
        return None;
    }
    let mut predicted = vec![0usize; n];
    for fold in 0..folds {
        let (held, kept): (Vec<usize>, Vec<usize>) = (0..n).partition(|i| i % folds == fold);
        let pick = |idx: &[usize]| -> (Vec<Vec<Vec<f32>>>, Vec<usize>) {
            let members = data
                .members
                .iter()
                .map(|m| idx.iter().map(|&i| m[i].clone()).collect())
                .collect();
            (members, idx.iter().map(|&i| data.gold[i]).collect())
        };
        let (members, gold) = pick(&kept);
        let train = Validation {
            members: &members,
            gold: &gold,
            labels: data.labels,
        };
        let weights = match fitting.weights {
            Some(w) => w.to_vec(),
            None => fit_weights(&train, fitting.mode),
        };
        let bias = if fitting.bias {
            fit_bias(&train, &weights, fitting.mode)
        } else {
            vec![0.0; data.labels.len()]
        };
        let combiner = Combiner::new(&weights, bias.clone(), fitting.mode);
        for &i in &held {
            // The first of equal scores wins, as in `macro_f1`.
            let mut top = (0, f64::NEG_INFINITY);
            for (k, (l, b)) in combiner.logits(&data.rows(i)).iter().zip(&bias).enumerate() {
                if l + b > top.1 {
                    top = (k, l + b);
                }
            }
            predicted[i] = top.0;
        }
    }
    Some(Evaluation::compute(data.labels, data.gold, &predicted))
}

/// Every weighting of `members` in steps of `1/steps`, corners included, in a fixed order.
pub fn simplex_grid(members: usize, steps: usize) -> Vec<Vec<f64>> {
    fn walk(
        left: usize,
        slots: usize,
        steps: usize,
        prefix: &mut Vec<usize>,
        out: &mut Vec<Vec<f64>>,
    ) {
        if slots == 1 {
            prefix.push(left);
            out.push(prefix.iter().map(|&k| k as f64 / steps as f64).collect());
            prefix.pop();
            return;
        }
        for k in (0..=left).rev() {
            prefix.push(k);
            walk(left - k, slots - 1, steps, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    if members > 0 {
        walk(steps, members, steps, &mut Vec::new(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn labels() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    /// A noisy member: right with probability `skill`, else a random label; confident
    /// either way. Returns its rows.
    fn member(gold: &[usize], skill: f64, bias_to: Option<usize>, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        gold.iter()
            .map(|&g| {
                let mut row = vec![0.0f32; 3];
                for v in &mut row {
                    *v = rng.random_range(0.05..0.3);
                }
                let pick = if rng.random_bool(skill) {
                    g
                } else {
                    bias_to.unwrap_or_else(|| rng.random_range(0..3))
                };
                row[pick] += rng.random_range(0.3..1.0);
                let total: f32 = row.iter().sum();
                row.iter().map(|v| v / total).collect()
            })
            .collect()
    }

    fn gold(n: usize, seed: u64) -> Vec<usize> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(0..3)).collect()
    }

    #[test]
    fn the_grid_covers_the_simplex_with_its_corners() {
        let grid = simplex_grid(3, 4);
        assert_eq!(grid.len(), 15, "C(6, 2) weightings");
        for w in &grid {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{w:?}");
        }
        for corner in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]] {
            assert!(grid.iter().any(|w| w == &corner), "{corner:?} missing");
        }
        assert_eq!(simplex_grid(2, 20).len(), 21);
        assert_eq!(simplex_grid(6, grid_steps(6)).len(), 252);
    }

    #[test]
    fn cross_fitting_fixed_weights_is_scoring_them_and_fitting_stays_near_the_best() {
        let labels = labels();
        let gold = gold(300, 7);
        let members = vec![member(&gold, 0.7, None, 71), member(&gold, 0.3, None, 72)];
        let data = Validation {
            members: &members,
            gold: &gold,
            labels: &labels,
        };
        let fixed = [0.6, 0.4];
        let fitting = Fitting {
            weights: Some(&fixed),
            bias: false,
            mode: Combine::MeanProb,
        };
        let crossed = cross_fit(&data, fitting, CROSS_FOLDS).expect("enough pairs");
        let direct = data.evaluate(&Combiner::new(&fixed, vec![0.0; 3], Combine::MeanProb));
        assert!((crossed.macro_f1 - direct.macro_f1).abs() < 1e-9);
        assert_eq!(crossed.total, 300);

        // Fitted on four fifths, each fifth scored: near the good member, not the noise.
        let fitted = Fitting {
            weights: None,
            bias: true,
            mode: Combine::MeanProb,
        };
        let crossed = cross_fit(&data, fitted, CROSS_FOLDS).expect("enough pairs");
        let good = Evaluation::from_scores(&labels, &gold, &members[0]).macro_f1;
        assert!(
            crossed.macro_f1 > good - 0.1,
            "{} vs {good}",
            crossed.macro_f1
        );

        let few = Validation {
            members: &members,
            gold: &gold[..3],
            labels: &labels,
        };
        assert!(cross_fit(&few, fitted, CROSS_FOLDS).is_none());
    }

    #[test]
    fn fitted_weights_do_no_worse_than_the_best_member() {
        let labels = labels();
        for seed in 0..6u64 {
            let gold = gold(300, seed);
            let members = vec![
                member(&gold, 0.7, None, seed * 10 + 1),
                member(&gold, 0.5, Some(2), seed * 10 + 2),
                member(&gold, 0.4, None, seed * 10 + 3),
            ];
            let data = Validation {
                members: &members,
                gold: &gold,
                labels: &labels,
            };
            let best_member = members
                .iter()
                .map(|m| Evaluation::from_scores(&labels, &gold, m).macro_f1)
                .fold(0.0, f64::max);
            for mode in [Combine::MeanProb, Combine::MeanLogProb] {
                let weights = fit_weights(&data, mode);
                let combiner = Combiner::new(&weights, vec![0.0; 3], mode);
                let fitted = data.evaluate(&combiner).macro_f1;
                assert!(
                    fitted + 1e-9 >= best_member,
                    "seed {seed} {mode:?}: fitted {fitted} < best member {best_member} ({weights:?})"
                );
                let bias = fit_bias(&data, &weights, mode);
                let with_bias = data
                    .evaluate(&Combiner::new(&weights, bias.clone(), mode))
                    .macro_f1;
                assert!(
                    with_bias + 1e-9 >= fitted,
                    "seed {seed} {mode:?}: bias {bias:?} lowered macro-F1 {fitted} -> {with_bias}"
                );
            }
        }
    }

    #[test]
    fn a_useless_member_gets_no_weight_and_a_skewed_one_gets_a_bias() {
        let labels = labels();
        let gold = gold(400, 7);
        // The second member always says "c".
        let useless: Vec<Vec<f32>> = gold.iter().map(|_| vec![0.1, 0.1, 0.8]).collect();
        let good = member(&gold, 0.8, None, 9);
        let members = vec![good, useless];
        let data = Validation {
            members: &members,
            gold: &gold,
            labels: &labels,
        };
        let weights = fit_weights(&data, Combine::MeanProb);
        assert!(weights[0] > weights[1], "{weights:?}");
        // A member that over-predicts "c": a negative offset on "c" helps macro-F1.
        let skewed = vec![member(&gold, 0.5, Some(2), 11)];
        let data = Validation {
            members: &skewed,
            gold: &gold,
            labels: &labels,
        };
        let bias = fit_bias(&data, &[1.0], Combine::MeanProb);
        let plain = data.evaluate(&Combiner::new(&[1.0], vec![0.0; 3], Combine::MeanProb));
        let fitted = data.evaluate(&Combiner::new(&[1.0], bias.clone(), Combine::MeanProb));
        assert!(bias[2] < bias[0] && bias[2] < bias[1], "{bias:?}");
        assert!(
            fitted.macro_f1 > plain.macro_f1,
            "{} -> {}",
            plain.macro_f1,
            fitted.macro_f1
        );
    }

    #[test]
    fn the_fit_is_deterministic() {
        let labels = labels();
        let gold = gold(200, 3);
        let members = vec![member(&gold, 0.6, None, 1), member(&gold, 0.6, None, 2)];
        let data = Validation {
            members: &members,
            gold: &gold,
            labels: &labels,
        };
        let a = fit_weights(&data, Combine::MeanProb);
        let b = fit_weights(&data, Combine::MeanProb);
        assert_eq!(a, b);
        assert_eq!(
            fit_bias(&data, &a, Combine::MeanProb),
            fit_bias(&data, &b, Combine::MeanProb)
        );
    }
}
