//! TF-IDF featurisation of (question, context) pairs.
//!
//! Each pair is turned into word n-grams and `char_wb`-style character n-grams. The context is
//! split at an answer marker (`"\nA:"` by default) into the interviewer's prompt and the
//! answer, so a pair gives three text blocks (question, prompt, answer), each in its own
//! namespace, normalised on its own and scaled by its own weight.
//! N-grams are identified by a stable 64-bit hash (never by an allocated string), which keeps
//! fitting and transforming fast and the saved vocabulary compact. The hash is defined in
//! `tokenize.rs` and must never change, or saved models would silently stop matching.
//!
//! Layout: this file holds the public settings and [`TfidfVectorizer`]; `blocks.rs` the text
//! blocks and their weights, `tokenize.rs` tokenisation, hashing and n-gram extraction,
//! `parallel.rs` the thread helpers, and `tests.rs` the unit tests.

mod blocks;
mod parallel;
mod relevance;
#[cfg(test)]
mod tests;
mod tokenize;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use blocks::{block_of, FIELDS, N_BLOCKS};
pub use blocks::{split_context, BlockWeights};
pub(crate) use parallel::{map_ranges, resolve_threads, split_range};
pub use relevance::{
    check_weight as check_relevance_weight, RelevanceFeatures, N_RELEVANCE, RELEVANCE_FEATURES,
};
use tokenize::Scratch;

/// A sparse feature row: strictly increasing column indices with one value each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRow {
    /// Column indices, strictly increasing.
    pub indices: Vec<u32>,
    /// The value of each column in `indices`.
    pub values: Vec<f32>,
}

impl SparseRow {
    /// Number of stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Euclidean norm of the row.
    pub fn l2_norm(&self) -> f32 {
        self.values.iter().map(|v| v * v).sum::<f32>().sqrt()
    }

    /// Iterates over `(column, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.indices
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}

/// Settings of a [`TfidfVectorizer`].
///
/// N-gram ranges are inclusive `[min, max]`; `[0, 0]` disables that kind of n-gram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorizerConfig {
    /// Word n-gram lengths, e.g. `[1, 2]` for unigrams and bigrams.
    pub word_ngrams: [usize; 2],
    /// Character n-gram lengths inside space-padded words, e.g. `[2, 5]`.
    pub char_ngrams: [usize; 2],
    /// Keep only n-grams seen in at least this many training documents.
    pub min_df: usize,
    /// Keep at most this many n-grams in total, the most frequent (by document count) first.
    pub max_features: usize,
    /// Use `1 + ln(tf)` instead of the raw term count.
    pub sublinear_tf: bool,
    /// The context is split at the first occurrence of this marker: the text before it is the
    /// interviewer's prompt, the text after it the answer. When the marker is empty or absent,
    /// the whole context is the answer.
    pub answer_marker: String,
    /// Weight of each text block in the final row; a zero weight leaves that block out.
    pub block_weights: BlockWeights,
}

impl Default for VectorizerConfig {
    fn default() -> Self {
        Self {
            word_ngrams: [1, 2],
            char_ngrams: [2, 5],
            min_df: 2,
            max_features: 200_000,
            sublinear_tf: true,
            answer_marker: "\nA:".into(),
            block_weights: BlockWeights::default(),
        }
    }
}

impl VectorizerConfig {
    /// Checks the settings, describing the first problem found.
    pub fn validate(&self) -> Result<(), String> {
        check_range("word_ngrams", self.word_ngrams)?;
        check_range("char_ngrams", self.char_ngrams)?;
        if !range_enabled(self.word_ngrams) && !range_enabled(self.char_ngrams) {
            return Err("word_ngrams and char_ngrams cannot both be disabled".into());
        }
        if self.max_features == 0 {
            return Err("max_features must be at least 1".into());
        }
        self.block_weights.validate()?;
        let BlockWeights {
            question, answer, ..
        } = self.block_weights;
        if self.answer_marker.is_empty() && question == 0.0 && answer == 0.0 {
            return Err(
                "with an empty answer_marker there is no prompt block, so block_weights \
                 needs a question or answer weight above 0"
                    .into(),
            );
        }
        Ok(())
    }
}

fn range_enabled(range: [usize; 2]) -> bool {
    range != [0, 0]
}

