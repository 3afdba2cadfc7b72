//! Multinomial (softmax) logistic regression over sparse rows.
//!
//! Training minimises the L2-regularised, optionally class-weighted mean cross-entropy with
//! full-batch L-BFGS. The objective is smooth and strictly convex, so L-BFGS reaches the
//! optimum in a few dozen to a few hundred passes, with no learning rate to tune, and the
//! result is deterministic: rows are split into a fixed number of chunks whose partial
//! gradients are summed in order, whatever the number of threads.

use std::collections::VecDeque;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::{map_ranges, resolve_threads, split_range, SparseRow};

/// How training samples are weighted by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Weight `n_samples / (n_classes_present * count_c)`, so every class counts equally.
    #[default]
    Balanced,
    /// Every sample weighs the same.
    None,
}

/// Settings of the L-BFGS solver.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverOptions {
    /// L2 penalty `l2 / 2 * ||params||^2` added to the mean loss (bias included).
    pub l2: f64,
    /// Maximum number of L-BFGS iterations.
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub tol: f64,
    /// Per-class sample weighting.
    pub class_weight: ClassWeight,
    /// Worker threads (0 = every core); never changes the result.
    pub threads: usize,
}

impl Default for SolverOptions {
    fn default() -> Self {
        Self {
            l2: 1e-3,
            max_iter: 300,
            tol: 1e-5,
            class_weight: ClassWeight::Balanced,
            threads: 0,
        }
    }
}

/// What the solver reached.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverReport {
    /// Final value of the regularised objective.
    pub loss: f64,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether a stopping tolerance was met before `max_iter`.
    pub converged: bool,
}

