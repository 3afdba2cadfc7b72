//! TF-IDF featurisation of (question, context) pairs.
//!
//! Each pair is turned into word n-grams and `char_wb`-style character n-grams. The context is
//! split at an answer marker (`"\nA:"` by default) into the interviewer's prompt and the
//! answer, so a pair gives three text blocks (question, prompt, answer), each in its own
//! namespace, normalised on its own and scaled by its own weight.
//! N-grams are identified by a stable 64-bit hash (never by an allocated string), which keeps
//! fitting and transforming fast and the saved vocabulary compact. The hash is defined in this
//! file and must never change, or saved models would silently stop matching.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

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

/// Relative weights of the three text blocks of a pair. Each block (its word and its char
/// n-grams separately) is scaled to unit norm, multiplied by its weight, and then the whole
/// row is scaled to unit norm, so only the ratios between the weights matter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockWeights {
    /// The question being classified.
    pub question: f32,
    /// The context before the answer marker (the interviewer's full prompt).
    pub prompt: f32,
    /// The context after the answer marker (the whole context if there is no marker).
    pub answer: f32,
}

impl Default for BlockWeights {
    fn default() -> Self {
        Self {
            // Measured on the sample data and QEvasion: the label signal is in the answer, the
            // prompt adds a little, and the question (part of the prompt there) adds nothing.
            question: 0.0,
            prompt: 0.5,
            answer: 1.0,
        }
    }
}

impl BlockWeights {
    fn of(&self, field: Field) -> f32 {
        match field {
            Field::Question => self.question,
            Field::Prompt => self.prompt,
            Field::Answer => self.answer,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let all = [self.question, self.prompt, self.answer];
        if !all.iter().all(|w| w.is_finite() && *w >= 0.0) {
            return Err(format!(
                "block_weights must be finite and >= 0, got {self:?}"
            ));
        }
        if all.iter().all(|w| *w == 0.0) {
            return Err("block_weights cannot all be 0".into());
        }
        Ok(())
    }
}

/// Splits a context into (prompt, answer) at the first `marker`; without a marker (or with
/// an empty one) the prompt is empty and the whole context is the answer.
pub fn split_context<'a>(context: &'a str, marker: &str) -> (&'a str, &'a str) {
    match context.find(marker) {
        Some(at) if !marker.is_empty() => (&context[..at], &context[at + marker.len()..]),
        _ => ("", context),
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

/// Which text block of a pair a feature comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Question = 0,
    Prompt = 1,
    Answer = 2,
}

const FIELDS: [Field; 3] = [Field::Question, Field::Prompt, Field::Answer];

/// Feature blocks: (field, n-gram kind). Each block is normalised on its own so that a long
/// prompt cannot drown out the answer, nor the many char n-grams the few word n-grams.
const N_BLOCKS: usize = 6;
const BLOCK_SHIFT: u32 = 61;
const HASH_MASK: u64 = (1 << BLOCK_SHIFT) - 1;

fn block_id(field: Field, char_kind: bool) -> u64 {
    field as u64 * 2 + u64::from(char_kind)
}

fn block_of(key: u64) -> usize {
    (key >> BLOCK_SHIFT) as usize
}

/// Puts the block id in the top bits, so sorting keys groups them by block.
fn tag(block: u64, hash: u64) -> u64 {
    (block << BLOCK_SHIFT) | (hash & HASH_MASK)
}

// ---- stable hashing (part of the saved-model format: do not change) ----

const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

fn combine(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(MUL)
}

/// Stable 64-bit hash of a byte string (little-endian 8-byte words, length-seeded).
fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = combine(seed, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = combine(h, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = combine(h, u64::from_le_bytes(word));
    }
    fmix64(h)
}

// ---- tokenisation ----

/// Lowercased tokens of one text, stored as `" tok1 tok2 … "` so that each token's
/// space-padded form (used by char n-grams) is a plain slice of `text`.
#[derive(Default)]
struct Tokens {
    text: String,
    spans: Vec<Range<usize>>,
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

fn push_lower(out: &mut String, c: char) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else {
        out.extend(c.to_lowercase());
    }
}

impl Tokens {
    /// Splits on anything that is not alphanumeric, keeping apostrophes inside words.
    fn fill(&mut self, input: &str) {
        self.text.clear();
        self.spans.clear();
        self.text.push(' ');
        let mut start = None;
        let mut chars = input.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() {
                start.get_or_insert(self.text.len());
                push_lower(&mut self.text, c);
            } else if start.is_some()
                && is_apostrophe(c)
                && chars.peek().is_some_and(|next| next.is_alphanumeric())
            {
                self.text.push('\'');
            } else if let Some(s) = start.take() {
                self.spans.push(s..self.text.len());
                self.text.push(' ');
            }
        }
        if let Some(s) = start {
            self.spans.push(s..self.text.len());
            self.text.push(' ');
        }
    }

    fn token(&self, i: usize) -> &str {
        &self.text[self.spans[i].clone()]
    }

    /// The token with one space on each side.
    fn padded(&self, i: usize) -> &str {
        let span = &self.spans[i];
        &self.text[span.start - 1..span.end + 1]
    }
}

