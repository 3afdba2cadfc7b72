//! [`ClassicModel`]: a TF-IDF vectorizer and a softmax regression trained together, with
//! training options and crash-safe persistence.
//!
//! File format: 8-byte magic, format version (u32 LE), FNV-1a checksum of the payload
//! (u64 LE), then the payload encoded with `postcard`. Version 2 added the answer marker and
//! the per-block weights (question, prompt, answer) to the vectorizer; version 1 files are
//! rejected with a request to retrain.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::features::{BlockWeights, SparseRow, TfidfVectorizer, VectorizerConfig};
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

const MAGIC: &[u8; 8] = b"CLRTYCLS";
const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
/// Batches at least this long are featurised on every core.
const PARALLEL_BATCH: usize = 64;

/// The serialised form of a [`ClassicModel`]; checked when loaded.
#[derive(Serialize, Deserialize)]
struct ModelState {
    vectorizer: TfidfVectorizer,
    classifier: LogisticRegression,
}

/// A trained (question, context) classifier: TF-IDF features and multinomial logistic regression.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "ModelState", into = "ModelState")]
pub struct ClassicModel {
    vectorizer: TfidfVectorizer,
    classifier: LogisticRegression,
}

impl From<ClassicModel> for ModelState {
    fn from(m: ClassicModel) -> Self {
        Self {
            vectorizer: m.vectorizer,
            classifier: m.classifier,
        }
    }
}

impl TryFrom<ModelState> for ClassicModel {
    type Error = String;

    fn try_from(s: ModelState) -> Result<Self, String> {
        if s.classifier.n_features() != s.vectorizer.vocab_size() {
            return Err("classifier and vectorizer disagree on the number of features".into());
        }
        Ok(Self {
            vectorizer: s.vectorizer,
            classifier: s.classifier,
        })
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
        let rows = vectorizer.transform_batch(pairs, opts.threads);
        let (classifier, report) = LogisticRegression::fit(
            &rows,
            labels,
            vectorizer.vocab_size(),
            n_labels,
            &opts.solver_options(pairs.len()),
        )?;
        let stats = FitStats {
            loss: report.loss,
            iterations: report.iterations,
            converged: report.converged,
            vocab_size: vectorizer.vocab_size(),
            seconds: started.elapsed().as_secs_f64(),
        };
        Ok((
            Self {
                vectorizer,
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

    /// The TF-IDF row of one pair, as the classifier sees it.
    pub fn features(&self, question: &str, context: &str) -> SparseRow {
        self.vectorizer.transform(question, context)
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
        let rows = self.vectorizer.transform_batch(pairs, threads);
        rows.iter()
            .map(|row| self.classifier.predict_proba(row))
            .collect()
    }

    /// Encodes the model in the file format described in the module docs.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let payload = postcard::to_stdvec(self).map_err(|e| ModelError::Encode(e.to_string()))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        Ok(bytes)
    }

    /// Decodes a model written by [`Self::to_bytes`], checking its integrity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let corrupt = |msg: &str| ModelError::Corrupt(msg.to_string());
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a Clarity classic model (bad magic)"));
        }
        let (version, rest) = split_u32(&bytes[MAGIC.len()..]);
        if version != FORMAT_VERSION {
            return Err(ModelError::Corrupt(format!(
                "unsupported format version {version} (this build reads version \
                 {FORMAT_VERSION}): retrain the model"
            )));
        }
        let (checksum, payload) = split_u64(rest);
        if checksum != fnv1a(payload) {
            return Err(corrupt("checksum mismatch (truncated or damaged file)"));
        }
        match postcard::take_from_bytes::<Self>(payload) {
            Ok((model, [])) => Ok(model),
            Ok(_) => Err(corrupt("trailing bytes after the model")),
            Err(e) => Err(ModelError::Corrupt(e.to_string())),
        }
    }

    /// Writes the model to `path` atomically: a temporary file in the same directory is
    /// written, synced and renamed over `path`, so a crash never leaves a partial file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        write_atomically(path, &bytes).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a model written by [`Self::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
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

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".clarity-model-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Splits a little-endian u32 off the front (the caller has checked the length).
fn split_u32(bytes: &[u8]) -> (u32, &[u8]) {
    let (head, rest) = bytes.split_at(4);
    let mut word = [0u8; 4];
    word.copy_from_slice(head);
    (u32::from_le_bytes(word), rest)
}

/// Splits a little-endian u64 off the front (the caller has checked the length).
fn split_u64(bytes: &[u8]) -> (u64, &[u8]) {
    let (head, rest) = bytes.split_at(8);
    let mut word = [0u8; 8];
    word.copy_from_slice(head);
    (u64::from_le_bytes(word), rest)
}

/// 64-bit FNV-1a: enough to catch truncation and bit rot, not an integrity signature.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic generator, so tests need no RNG crate.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const FILLER: &[&str] = &[
        "the",
        "a",
        "we",
        "people",
        "country",
        "said",
        "think",
        "very",
        "important",
        "today",
        "issue",
        "policy",
        "government",
        "time",
        "work",
        "year",
        "going",
        "make",
        "sure",
        "know",
    ];
    const CUES: [&[&str]; 3] = [
        &["absolutely", "yes", "certainly"],
        &["decline", "comment", "unable"],
        &["perhaps", "depends", "partly"],
    ];

