//! [`ClassicModel`]: a TF-IDF vectorizer and a softmax regression trained together, with
//! training options and crash-safe persistence.
//!
//! File format: 8-byte magic, format version (u32 LE), FNV-1a checksum of the payload
//! (u64 LE), then the payload encoded with `postcard`. Version 2 added the answer marker and
//! the per-block weights (question, prompt, answer) to the vectorizer; version 3 the relevance
//! features. Version 2 files still load (as models without relevance features); version 1
//! files are rejected with a request to retrain.

mod format;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::{
    map_ranges, resolve_threads, split_range, BlockWeights, RelevanceFeatures, SparseRow,
    TfidfVectorizer, VectorizerConfig, N_RELEVANCE,
};
use crate::linear::{ClassWeight, LinearError, LogisticRegression, SolverOptions};

/// Training settings; every field has a default, and unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Word n-gram lengths `[min, max]`; `[0, 0]` disables word n-grams.
    pub word_ngrams: [usize; 2],
    /// Character n-gram lengths `[min, max]` within space-padded words; `[0, 0]` disables them.
    pub char_ngrams: [usize; 2],
    /// Minimum number of training pairs an n-gram must occur in.
    pub min_df: usize,
    /// Maximum vocabulary size, keeping the n-grams found in the most pairs.
    pub max_features: usize,
    /// Use `1 + ln(tf)` term frequencies.
    pub sublinear_tf: bool,
    /// Where the answer starts in a context: the text before the first occurrence is the
    /// interviewer's prompt, the rest the answer. `""` (or a context without it) makes the
    /// whole context the answer.
    pub answer_marker: String,
    /// Relative weights `{question, prompt, answer}` of the three text blocks; 0 drops a block.
    pub block_weights: BlockWeights,
    /// Weight of the question-answer relevance features (overlap, best-matching sentence,
    /// lengths; see `features/relevance.rs`), each standardised, against the unit-norm n-gram
    /// row; 0 leaves them out. They read the question, prompt and answer whatever
    /// `block_weights` says. The default, 0.2, was measured on QEvasion: +0.027 macro-F1.
    pub relevance_weight: f32,
    /// Inverse regularisation strength, as in scikit-learn: the objective is
    /// `c * sum_i(w_i * loss_i) + ||params||^2 / 2` (biases included, class weights `w_i`
    /// summing to the number of pairs), so larger values fit the training data more closely.
    /// The default, 10, was measured on the sample data (360 pairs) and QEvasion (3,100).
    pub c: f64,
    /// Maximum L-BFGS iterations.
    pub max_iter: usize,
    /// Stop once the largest gradient component is below this.
    pub tol: f64,
    /// `"balanced"` (default) or `"none"`.
    pub class_weight: ClassWeight,
    /// Reserved for randomised training steps. The solver (full-batch L-BFGS from zero) is
    /// deterministic, so today the fitted model does not depend on it.
    pub seed: u64,
    /// Worker threads for fitting (0 = every core); never changes the fitted model.
    pub threads: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        let vectorizer = VectorizerConfig::default();
        let solver = SolverOptions::default();
        Self {
            word_ngrams: vectorizer.word_ngrams,
            char_ngrams: vectorizer.char_ngrams,
            min_df: vectorizer.min_df,
            max_features: vectorizer.max_features,
            sublinear_tf: vectorizer.sublinear_tf,
            answer_marker: vectorizer.answer_marker,
            block_weights: vectorizer.block_weights,
            relevance_weight: 0.2,
            c: 10.0,
            max_iter: solver.max_iter,
            tol: solver.tol,
            class_weight: solver.class_weight,
            seed: 0,
            threads: 0,
        }
    }
}

impl TrainOptions {
    /// Checks every setting, describing the first problem found.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.vectorizer_config()
            .validate()
            .map_err(ModelError::InvalidOptions)?;
        crate::features::check_relevance_weight(self.relevance_weight)
            .map_err(ModelError::InvalidOptions)?;
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(ModelError::InvalidOptions(format!(
                "c must be finite and > 0, got {}",
                self.c
            )));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(ModelError::InvalidOptions(format!(
                "tol must be finite and >= 0, got {}",
                self.tol
            )));
        }
        Ok(())
    }

    /// The vectorizer part of these options.
    pub fn vectorizer_config(&self) -> VectorizerConfig {
        VectorizerConfig {
            word_ngrams: self.word_ngrams,
            char_ngrams: self.char_ngrams,
            min_df: self.min_df,
            max_features: self.max_features,
            sublinear_tf: self.sublinear_tf,
            answer_marker: self.answer_marker.clone(),
            block_weights: self.block_weights,
        }
    }

    /// The solver part of these options, for a training set of `n_samples` pairs.
    pub fn solver_options(&self, n_samples: usize) -> SolverOptions {
        SolverOptions {
            // The solver minimises the mean loss: divide the scikit-learn objective by c * n.
            l2: 1.0 / (self.c * n_samples.max(1) as f64),
            max_iter: self.max_iter,
            tol: self.tol,
            class_weight: self.class_weight,
            threads: self.threads,
        }
    }
}