// ---- n-gram extraction ----

/// Reusable buffers for turning one text into n-gram keys.
#[derive(Default)]
struct Scratch {
    tokens: Tokens,
    token_hashes: Vec<u64>,
    char_starts: Vec<usize>,
    keys: Vec<u64>,
}

impl Scratch {
    /// Replaces `self.keys` with the (repeated) n-gram keys of every weighted block of a pair.
    fn pair_keys(&mut self, cfg: &VectorizerConfig, question: &str, context: &str) {
        self.keys.clear();
        let (prompt, answer) = split_context(context, &cfg.answer_marker);
        for (field, text) in FIELDS.into_iter().zip([question, prompt, answer]) {
            if cfg.block_weights.of(field) > 0.0 {
                self.push_keys(cfg, text, field);
            }
        }
    }

    fn push_keys(&mut self, cfg: &VectorizerConfig, text: &str, field: Field) {
        self.tokens.fill(text);
        if range_enabled(cfg.word_ngrams) {
            self.push_word_ngrams(cfg.word_ngrams, block_id(field, false));
        }
        if range_enabled(cfg.char_ngrams) {
            self.push_char_ngrams(cfg.char_ngrams, block_id(field, true));
        }
    }

    fn push_word_ngrams(&mut self, [min_n, max_n]: [usize; 2], block: u64) {
        let n_tokens = self.tokens.spans.len();
        self.token_hashes.clear();
        for i in 0..n_tokens {
            let hash = hash_bytes(0, self.tokens.token(i).as_bytes());
            self.token_hashes.push(hash);
        }
        for start in 0..n_tokens {
            let mut h = combine(block, 0x5749_4F52_4453); // "WORDS": apart from char seeds
            for (len, &token_hash) in self.token_hashes[start..].iter().take(max_n).enumerate() {
                h = combine(h, token_hash);
                if len + 1 >= min_n {
                    self.keys.push(tag(block, fmix64(h ^ (len as u64 + 1))));
                }
            }
        }
    }

    /// `char_wb` n-grams: windows inside each space-padded token; a padded token shorter
    /// than `n` yields itself once (like scikit-learn).
    fn push_char_ngrams(&mut self, [min_n, max_n]: [usize; 2], block: u64) {
        for i in 0..self.tokens.spans.len() {
            let padded = self.tokens.padded(i);
            self.char_starts.clear();
            self.char_starts
                .extend(padded.char_indices().map(|(at, _)| at));
            self.char_starts.push(padded.len());
            let n_chars = self.char_starts.len() - 1;
            for n in min_n..=max_n {
                let windows = n_chars.saturating_sub(n) + 1;
                for w in 0..windows {
                    let end = self.char_starts[(w + n).min(n_chars)];
                    let gram = &padded.as_bytes()[self.char_starts[w]..end];
                    self.keys.push(tag(block, hash_bytes(block, gram)));
                }
                if n >= n_chars {
                    break;
                }
            }
        }
    }
}