fn check_range(name: &str, [min, max]: [usize; 2]) -> Result<(), String> {
    if range_enabled([min, max]) && (min == 0 || min > max) {
        return Err(format!(
            "{name} must be [min, max] with 1 <= min <= max, or [0, 0] to disable; got [{min}, {max}]"
        ));
    }
    Ok(())
}

// ---- the vectorizer ----

/// The serialised form of a [`TfidfVectorizer`]; checked when loaded.
#[derive(Serialize, Deserialize)]
struct VectorizerState {
    config: VectorizerConfig,
    keys: Vec<u64>,
    idf: Vec<f32>,
}

/// A fitted TF-IDF vectorizer over (question, context) pairs.
///
/// Column `i` is the n-gram with the `i`-th smallest key; since keys carry their block in the
/// top bits, each block (question, prompt and answer; words and chars) is a contiguous column
/// range.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "VectorizerState", into = "VectorizerState")]
pub struct TfidfVectorizer {
    config: VectorizerConfig,
    keys: Vec<u64>,
    idf: Vec<f32>,
    index: FxHashMap<u64, u32>,
    block_starts: [usize; N_BLOCKS + 1],
}

impl From<TfidfVectorizer> for VectorizerState {
    fn from(v: TfidfVectorizer) -> Self {
        Self {
            config: v.config,
            keys: v.keys,
            idf: v.idf,
        }
    }
}

impl TryFrom<VectorizerState> for TfidfVectorizer {
    type Error = String;

    fn try_from(state: VectorizerState) -> Result<Self, String> {
        state.config.validate()?;
        if state.keys.len() != state.idf.len() {
            return Err("vectorizer keys and idf differ in length".into());
        }
        if state.keys.len() > u32::MAX as usize {
            return Err("vectorizer vocabulary too large".into());
        }
        if !state.keys.windows(2).all(|w| w[0] < w[1]) {
            return Err("vectorizer keys are not strictly increasing".into());
        }
        if state.keys.last().is_some_and(|&k| block_of(k) >= N_BLOCKS) {
            return Err("vectorizer key outside every feature block".into());
        }
        if !state.idf.iter().all(|v| v.is_finite() && *v > 0.0) {
            return Err("vectorizer idf values must be finite and positive".into());
        }
        Ok(Self::from_parts(state.config, state.keys, state.idf))
    }
}

impl TfidfVectorizer {
    /// Learns the vocabulary and idf weights from training pairs `(question, context)`.
    ///
    /// `threads` is the number of worker threads (0 = every core); it never changes the result.
    pub fn fit<Q, C>(
        config: &VectorizerConfig,
        pairs: &[(Q, C)],
        threads: usize,
    ) -> Result<Self, String>
    where
        Q: AsRef<str> + Sync,
        C: AsRef<str> + Sync,
    {
        config.validate()?;
        let df = document_frequencies(config, pairs, resolve_threads(threads));
        let selected = select_vocabulary(df, config.min_df, config.max_features);
        let n_docs = pairs.len() as f64;
        // Smooth idf, as if one extra document contained every term.
        let idf_of = |df: u32| ((1.0 + n_docs) / (1.0 + f64::from(df))).ln() as f32 + 1.0;
        let idf = selected.iter().map(|&(_, df)| idf_of(df)).collect();
        let keys = selected.into_iter().map(|(key, _)| key).collect();
        Ok(Self::from_parts(config.clone(), keys, idf))
    }

    fn from_parts(config: VectorizerConfig, keys: Vec<u64>, idf: Vec<f32>) -> Self {
        let index = keys
            .iter()
            .enumerate()
            .map(|(i, &k)| (k, i as u32))
            .collect();
        let block_starts = std::array::from_fn(|b| keys.partition_point(|&k| block_of(k) < b));
        Self {
            config,
            keys,
            idf,
            index,
            block_starts,
        }
    }

    /// The settings this vectorizer was fitted with.
    pub fn config(&self) -> &VectorizerConfig {
        &self.config
    }

    /// Number of columns (kept n-grams).
    pub fn vocab_size(&self) -> usize {
        self.keys.len()
    }

    /// Featurises one pair into an L2-normalised TF-IDF row (unknown n-grams are ignored).
    pub fn transform(&self, question: &str, context: &str) -> SparseRow {
        let mut scratch = Scratch::default();
        self.transform_with(&mut scratch, question, context)
    }