/// Summary of a training run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitStats {
    /// Final regularised training loss (class-weighted mean cross-entropy plus penalty).
    pub loss: f64,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the solver met its tolerance before `max_iter`.
    pub converged: bool,
    /// Number of features kept by the vectorizer.
    pub vocab_size: usize,
    /// Number of relevance features appended after the n-grams (0 when they are off).
    pub relevance_features: usize,
    /// Wall-clock time of the whole fit, in seconds.
    pub seconds: f64,
}

/// Why training, saving or loading failed.
#[derive(Debug, Error)]
pub enum ModelError {
    /// No training pairs were given.
    #[error("the training set is empty")]
    EmptyTrainingSet,
    /// Pairs and labels differ in number.
    #[error("{pairs} training pairs but {labels} labels")]
    LengthMismatch {
        /// Number of pairs.
        pairs: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A label index is not below `n_labels`.
    #[error("label {label} of training pair {index} is out of range for {n_labels} labels")]
    LabelOutOfRange {
        /// Position of the pair.
        index: usize,
        /// The offending label index.
        label: usize,
        /// Number of labels.
        n_labels: usize,
    },
    /// A training option is out of its domain.
    #[error("invalid training options: {0}")]
    InvalidOptions(String),
    /// The solver rejected its input.
    #[error("training failed: {0}")]
    Training(#[from] LinearError),
    /// Reading or writing a model file failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The model could not be encoded.
    #[error("cannot encode the model: {0}")]
    Encode(String),
    /// The bytes are not a valid model of this format.
    #[error("corrupt model file: {0}")]
    Corrupt(String),
}

/// Batches at least this long are featurised on every core.
const PARALLEL_BATCH: usize = 64;

/// The serialised form of a [`ClassicModel`] (format version 3); checked when loaded.
#[derive(Serialize, Deserialize)]
struct ModelState {
    vectorizer: TfidfVectorizer,
    relevance: Option<RelevanceFeatures>,
    classifier: LogisticRegression,
}

/// Format version 2: the same without relevance features.
#[derive(Serialize, Deserialize)]
pub(super) struct ModelStateV2 {
    vectorizer: TfidfVectorizer,
    classifier: LogisticRegression,
}

/// A trained (question, context) classifier: TF-IDF features, optional relevance features
/// appended after them, and multinomial logistic regression.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ModelState", into = "ModelState")]
pub struct ClassicModel {
    vectorizer: TfidfVectorizer,
    relevance: Option<RelevanceFeatures>,
    classifier: LogisticRegression,
}

impl From<ClassicModel> for ModelState {
    fn from(m: ClassicModel) -> Self {
        Self {
            vectorizer: m.vectorizer,
            relevance: m.relevance,
            classifier: m.classifier,
        }
    }
}

impl TryFrom<ModelState> for ClassicModel {
    type Error = String;

    fn try_from(s: ModelState) -> Result<Self, String> {
        let n_relevance = if s.relevance.is_some() {
            N_RELEVANCE
        } else {
            0
        };
        if s.classifier.n_features() != s.vectorizer.vocab_size() + n_relevance {
            return Err("classifier and vectorizer disagree on the number of features".into());
        }
        Ok(Self {
            vectorizer: s.vectorizer,
            relevance: s.relevance,
            classifier: s.classifier,
        })
    }
}

impl TryFrom<ModelStateV2> for ClassicModel {
    type Error = String;

    fn try_from(s: ModelStateV2) -> Result<Self, String> {
        ModelState {
            vectorizer: s.vectorizer,
            relevance: None,
            classifier: s.classifier,
        }
        .try_into()
    }
}

impl ClassicModel {
    /// Trains on `(question, context)` pairs with label indices below `n_labels`.
    pub fn fit(
        pairs: &[(String, String)],
        labels: &[usize],
        n_labels: usize,
        opts: &TrainOptions,
    ) -> Result<(ClassicModel, FitStats), ModelError> {
        let started = Instant::now();
        opts.validate()?;
        check_training_set(pairs.len(), labels, n_labels)?;
        let vectorizer = TfidfVectorizer::fit(&opts.vectorizer_config(), pairs, opts.threads)
            .map_err(ModelError::InvalidOptions)?;
        let relevance = (opts.relevance_weight > 0.0)
            .then(|| RelevanceFeatures::fit(pairs, &opts.answer_marker, opts.relevance_weight))
            .transpose()
            .map_err(ModelError::InvalidOptions)?;
        let rows = feature_rows(&vectorizer, relevance.as_ref(), pairs, opts.threads);
        let n_relevance = relevance.as_ref().map_or(0, |_| N_RELEVANCE);
        let (classifier, report) = LogisticRegression::fit(
            &rows,
            labels,
            vectorizer.vocab_size() + n_relevance,
            n_labels,
            &opts.solver_options(pairs.len()),
        )?;
        let stats = FitStats {
            loss: report.loss,
            iterations: report.iterations,
            converged: report.converged,
            vocab_size: vectorizer.vocab_size(),
            relevance_features: n_relevance,
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((
            Self {
                vectorizer,
                relevance,
                classifier,
            },
            stats,
        ))
    }

    /// Number of labels (the length of every probability vector).
    pub fn n_labels(&self) -> usize {
        self.classifier.n_classes()
    }

    /// Number of features kept by the vectorizer.
    pub fn vocab_size(&self) -> usize {
        self.vectorizer.vocab_size()
    }

    /// The vectorizer settings the model was trained with.
    pub fn vectorizer_config(&self) -> &VectorizerConfig {
        self.vectorizer.config()
    }

    /// The relevance features, when the model was trained with them.
    pub fn relevance(&self) -> Option<&RelevanceFeatures> {
        self.relevance.as_ref()
    }

    /// The feature row of one pair as the classifier sees it: TF-IDF n-grams, then the
    /// relevance features (if any).
    pub fn features(&self, question: &str, context: &str) -> SparseRow {
        let mut row = self.vectorizer.transform(question, context);
        append_relevance(
            &mut row,
            &self.vectorizer,
            self.relevance.as_ref(),
            question,
            context,
        );
        row
    }

    /// Probability of each label for one pair; `n_labels()` values summing to 1.
    pub fn predict_proba(&self, question: &str, context: &str) -> Vec<f32> {
        self.classifier
            .predict_proba(&self.features(question, context))
    }

    /// [`Self::predict_proba`] for many pairs, in order; long batches use every core.
    pub fn predict_proba_batch<Q, C>(&self, pairs: &[(Q, C)]) -> Vec<Vec<f32>>
    where
        Q: AsRef<str> + Sync,
        C: AsRef<str> + Sync,
    {
        let threads = if pairs.len() >= PARALLEL_BATCH { 0 } else { 1 };
        let rows = feature_rows(&self.vectorizer, self.relevance.as_ref(), pairs, threads);
        rows.iter()
            .map(|row| self.classifier.predict_proba(row))
            .collect()
    }
}

/// The feature rows of many pairs, in order, on up to `threads` threads (0 = every core).
fn feature_rows<Q, C>(
    vectorizer: &TfidfVectorizer,
    relevance: Option<&RelevanceFeatures>,
    pairs: &[(Q, C)],
    threads: usize,
) -> Vec<SparseRow>
where
    Q: AsRef<str> + Sync,
    C: AsRef<str> + Sync,
{
    let mut rows = vectorizer.transform_batch(pairs, threads);
    if let Some(relevance) = relevance {
        let threads = resolve_threads(threads);
        let ranges = split_range(pairs.len(), threads * 4);
        let dense = map_ranges(&ranges, threads, |range| {
            pairs[range]
                .iter()
                .map(|(q, c)| relevance.transform(q.as_ref(), c.as_ref()))
                .collect::<Vec<_>>()
        });
        for (row, values) in rows.iter_mut().zip(dense.into_iter().flatten()) {
            push_dense(row, vectorizer.vocab_size(), &values);
        }
    }
    rows
}

/// Appends the relevance features of one pair to its n-gram row.
fn append_relevance(
    row: &mut SparseRow,
    vectorizer: &TfidfVectorizer,
    relevance: Option<&RelevanceFeatures>,
    question: &str,
    context: &str,
) {
    if let Some(relevance) = relevance {
        push_dense(
            row,
            vectorizer.vocab_size(),
            &relevance.transform(question, context),
        );
    }
}

/// Appends dense values as columns `first..first + values.len()`, after every n-gram column.
fn push_dense(row: &mut SparseRow, first: usize, values: &[f32]) {
    for (i, &value) in values.iter().enumerate() {
        row.indices.push((first + i) as u32);
        row.values.push(value);
    }
}

fn check_training_set(n_pairs: usize, labels: &[usize], n_labels: usize) -> Result<(), ModelError> {
    if n_pairs == 0 {
        return Err(ModelError::EmptyTrainingSet);
    }
    if n_pairs != labels.len() {
        return Err(ModelError::LengthMismatch {
            pairs: n_pairs,
            labels: labels.len(),
        });
    }
    match labels
        .iter()
        .enumerate()
        .find(|(_, &label)| label >= n_labels)
    {
        Some((index, &label)) => Err(ModelError::LabelOutOfRange {
            index,
            label,
            n_labels,
        }),
        None => Ok(()),
    }
}