/// Why a model could not be trained.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LinearError {
    /// No training rows were given.
    #[error("the training set is empty")]
    EmptyTrainingSet,
    /// Rows and labels differ in number.
    #[error("{rows} rows but {labels} labels")]
    LengthMismatch {
        /// Number of rows.
        rows: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A label is not below the number of classes.
    #[error("label {label} of sample {index} is out of range for {n_classes} classes")]
    LabelOutOfRange {
        /// Position of the sample.
        index: usize,
        /// The offending label.
        label: usize,
        /// Number of classes.
        n_classes: usize,
    },
    /// A row refers to a column past `n_features`.
    #[error("row {index} has column {column}, but there are only {n_features} features")]
    ColumnOutOfRange {
        /// Position of the row.
        index: usize,
        /// The offending column.
        column: u32,
        /// Number of features.
        n_features: usize,
    },
    /// A setting is out of its domain.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// The serialised form of a [`LogisticRegression`]; checked when loaded.
#[derive(Serialize, Deserialize)]
struct ModelState {
    n_features: usize,
    n_classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
}

/// A trained softmax classifier: `p = softmax(W^T x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelState", into = "ModelState")]
pub struct LogisticRegression {
    n_features: usize,
    n_classes: usize,
    /// Row-major `n_features x n_classes`, so a column's class weights are contiguous.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl From<LogisticRegression> for ModelState {
    fn from(m: LogisticRegression) -> Self {
        Self {
            n_features: m.n_features,
            n_classes: m.n_classes,
            weights: m.weights,
            bias: m.bias,
        }
    }
}

impl TryFrom<ModelState> for LogisticRegression {
    type Error = String;

    fn try_from(s: ModelState) -> Result<Self, String> {
        if s.n_classes == 0 {
            return Err("classifier has no classes".into());
        }
        if Some(s.weights.len()) != s.n_features.checked_mul(s.n_classes)
            || s.bias.len() != s.n_classes
        {
            return Err("classifier weights do not match its shape".into());
        }
        if !s.weights.iter().chain(&s.bias).all(|w| w.is_finite()) {
            return Err("classifier weights are not all finite".into());
        }
        Ok(Self {
            n_features: s.n_features,
            n_classes: s.n_classes,
            weights: s.weights,
            bias: s.bias,
        })
    }
}

impl LogisticRegression {
    /// Trains on `rows` (columns below `n_features`) with `labels` below `n_classes`.
    pub fn fit(
        rows: &[SparseRow],
        labels: &[usize],
        n_features: usize,
        n_classes: usize,
        opts: &SolverOptions,
    ) -> Result<(Self, SolverReport), LinearError> {
        validate(rows, labels, n_features, n_classes, opts)?;
        let problem = Problem::new(rows, labels, n_features, n_classes, opts);
        let (params, report) = lbfgs(&problem, opts.max_iter, opts.tol);
        let split = n_features * n_classes;
        let model = Self {
            n_features,
            n_classes,
            weights: params[..split].iter().map(|&w| w as f32).collect(),
            bias: params[split..].iter().map(|&w| w as f32).collect(),
        };
        Ok((model, report))
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Number of input columns.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Class probabilities for one row (columns past `n_features` are ignored); they sum to 1.
    pub fn predict_proba(&self, row: &SparseRow) -> Vec<f32> {
        let mut z: Vec<f64> = self.bias.iter().map(|&b| f64::from(b)).collect();
        let k = self.n_classes;
        for (column, value) in row.iter() {
            let start = column as usize * k;
            if let Some(w) = self.weights.get(start..start + k) {
                z.iter_mut()
                    .zip(w)
                    .for_each(|(z, &w)| *z += f64::from(value) * f64::from(w));
            }
        }
        softmax_in_place(&mut z);
        z.into_iter().map(|p| p as f32).collect()
    }
}

fn validate(
    rows: &[SparseRow],
    labels: &[usize],
    n_features: usize,
    n_classes: usize,
    opts: &SolverOptions,
) -> Result<(), LinearError> {
    if rows.is_empty() {
        return Err(LinearError::EmptyTrainingSet);
    }
    if rows.len() != labels.len() {
        return Err(LinearError::LengthMismatch {
            rows: rows.len(),
            labels: labels.len(),
        });
    }
    if n_classes == 0 {
        return Err(LinearError::InvalidOption(
            "n_classes must be at least 1".into(),
        ));
    }
    if !(opts.l2.is_finite() && opts.l2 >= 0.0) {
        return Err(LinearError::InvalidOption(format!(
            "l2 must be finite and >= 0, got {}",
            opts.l2
        )));
    }
    if !(opts.tol.is_finite() && opts.tol >= 0.0) {
        return Err(LinearError::InvalidOption(format!(
            "tol must be finite and >= 0, got {}",
            opts.tol
        )));
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= n_classes) {
        return Err(LinearError::LabelOutOfRange {
            index,
            label,
            n_classes,
        });
    }
    for (index, row) in rows.iter().enumerate() {
        if let Some(&column) = row.indices.iter().find(|&&c| c as usize >= n_features) {
            return Err(LinearError::ColumnOutOfRange {
                index,
                column,
                n_features,
            });
        }
    }
    Ok(())
}

/// Replaces scores by their softmax, shifted by the maximum so `exp` cannot overflow.
fn softmax_in_place(z: &mut [f64]) {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    z.iter_mut().for_each(|v| *v = (*v - max).exp());
    let sum: f64 = z.iter().sum();
    z.iter_mut().for_each(|v| *v /= sum);
}

/// Per-sample weights for the mean loss, summing to 1.
fn sample_weights(labels: &[usize], n_classes: usize, class_weight: ClassWeight) -> Vec<f64> {
    let n = labels.len() as f64;
    match class_weight {
        ClassWeight::None => vec![1.0 / n; labels.len()],
        ClassWeight::Balanced => {
            let mut counts = vec![0usize; n_classes];
            labels.iter().for_each(|&l| counts[l] += 1);
            let present = counts.iter().filter(|&&c| c > 0).count() as f64;
            labels
                .iter()
                .map(|&l| 1.0 / (present * counts[l] as f64))
                .collect()
        }
    }
}

/// Fixed row-chunk count: the loss's summation order, hence the result, never depends on the
/// number of threads.
const N_CHUNKS: usize = 8;

/// The training data by column (compressed sparse columns), for the gradient pass.
struct Columns {
    starts: Vec<usize>,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl Columns {
    /// Transposes the rows (all columns are below `n_features`, rows fit in `u32`).
    fn new(rows: &[SparseRow], n_features: usize) -> Self {
        let mut starts = vec![0usize; n_features + 1];
        for row in rows {
            row.indices
                .iter()
                .for_each(|&c| starts[c as usize + 1] += 1);
        }
        for c in 0..n_features {
            starts[c + 1] += starts[c];
        }
        let nnz = starts[n_features];
        let (mut row_ids, mut values) = (vec![0u32; nnz], vec![0f32; nnz]);
        let mut cursor = starts[..n_features].to_vec();
        for (i, row) in rows.iter().enumerate() {
            for (c, v) in row.iter() {
                let at = &mut cursor[c as usize];
                row_ids[*at] = i as u32;
                values[*at] = v;
                *at += 1;
            }
        }
        Self {
            starts,
            rows: row_ids,
            values,
        }
    }
}

/// The training objective. Params are the weights (row-major) followed by the biases.
///
/// Each evaluation makes two passes, both split across threads without shared writes: over
/// rows to get the loss and the residuals `dLoss/dscores`, then over columns to turn the
/// residuals into the weight gradient.
struct Problem<'a> {
    rows: &'a [SparseRow],
    columns: Columns,
    labels: &'a [usize],
    weights: Vec<f64>,
    n_features: usize,
    n_classes: usize,
    dim: usize,
    l2: f64,
    row_chunks: Vec<Range<usize>>,
    column_chunks: Vec<Range<usize>>,
    threads: usize,
}

impl<'a> Problem<'a> {
    fn new(
        rows: &'a [SparseRow],
        labels: &'a [usize],
        n_features: usize,
        n_classes: usize,
        opts: &SolverOptions,
    ) -> Self {
        let threads = resolve_threads(opts.threads);
        Self {
            rows,
            columns: Columns::new(rows, n_features),
            labels,
            weights: sample_weights(labels, n_classes, opts.class_weight),
            n_features,
            n_classes,
            dim: (n_features + 1) * n_classes,
            l2: opts.l2,
            row_chunks: split_range(rows.len(), N_CHUNKS),
            column_chunks: split_range(n_features, threads * 4),
            threads,
        }
    }

    /// Returns the objective at `params` and writes its gradient into `grad`.
    fn eval(&self, params: &[f64], grad: &mut [f64]) -> f64 {
        let k = self.n_classes;
        let parts = map_ranges(&self.row_chunks, self.threads, |range| {
            self.residuals(params, range)
        });
        let mut loss = 0.0;
        let mut residuals = Vec::with_capacity(self.rows.len() * k);
        for (part_loss, part) in parts {
            loss += part_loss;
            residuals.extend_from_slice(&part);
        }
        let weight_grads = map_ranges(&self.column_chunks, self.threads, |columns| {
            self.weight_gradient(params, &residuals, columns)
        });
        let (weight_grad, bias_grad) = grad.split_at_mut(self.n_features * k);
        let mut at = 0;
        for part in weight_grads {
            weight_grad[at..at + part.len()].copy_from_slice(&part);
            at += part.len();
        }
        bias_grad.fill(0.0);
        for r in residuals.chunks_exact(k) {
            bias_grad.iter_mut().zip(r).for_each(|(g, r)| *g += r);
        }
        let bias = &params[self.n_features * k..];
        bias_grad
            .iter_mut()
            .zip(bias)
            .for_each(|(g, b)| *g += self.l2 * b);
        loss + 0.5 * self.l2 * dot(params, params)
    }

    /// Weighted cross-entropy over a range of rows, and each row's `dLoss/dscores`.
    fn residuals(&self, params: &[f64], range: Range<usize>) -> (f64, Vec<f64>) {
        let k = self.n_classes;
        let bias = &params[self.n_features * k..];
        let mut out = Vec::with_capacity(range.len() * k);
        let mut loss = 0.0;
        for i in range {
            let mut z = bias.to_vec();
            gather_add(&mut z, &self.rows[i].indices, &self.rows[i].values, params);
            let (label, weight) = (self.labels[i], self.weights[i]);
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_norm = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            loss += weight * (log_norm - z[label]);
            // dLoss/dz = weight * (softmax - onehot).
            let hot = |c: usize| f64::from(u8::from(c == label));
            out.extend(
                z.iter()
                    .enumerate()
                    .map(|(c, v)| weight * ((v - log_norm).exp() - hot(c))),
            );
        }
        (loss, out)
    }

    /// Gradient of the penalised loss for the weights of a range of columns.
    fn weight_gradient(
        &self,
        params: &[f64],
        residuals: &[f64],
        columns: Range<usize>,
    ) -> Vec<f64> {
        let k = self.n_classes;
        let mut out = params[columns.start * k..columns.end * k].to_vec();
        out.iter_mut().for_each(|g| *g *= self.l2);
        for (column, g) in columns.zip(out.chunks_exact_mut(k)) {
            let entries = self.columns.starts[column]..self.columns.starts[column + 1];
            gather_add(
                g,
                &self.columns.rows[entries.clone()],
                &self.columns.values[entries],
                residuals,
            );
        }
        out
    }
}

/// `acc[c] += sum_j values[j] * table[indices[j] * k + c]` for every `c < k = acc.len()`:
/// the sparse product at the heart of both passes over the data.
fn gather_add(acc: &mut [f64], indices: &[u32], values: &[f32], table: &[f64]) {
    // A known class count lets the sums live in registers.
    match acc.len() {
        1 => gather_add_fixed::<1>(acc, indices, values, table),
        2 => gather_add_fixed::<2>(acc, indices, values, table),
        3 => gather_add_fixed::<3>(acc, indices, values, table),
        4 => gather_add_fixed::<4>(acc, indices, values, table),
        5 => gather_add_fixed::<5>(acc, indices, values, table),
        6 => gather_add_fixed::<6>(acc, indices, values, table),
        7 => gather_add_fixed::<7>(acc, indices, values, table),
        8 => gather_add_fixed::<8>(acc, indices, values, table),
        k => {
            for (&i, &v) in indices.iter().zip(values) {
                let row = &table[i as usize * k..][..k];
                acc.iter_mut()
                    .zip(row)
                    .for_each(|(a, t)| *a += f64::from(v) * t);
            }
        }
    }
}

fn gather_add_fixed<const K: usize>(
    acc: &mut [f64],
    indices: &[u32],
    values: &[f32],
    table: &[f64],
) {
    // Two interleaved sets of sums halve the floating-point dependency chains.
    let (mut even, mut odd) = ([0.0; K], [0.0; K]);
    let (index_pairs, value_pairs) = (indices.chunks_exact(2), values.chunks_exact(2));
    if let (Some(&i), Some(&v)) = (
        index_pairs.remainder().first(),
        value_pairs.remainder().first(),
    ) {
        add_scaled_row(&mut odd, table, i, v);
    }
    for (i, v) in index_pairs.zip(value_pairs) {
        add_scaled_row(&mut even, table, i[0], v[0]);
        add_scaled_row(&mut odd, table, i[1], v[1]);
    }
    for c in 0..K {
        acc[c] += even[c] + odd[c];
    }
}

#[inline(always)]
fn add_scaled_row<const K: usize>(sums: &mut [f64; K], table: &[f64], index: u32, value: f32) {
    let start = index as usize * K;
    let row = &table[start..start + K];
    for c in 0..K {
        sums[c] += f64::from(value) * row[c];
    }
}

/// Dot product with eight independent partial sums, so it vectorises (and stays
/// deterministic: the summation order is fixed).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut sums = [0.0; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f64>() + tail
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// One stored curvature pair of L-BFGS.
struct Correction {
    s: Vec<f64>,
    y: Vec<f64>,
    rho: f64,
}

impl Correction {
    fn new(dim: usize) -> Self {
        Self {
            s: vec![0.0; dim],
            y: vec![0.0; dim],
            rho: 0.0,
        }
    }
}

const HISTORY: usize = 10;
const ARMIJO_C1: f64 = 1e-4;
const MAX_BACKTRACKS: usize = 40;
/// Relative objective decrease below which progress has stalled.
const FTOL: f64 = 1e-10;

/// Two-loop recursion: returns `-H g` for the inverse-Hessian estimate `H`.
fn descent_direction(g: &[f64], history: &VecDeque<Correction>) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(history.len());
    for c in history.iter().rev() {
        let a = c.rho * dot(&c.s, &q);
        q.iter_mut().zip(&c.y).for_each(|(q, y)| *q -= a * y);
        alphas.push(a);
    }
    if let Some(last) = history.back() {
        let gamma = 1.0 / (last.rho * dot(&last.y, &last.y));
        q.iter_mut().for_each(|q| *q *= gamma);
    }
    for (c, a) in history.iter().zip(alphas.iter().rev()) {
        let b = c.rho * dot(&c.y, &q);
        q.iter_mut().zip(&c.s).for_each(|(q, s)| *q += (a - b) * s);
    }
    q.iter_mut().for_each(|q| *q = -*q);
    q
}

/// Minimises the problem from zero with L-BFGS and a backtracking (Armijo) line search.
fn lbfgs(problem: &Problem<'_>, max_iter: usize, tol: f64) -> (Vec<f64>, SolverReport) {
    let mut x = vec![0.0; problem.dim];
    let mut g = vec![0.0; problem.dim];
    let mut f = problem.eval(&x, &mut g);
    let mut history: VecDeque<Correction> = VecDeque::with_capacity(HISTORY);
    let (mut x_new, mut g_new) = (vec![0.0; problem.dim], vec![0.0; problem.dim]);
    let mut report = SolverReport {
        loss: f,
        iterations: 0,
        converged: false,
    };
    while report.iterations < max_iter {
        if max_abs(&g) <= tol {
            report.converged = true;
            break;
        }
        let mut d = descent_direction(&g, &history);
        if dot(&g, &d) >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            d = g.iter().map(|v| -v).collect();
        }
        // Without curvature information, start with a unit-length step.
        let step = if history.is_empty() {
            1.0 / dot(&g, &g).sqrt()
        } else {
            1.0
        };
        let Some(f_new) = line_search(problem, (&x, f, &g), &d, step, (&mut x_new, &mut g_new))
        else {
            break; // no decrease possible at this precision: keep the best point
        };
        report.iterations += 1;
        remember(&mut history, &x, &x_new, &g, &g_new);
        let decrease = (f - f_new) / f.abs().max(f_new.abs()).max(1.0);
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        if decrease <= FTOL {
            report.converged = true;
            break;
        }
    }
    report.loss = f;
    (x, report)
}