// ---- parallel helper ----

/// More threads than this never helps and could exhaust the system.
const MAX_THREADS: usize = 256;

/// Number of worker threads to use: `requested`, or every core when it is 0.
pub(crate) fn resolve_threads(requested: usize) -> usize {
    let threads = match requested {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    threads.min(MAX_THREADS)
}

/// Splits `0..n` into `parts` contiguous ranges of nearly equal size (none empty unless n is 0).
pub(crate) fn split_range(n: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .collect()
}

/// Runs `f` on every range using up to `threads` threads and returns the results in range
/// order, so the outcome never depends on the number of threads. Workers pick the next
/// unclaimed range, which balances uneven ranges.
pub(crate) fn map_ranges<T, F>(ranges: &[Range<usize>], threads: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>) -> T + Sync,
{
    let workers = threads.clamp(1, ranges.len().max(1));
    if workers == 1 {
        return ranges.iter().cloned().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(range) = ranges.get(i) else {
                return done;
            };
            done.push((i, f(range.clone())));
        }
    };
    let mut tagged: Vec<(usize, T)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    tagged.sort_unstable_by_key(|(i, _)| *i);
    tagged.into_iter().map(|(_, t)| t).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<String> {
        let mut t = Tokens::default();
        t.fill(text);
        (0..t.spans.len()).map(|i| t.token(i).to_string()).collect()
    }

    fn keys_of(cfg: &VectorizerConfig, question: &str, context: &str) -> Vec<u64> {
        let mut scratch = Scratch::default();
        scratch.pair_keys(cfg, question, context);
        scratch.keys.clone()
    }

    const ALL_BLOCKS: BlockWeights = BlockWeights {
        question: 1.0,
        prompt: 1.0,
        answer: 1.0,
    };

    fn words_only(range: [usize; 2]) -> VectorizerConfig {
        VectorizerConfig {
            word_ngrams: range,
            char_ngrams: [0, 0],
            min_df: 1,
            block_weights: ALL_BLOCKS,
            ..Default::default()
        }
    }

    fn chars_only(range: [usize; 2]) -> VectorizerConfig {
        VectorizerConfig {
            word_ngrams: [0, 0],
            char_ngrams: range,
            min_df: 1,
            block_weights: ALL_BLOCKS,
            ..Default::default()
        }
    }

    #[test]
    fn tokenizer_lowercases_and_keeps_inner_apostrophes() {
        assert_eq!(
            tokens("Don't STOP—now, 'quoted' Ünïcode 42x"),
            ["don't", "stop", "now", "quoted", "ünïcode", "42x"]
        );
        assert_eq!(tokens("It’s fine"), ["it's", "fine"]);
        assert!(tokens("  ... !!! ").is_empty());
    }

    #[test]
    fn word_ngram_counts() {
        // 4 tokens: 4 unigrams + 3 bigrams + 2 trigrams.
        assert_eq!(keys_of(&words_only([1, 3]), "a b c d", "").len(), 9);
        assert_eq!(keys_of(&words_only([2, 2]), "a b c d", "").len(), 3);
        assert_eq!(keys_of(&words_only([1, 2]), "", "").len(), 0);
    }

    #[test]
    fn char_wb_ngrams_match_scikit_learn() {
        // " ab " has 4 chars: 3 bigrams, 2 trigrams, 1 four-gram; n=5 is skipped as too long.
        assert_eq!(keys_of(&chars_only([2, 5]), "ab", "").len(), 6);
        // " a " (3 chars) yields itself once for n >= 3.
        assert_eq!(keys_of(&chars_only([3, 5]), "a", "").len(), 1);
        // Multi-byte characters count as one.
        assert_eq!(keys_of(&chars_only([2, 2]), "éé", "").len(), 3);
    }

    #[test]
    fn question_and_context_use_separate_namespaces() {
        let cfg = words_only([1, 1]);
        let q = keys_of(&cfg, "hello", "");
        let c = keys_of(&cfg, "", "hello");
        assert_eq!(q.len(), 1);
        assert_ne!(q, c);
        assert_eq!(block_of(q[0]), 0);
        assert_eq!(block_of(c[0]), 4); // no marker: the whole context is the answer
    }

    #[test]
    fn context_splits_at_the_first_answer_marker() {
        let marker = "\nA:";
        assert_eq!(
            split_context("Q: why?\nA: because", marker),
            ("Q: why?", " because")
        );
        assert_eq!(
            split_context("Q: a\nA: b\nA: c", marker),
            ("Q: a", " b\nA: c")
        );
        assert_eq!(
            split_context("no marker here", marker),
            ("", "no marker here")
        );
        assert_eq!(split_context("Q: x\nA: y", ""), ("", "Q: x\nA: y"));
    }

    #[test]
    fn blocks_have_their_own_namespaces_and_weights() {
        let blocks = |cfg: &VectorizerConfig, q: &str, c: &str| {
            let mut b: Vec<usize> = keys_of(cfg, q, c).into_iter().map(block_of).collect();
            b.dedup();
            b
        };
        let cfg = words_only([1, 1]);
        // Question words, prompt words ("q", "hi"), answer words: blocks 0, 2 and 4.
        assert_eq!(blocks(&cfg, "hi", "Q: hi\nA: hi"), [0, 2, 4]);
        let same_word = keys_of(&cfg, "", "Q: hi\nA: hi");
        assert_eq!(same_word.len(), 3);
        assert_ne!(
            same_word[1], same_word[2],
            "prompt and answer `hi` must differ"
        );
        // A zero weight drops its block; an empty marker keeps the context whole.
        let answer_only = VectorizerConfig {
            block_weights: BlockWeights {
                question: 0.0,
                prompt: 0.0,
                answer: 1.0,
            },
            ..cfg.clone()
        };
        assert_eq!(blocks(&answer_only, "hi", "Q: hi\nA: hi"), [4]);
        let unsplit = VectorizerConfig {
            answer_marker: String::new(),
            ..answer_only.clone()
        };
        assert_eq!(keys_of(&unsplit, "", "Q: hi\nA: hi").len(), 4);
        let prompt_only = BlockWeights {
            prompt: 1.0,
            answer: 0.0,
            ..answer_only.block_weights
        };
        assert!(VectorizerConfig {
            block_weights: prompt_only,
            ..unsplit.clone()
        }
        .validate()
        .is_err());
        let v = TfidfVectorizer::fit(&answer_only, &[("x", "Q: a b\nA: c")], 1).expect("fit");
        assert_eq!(v.vocab_size(), 1);
        assert_eq!(v.transform("x", "Q: c d\nA: e").nnz(), 0);
        assert!(VectorizerConfig {
            block_weights: BlockWeights {
                question: 0.0,
                prompt: 0.0,
                answer: 0.0
            },
            ..cfg.clone()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn block_weights_set_each_block_share_of_the_row() {
        let cfg = VectorizerConfig {
            block_weights: BlockWeights {
                question: 0.0,
                prompt: 0.5,
                answer: 1.0,
            },
            ..words_only([1, 1])
        };
        let v = TfidfVectorizer::fit(&cfg, &[("", "Q: x\nA: y z")], 1).expect("fit");
        let row = v.transform("", "Q: x\nA: y z");
        // Prompt words "q x", then answer words "y z" (blocks are in column order).
        assert_eq!(row.nnz(), 4);
        let norm = |values: &[f32]| values.iter().map(|v| v * v).sum::<f32>().sqrt();
        let (prompt, answer) = (norm(&row.values[..2]), norm(&row.values[2..]));
        assert!((answer / prompt - 2.0).abs() < 1e-5, "{row:?}");
        assert!((row.l2_norm() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn min_df_and_max_features_limit_the_vocabulary() {
        let pairs = [
            ("", "apple banana"),
            ("", "apple cherry"),
            ("", "apple banana"),
        ];
        let cfg = VectorizerConfig {
            min_df: 2,
            ..words_only([1, 1])
        };
        let v = TfidfVectorizer::fit(&cfg, &pairs, 1).expect("fit");
        assert_eq!(v.vocab_size(), 2); // apple, banana
        let capped = VectorizerConfig {
            max_features: 1,
            ..cfg
        };
        let v = TfidfVectorizer::fit(&capped, &pairs, 1).expect("fit");
        assert_eq!(v.vocab_size(), 1); // apple (df 3)
        assert_eq!(v.transform("", "apple").nnz(), 1);
        assert_eq!(v.transform("", "banana").nnz(), 0);
    }

    #[test]
    fn rows_are_sorted_and_unit_norm() {
        let pairs = [
            ("why now", "because it is late"),
            ("why not", "it is late, it is"),
        ];
        let cfg = VectorizerConfig {
            min_df: 1,
            ..Default::default()
        };
        let v = TfidfVectorizer::fit(&cfg, &pairs, 2).expect("fit");
        for (q, c) in pairs {
            let row = v.transform(q, c);
            assert!(row.indices.windows(2).all(|w| w[0] < w[1]));
            assert!((row.l2_norm() - 1.0).abs() < 1e-5);
        }
        assert_eq!(v.transform("zzz", "qqq").nnz(), 0);
    }

    #[test]
    fn rarer_terms_get_larger_weights() {
        let pairs = [("", "common rare"), ("", "common"), ("", "common")];
        let v = TfidfVectorizer::fit(&words_only([1, 1]), &pairs, 1).expect("fit");
        let row = v.transform("", "common rare");
        let value_of = |word: &str| {
            let column = v.transform("", word).indices[0];
            row.iter()
                .find(|&(c, _)| c == column)
                .map(|(_, value)| value)
        };
        let (common, rare) = (value_of("common"), value_of("rare"));
        assert!(rare > common, "{rare:?} <= {common:?}");
    }

    #[test]
    fn sublinear_tf_dampens_repeats() {
        let pairs = [("", "x y"), ("", "x y")];
        let ratio = |sublinear_tf: bool| {
            let cfg = VectorizerConfig {
                sublinear_tf,
                ..words_only([1, 1])
            };
            let row = TfidfVectorizer::fit(&cfg, &pairs, 1)
                .expect("fit")
                .transform("", "x x x x y");
            assert_eq!(row.nnz(), 2);
            row.values[0].max(row.values[1]) / row.values[0].min(row.values[1])
        };
        assert!((ratio(false) - 4.0).abs() < 1e-4);
        assert!((ratio(true) - (1.0 + 4f32.ln())).abs() < 1e-4);
    }

    #[test]
    fn batch_transform_matches_single_and_is_thread_independent() {
        let pairs: Vec<(String, String)> = (0..50)
            .map(|i| {
                (
                    format!("q{} w{}", i % 7, i % 3),
                    format!("ctx {} and {}", i % 5, i % 11),
                )
            })
            .collect();
        let v1 = TfidfVectorizer::fit(&VectorizerConfig::default(), &pairs, 1).expect("fit");
        let v3 = TfidfVectorizer::fit(&VectorizerConfig::default(), &pairs, 3).expect("fit");
        assert_eq!(v1.keys, v3.keys);
        let batch = v3.transform_batch(&pairs, 3);
        for ((q, c), row) in pairs.iter().zip(&batch) {
            assert_eq!(&v1.transform(q, c), row);
        }
    }

    #[test]
    fn invalid_ranges_are_rejected() {
        assert!(VectorizerConfig {
            word_ngrams: [2, 1],
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(VectorizerConfig {
            char_ngrams: [0, 3],
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(VectorizerConfig {
            word_ngrams: [0, 0],
            char_ngrams: [0, 0],
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn split_range_covers_everything() {
        let ranges = split_range(10, 3);
        assert_eq!(ranges, [0..3, 3..6, 6..10]);
        assert!(split_range(0, 4).iter().all(|r| r.is_empty()));
        assert_eq!(split_range(2, 8).len(), 2);
    }
}