    /// Label = which group of cue words the context uses; questions are noise.
    fn synthetic(n: usize, seed: u64) -> (Vec<(String, String)>, Vec<usize>) {
        let mut rng = XorShift(seed);
        let mut pairs = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let label = rng.below(3);
            let mut words: Vec<&str> = (0..40).map(|_| FILLER[rng.below(FILLER.len())]).collect();
            for _ in 0..2 {
                let cue = CUES[label][rng.below(3)];
                let at = rng.below(words.len());
                words.insert(at, cue);
            }
            let question = format!("What about the {}?", FILLER[rng.below(FILLER.len())]);
            pairs.push((question, words.join(" ")));
            labels.push(label);
        }
        (pairs, labels)
    }

    fn small_options() -> TrainOptions {
        TrainOptions {
            threads: 2,
            ..Default::default()
        }
    }

    fn argmax(p: &[f32]) -> usize {
        (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
    }

    #[test]
    fn learns_a_synthetic_task() {
        let (train, train_labels) = synthetic(300, 1);
        let (test, test_labels) = synthetic(150, 2);
        let (model, stats) =
            ClassicModel::fit(&train, &train_labels, 3, &small_options()).expect("fit");
        assert!(stats.vocab_size > 0 && stats.iterations > 0 && stats.loss.is_finite());
        let probs = model.predict_proba_batch(&test);
        let correct = probs
            .iter()
            .zip(&test_labels)
            .filter(|(p, &y)| argmax(p) == y)
            .count();
        let accuracy = correct as f64 / test.len() as f64;
        assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
    }

    #[test]
    fn probabilities_sum_to_one() {
        let (train, labels) = synthetic(60, 3);
        let (model, _) = ClassicModel::fit(&train, &labels, 4, &small_options()).expect("fit");
        for (q, c) in [
            ("", ""),
            ("unseen words only", "zzz qqq"),
            (train[0].0.as_str(), train[0].1.as_str()),
        ] {
            let p = model.predict_proba(q, c);
            assert_eq!(p.len(), 4);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        }
        // Label 3 never occurs in training, so it must stay unlikely.
        assert!(model.predict_proba(&train[0].0, &train[0].1)[3] < 0.1);
    }

    #[test]
    fn batch_matches_single_predictions() {
        let (train, labels) = synthetic(100, 4);
        let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
        let batch = model.predict_proba_batch(&train);
        for ((q, c), p) in train.iter().zip(&batch) {
            assert_eq!(&model.predict_proba(q, c), p);
        }
    }

    #[test]
    fn save_load_round_trip_gives_identical_probabilities() {
        let (train, labels) = synthetic(80, 5);
        let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.bin");
        model.save(&path).expect("save");
        model.save(&path).expect("save over an existing file");
        let loaded = ClassicModel::load(&path).expect("load");
        for (q, c) in train.iter().take(20) {
            assert_eq!(model.predict_proba(q, c), loaded.predict_proba(q, c));
        }
        let leftovers = std::fs::read_dir(dir.path()).expect("read_dir").count();
        assert_eq!(leftovers, 1, "temporary files left behind");
    }

    #[test]
    fn training_is_deterministic() {
        let (train, labels) = synthetic(80, 6);
        let bytes = |threads| {
            let opts = TrainOptions {
                threads,
                ..Default::default()
            };
            ClassicModel::fit(&train, &labels, 3, &opts)
                .expect("fit")
                .0
                .to_bytes()
                .expect("encode")
        };
        assert_eq!(bytes(1), bytes(2));
    }

    #[test]
    fn only_weighted_blocks_of_the_context_count() {
        let (train, labels) = synthetic(120, 8);
        let framed: Vec<(String, String)> = train
            .iter()
            .map(|(q, c)| (q.clone(), format!("Q: {q}\nA: {c}")))
            .collect();
        let opts = TrainOptions {
            block_weights: BlockWeights {
                question: 0.0,
                prompt: 0.0,
                answer: 1.0,
            },
            ..small_options()
        };
        let (model, _) = ClassicModel::fit(&framed, &labels, 3, &opts).expect("fit");
        let answer = &train[0].1;
        let p = model.predict_proba("why?", &format!("Q: the people\nA: {answer}"));
        let q = model.predict_proba("", &format!("Q: very important policy\nA: {answer}"));
        assert_eq!(p, q);
        // Without the marker the whole context is the answer.
        assert_eq!(p, model.predict_proba("", answer));
        assert_eq!(argmax(&p), labels[0]);
        // With the prompt weighted in, the prompt changes the prediction.
        let (model, _) = ClassicModel::fit(&framed, &labels, 3, &small_options()).expect("fit");
        let p = model.predict_proba("", &format!("Q: the people\nA: {answer}"));
        let q = model.predict_proba("", &format!("Q: very important policy\nA: {answer}"));
        assert_ne!(p, q);
    }

    #[test]
    fn damaged_files_are_rejected() {
        let (train, labels) = synthetic(40, 7);
        let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
        let bytes = model.to_bytes().expect("encode");
        let is_corrupt =
            |b: &[u8]| matches!(ClassicModel::from_bytes(b), Err(ModelError::Corrupt(_)));
        assert!(is_corrupt(&bytes[..bytes.len() - 1]));
        assert!(is_corrupt(&bytes[..10]));
        assert!(is_corrupt(b""));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(is_corrupt(&flipped));
        let mut wrong_version = bytes.clone();
        wrong_version[MAGIC.len()] = 99;
        assert!(is_corrupt(&wrong_version));
        let missing = ClassicModel::load("/nonexistent/dir/model.bin");
        assert!(matches!(missing, Err(ModelError::Io { .. })));
    }

    #[test]
    fn invalid_training_input_is_rejected() {
        let opts = TrainOptions::default();
        let pair = || ("q".to_string(), "c".to_string());
        assert!(matches!(
            ClassicModel::fit(&[], &[], 3, &opts),
            Err(ModelError::EmptyTrainingSet)
        ));
        assert!(matches!(
            ClassicModel::fit(&[pair(), pair()], &[0, 3], 3, &opts),
            Err(ModelError::LabelOutOfRange {
                index: 1,
                label: 3,
                n_labels: 3
            })
        ));
        assert!(matches!(
            ClassicModel::fit(&[pair()], &[0, 1], 3, &opts),
            Err(ModelError::LengthMismatch {
                pairs: 1,
                labels: 2
            })
        ));
        let bad = TrainOptions {
            word_ngrams: [3, 1],
            ..Default::default()
        };
        assert!(matches!(
            ClassicModel::fit(&[pair()], &[0], 3, &bad),
            Err(ModelError::InvalidOptions(_))
        ));
        let bad = TrainOptions {
            c: 0.0,
            ..Default::default()
        };
        assert!(matches!(
            ClassicModel::fit(&[pair()], &[0], 3, &bad),
            Err(ModelError::InvalidOptions(_))
        ));
    }

    #[test]
    fn options_deserialize_with_defaults_and_reject_unknown_fields() {
        let opts: TrainOptions =
            serde_json::from_str(r#"{"char_ngrams": [0, 0], "class_weight": "none"}"#)
                .expect("parse");
        assert_eq!(opts.char_ngrams, [0, 0]);
        assert_eq!(opts.class_weight, ClassWeight::None);
        assert_eq!(opts.word_ngrams, TrainOptions::default().word_ngrams);
        assert!(serde_json::from_str::<TrainOptions>(r#"{"l3": 1}"#).is_err());
        assert!(serde_json::from_str::<TrainOptions>(r#"{"class_weight": "auto"}"#).is_err());
        let opts: TrainOptions =
            serde_json::from_str(r#"{"answer_marker": "", "block_weights": {"prompt": 0}}"#)
                .expect("parse");
        assert_eq!(opts.answer_marker, "");
        let defaults = BlockWeights::default();
        assert_eq!(
            opts.block_weights,
            BlockWeights {
                prompt: 0.0,
                ..defaults
            }
        );
        assert_eq!(TrainOptions::default().answer_marker, "\nA:");
        let typo = r#"{"block_weights": {"promt": 1}}"#;
        assert!(serde_json::from_str::<TrainOptions>(typo).is_err());
        let negative = r#"{"block_weights": {"answer": -1}}"#;
        let opts: TrainOptions = serde_json::from_str(negative).expect("parse");
        assert!(matches!(
            opts.validate(),
            Err(ModelError::InvalidOptions(_))
        ));
    }
}