/// Halves the step along `d` from `x` until the Armijo condition holds, leaving the new point
/// and its gradient in `x_new` and `g_new`; returns its objective, or `None` if none decreased.
fn line_search(
    problem: &Problem<'_>,
    (x, f, g): (&[f64], f64, &[f64]),
    d: &[f64],
    mut step: f64,
    (x_new, g_new): (&mut [f64], &mut [f64]),
) -> Option<f64> {
    let slope = dot(g, d);
    let mut f_new = f64::INFINITY;
    for _ in 0..MAX_BACKTRACKS {
        x_new
            .iter_mut()
            .zip(x)
            .zip(d)
            .for_each(|((n, x), d)| *n = x + step * d);
        f_new = problem.eval(x_new, g_new);
        if f_new <= f + ARMIJO_C1 * step * slope {
            break;
        }
        step *= 0.5;
    }
    // A point that decreased without meeting Armijo after all halvings is still progress.
    (f_new <= f).then_some(f_new)
}

/// Stores the step and gradient change if they carry positive curvature, recycling the
/// oldest pair's buffers once the history is full.
fn remember(
    history: &mut VecDeque<Correction>,
    x: &[f64],
    x_new: &[f64],
    g: &[f64],
    g_new: &[f64],
) {
    let mut c = match history.len() {
        HISTORY => history
            .pop_front()
            .unwrap_or_else(|| Correction::new(x.len())),
        _ => Correction::new(x.len()),
    };
    c.s.iter_mut()
        .zip(x_new.iter().zip(x))
        .for_each(|(s, (a, b))| *s = a - b);
    c.y.iter_mut()
        .zip(g_new.iter().zip(g))
        .for_each(|(y, (a, b))| *y = a - b);
    let sy = dot(&c.s, &c.y);
    if sy > 1e-12 * dot(&c.y, &c.y) {
        c.rho = 1.0 / sy;
        history.push_back(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(u32, f32)]) -> SparseRow {
        SparseRow {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        }
    }

    /// Class = the one active feature among 0..3, plus a shared noise feature 3.
    fn toy() -> (Vec<SparseRow>, Vec<usize>) {
        let rows = (0..30)
            .map(|i| row(&[((i % 3) as u32, 1.0), (3, 0.5)]))
            .collect();
        let labels = (0..30).map(|i| i % 3).collect();
        (rows, labels)
    }

    #[test]
    fn learns_a_separable_problem() {
        let (rows, labels) = toy();
        let (model, report) =
            LogisticRegression::fit(&rows, &labels, 4, 3, &SolverOptions::default()).expect("fit");
        assert!(report.iterations > 0);
        for (r, &y) in rows.iter().zip(&labels) {
            let p = model.predict_proba(r);
            assert_eq!(p.len(), 3);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(p[y] > 0.9, "{p:?}");
        }
    }

    #[test]
    fn result_does_not_depend_on_threads() {
        let (rows, labels) = toy();
        let fit = |threads| {
            let opts = SolverOptions {
                threads,
                ..Default::default()
            };
            LogisticRegression::fit(&rows, &labels, 4, 3, &opts)
                .expect("fit")
                .0
        };
        assert_eq!(fit(1), fit(3));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (rows, labels) = toy();
        let opts = SolverOptions {
            l2: 0.1,
            class_weight: ClassWeight::None,
            ..Default::default()
        };
        let problem = Problem::new(&rows, &labels[..30], 4, 3, &opts);
        let x: Vec<f64> = (0..problem.dim)
            .map(|i| ((i * 7 % 5) as f64 - 2.0) * 0.1)
            .collect();
        let mut g = vec![0.0; problem.dim];
        problem.eval(&x, &mut g);
        let mut scratch = vec![0.0; problem.dim];
        for i in 0..problem.dim {
            let (mut lo, mut hi) = (x.clone(), x.clone());
            lo[i] -= 1e-5;
            hi[i] += 1e-5;
            let numeric =
                (problem.eval(&hi, &mut scratch) - problem.eval(&lo, &mut scratch)) / 2e-5;
            assert!(
                (numeric - g[i]).abs() < 1e-6,
                "param {i}: {numeric} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn balanced_weights_equalise_classes() {
        let w = sample_weights(&[0, 0, 0, 1], 3, ClassWeight::Balanced);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[0] * 3.0 - w[3]).abs() < 1e-12);
    }

    #[test]
    fn softmax_is_stable_for_huge_scores() {
        let mut z = vec![1000.0, 1000.0, -1000.0];
        softmax_in_place(&mut z);
        assert!((z[0] - 0.5).abs() < 1e-12 && z[2] == 0.0);
    }

    #[test]
    fn rejects_bad_input() {
        let (rows, labels) = toy();
        let opts = SolverOptions::default();
        assert_eq!(
            LogisticRegression::fit(&[], &[], 4, 3, &opts).err(),
            Some(LinearError::EmptyTrainingSet)
        );
        assert!(matches!(
            LogisticRegression::fit(&rows, &labels, 4, 2, &opts),
            Err(LinearError::LabelOutOfRange { label: 2, .. })
        ));
        assert!(matches!(
            LogisticRegression::fit(&rows, &labels, 3, 3, &opts),
            Err(LinearError::ColumnOutOfRange { column: 3, .. })
        ));
        let bad = SolverOptions {
            l2: f64::NAN,
            ..Default::default()
        };
        assert!(matches!(
            LogisticRegression::fit(&rows, &labels, 4, 3, &bad),
            Err(LinearError::InvalidOption(_))
        ));
    }
}