    /// Featurises many pairs, using up to `threads` threads (0 = every core).
    pub fn transform_batch<Q, C>(&self, pairs: &[(Q, C)], threads: usize) -> Vec<SparseRow>
    where
        Q: AsRef<str> + Sync,
        C: AsRef<str> + Sync,
    {
        let threads = resolve_threads(threads);
        // Several ranges per thread, so long documents do not leave a thread idle.
        let ranges = split_range(pairs.len(), threads * 4);
        let parts = map_ranges(&ranges, threads, |range| {
            let mut scratch = Scratch::default();
            pairs[range]
                .iter()
                .map(|(q, c)| self.transform_with(&mut scratch, q.as_ref(), c.as_ref()))
                .collect::<Vec<_>>()
        });
        parts.into_iter().flatten().collect()
    }

    fn transform_with(&self, scratch: &mut Scratch, question: &str, context: &str) -> SparseRow {
        scratch.pair_keys(&self.config, question, context);
        let mut columns: Vec<u32> = scratch
            .keys
            .iter()
            .filter_map(|key| self.index.get(key).copied())
            .collect();
        columns.sort_unstable();
        let mut row = self.weighted_counts(&columns);
        self.normalise(&mut row);
        row
    }

    /// Turns sorted (repeated) column ids into tf * idf values.
    fn weighted_counts(&self, sorted_columns: &[u32]) -> SparseRow {
        let mut row = SparseRow::default();
        for run in sorted_columns.chunk_by(|a, b| a == b) {
            let column = run[0];
            let count = run.len() as f32;
            let tf = if self.config.sublinear_tf {
                1.0 + count.ln()
            } else {
                count
            };
            row.indices.push(column);
            row.values.push(tf * self.idf[column as usize]);
        }
        row
    }

    /// Scales each block to its field's weight in norm, then the whole row to unit norm.
    fn normalise(&self, row: &mut SparseRow) {
        for b in 0..N_BLOCKS {
            let lo = row
                .indices
                .partition_point(|&c| (c as usize) < self.block_starts[b]);
            let hi = row
                .indices
                .partition_point(|&c| (c as usize) < self.block_starts[b + 1]);
            let weight = self.config.block_weights.of(FIELDS[b / 2]);
            scale_to_norm(&mut row.values[lo..hi], weight);
        }
        scale_to_norm(&mut row.values, 1.0);
    }
}

fn scale_to_norm(values: &mut [f32], target: f32) {
    let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v *= target / norm);
    }
}

/// Counts, for every n-gram key, how many pairs contain it.
fn document_frequencies<Q, C>(
    cfg: &VectorizerConfig,
    pairs: &[(Q, C)],
    threads: usize,
) -> FxHashMap<u64, u32>
where
    Q: AsRef<str> + Sync,
    C: AsRef<str> + Sync,
{
    let ranges = split_range(pairs.len(), threads * 2);
    let partial = map_ranges(&ranges, threads, |range| {
        let mut scratch = Scratch::default();
        let mut seen = FxHashSet::default();
        let mut df = FxHashMap::<u64, u32>::default();
        for (q, c) in &pairs[range] {
            scratch.pair_keys(cfg, q.as_ref(), c.as_ref());
            seen.clear();
            seen.extend(scratch.keys.iter().copied());
            for &key in &seen {
                *df.entry(key).or_insert(0) += 1;
            }
        }
        df
    });
    merge_counts(partial)
}

fn merge_counts(parts: Vec<FxHashMap<u64, u32>>) -> FxHashMap<u64, u32> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (key, count) in part {
            *total.entry(key).or_insert(0) += count;
        }
    }
    total
}

/// Keeps keys with `df >= min_df`, the `max_features` most frequent ones (ties broken by key,
/// for determinism), returned sorted by key.
fn select_vocabulary(
    df: FxHashMap<u64, u32>,
    min_df: usize,
    max_features: usize,
) -> Vec<(u64, u32)> {
    let mut kept: Vec<(u64, u32)> = df
        .into_iter()
        .filter(|&(_, count)| count as usize >= min_df)
        .collect();
    if kept.len() > max_features {
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        kept.truncate(max_features);
    }
    kept.sort_unstable_by_key(|&(key, _)| key);
    kept
}
