//! Relevance features: a few dense numbers saying how an answer relates to its question.
//!
//! TF-IDF n-grams say *what* an answer says; these say whether it talks about what was asked
//! (word and character overlap with the question, the best-matching answer sentence) and how
//! much there is of each (lengths). Deciding whether a reply answers a question needs both.
//! Measured on QEvasion (3,448 pairs, 5 folds grouped by answer): +0.024 macro-F1 over the
//! n-grams alone; the best-matching sentence alone gives +0.014.
//!
//! Nothing here is language- or label-specific: words are the vectorizer's tokens weighted by
//! an idf fitted on the training texts, characters are `char_wb` 3- to 5-grams, sentences end
//! at `.`, `?` or `!` followed by white space. Each feature is standardised with the training
//! mean and deviation, then scaled by a weight relative to the unit-norm n-gram row.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::blocks::split_context;
use super::tokenize::{char_wb_ngrams, hash_bytes, Tokens};

/// Names of the features, in column order.
pub const RELEVANCE_FEATURES: [&str; N_RELEVANCE] = [
    "question_answer_word_cosine",
    "question_answer_char_cosine",
    "prompt_answer_word_cosine",
    "best_answer_sentence_cosine",
    "ln_answer_words",
    "ln_question_words",
];

/// Number of relevance features.
pub const N_RELEVANCE: usize = 6;

/// Character n-gram lengths compared between question and answer.
const CHAR_NGRAMS: [usize; 2] = [3, 5];

/// The serialised form of [`RelevanceFeatures`]; checked when loaded.
#[derive(Serialize, Deserialize)]
struct RelevanceState {
    weight: f32,
    answer_marker: String,
    n_docs: u32,
    /// `(word hash, document frequency)`, sorted by hash.
    word_df: Vec<(u64, u32)>,
    mean: [f32; N_RELEVANCE],
    scale: [f32; N_RELEVANCE],
}

/// Fitted relevance features: word idf, and each feature's training mean and deviation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RelevanceState", into = "RelevanceState")]
pub struct RelevanceFeatures {
    weight: f32,
    answer_marker: String,
    n_docs: u32,
    word_df: FxHashMap<u64, u32>,
    mean: [f32; N_RELEVANCE],
    scale: [f32; N_RELEVANCE],
}

impl From<RelevanceFeatures> for RelevanceState {
    fn from(r: RelevanceFeatures) -> Self {
        let mut word_df: Vec<(u64, u32)> = r.word_df.into_iter().collect();
        word_df.sort_unstable();
        Self {
            weight: r.weight,
            answer_marker: r.answer_marker,
            n_docs: r.n_docs,
            word_df,
            mean: r.mean,
            scale: r.scale,
        }
    }
}

impl TryFrom<RelevanceState> for RelevanceFeatures {
    type Error = String;

    fn try_from(s: RelevanceState) -> Result<Self, String> {
        check_in_use(s.weight)?;
        let finite = s.mean.iter().chain(&s.scale).all(|v| v.is_finite());
        if !finite || s.scale.iter().any(|&v| v <= 0.0) {
            return Err("relevance feature statistics must be finite, scales > 0".into());
        }
        if s.word_df.iter().any(|&(_, df)| df > s.n_docs) {
            return Err("relevance word frequency above the number of documents".into());
        }
        Ok(Self {
            weight: s.weight,
            answer_marker: s.answer_marker,
            n_docs: s.n_docs,
            word_df: s.word_df.into_iter().collect(),
            mean: s.mean,
            scale: s.scale,
        })
    }
}

/// Checks a `relevance_weight` option: finite and >= 0 (0 turns the features off).
pub fn check_weight(weight: f32) -> Result<(), String> {
    if weight.is_finite() && weight >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "relevance_weight must be finite and >= 0 (0 turns the features off), got {weight}"
        ))
    }
}

/// Checks the weight of fitted features: an option's value, and not 0 (no features at all).
fn check_in_use(weight: f32) -> Result<(), String> {
    check_weight(weight)?;
    if weight == 0.0 {
        return Err("relevance features need a relevance_weight above 0".into());
    }
    Ok(())
}

impl RelevanceFeatures {
    /// Fits the word idf on every text of the training pairs (question, prompt and answer each
    /// count as a document) and the standardisation on the training pairs' raw features.
    pub fn fit<Q, C>(pairs: &[(Q, C)], answer_marker: &str, weight: f32) -> Result<Self, String>
    where
        Q: AsRef<str>,
        C: AsRef<str>,
    {
        check_in_use(weight)?;
        let mut tokens = Tokens::default();
        let mut word_df = FxHashMap::<u64, u32>::default();
        let mut seen = FxHashSet::default();
        let mut n_docs = 0u32;
        for (question, context) in pairs {
            let (prompt, answer) = split_context(context.as_ref(), answer_marker);
            for text in [question.as_ref(), prompt, answer] {
                tokens.fill(text);
                seen.clear();
                seen.extend((0..tokens.spans.len()).map(|i| word_hash(tokens.token(i))));
                for &hash in &seen {
                    *word_df.entry(hash).or_insert(0) += 1;
                }
                n_docs = n_docs.saturating_add(1);
            }
        }
        let mut fitted = Self {
            weight,
            answer_marker: answer_marker.to_string(),
            n_docs,
            word_df,
            mean: [0.0; N_RELEVANCE],
            scale: [1.0; N_RELEVANCE],
        };
        let raw: Vec<[f64; N_RELEVANCE]> = pairs
            .iter()
            .map(|(q, c)| fitted.raw(q.as_ref(), c.as_ref()).map(f64::from))
            .collect();
        let n = raw.len().max(1) as f64;
        for f in 0..N_RELEVANCE {
            let mean = raw.iter().map(|r| r[f]).sum::<f64>() / n;
            let var = raw.iter().map(|r| (r[f] - mean).powi(2)).sum::<f64>() / n;
            fitted.mean[f] = mean as f32;
            // A constant feature (e.g. one training pair) is centred and left unscaled.
            fitted.scale[f] = if var > 1e-12 { var.sqrt() as f32 } else { 1.0 };
        }
        Ok(fitted)
    }

    /// The standardised, weighted features of one pair, in [`RELEVANCE_FEATURES`] order.
    pub fn transform(&self, question: &str, context: &str) -> [f32; N_RELEVANCE] {
        let raw = self.raw(question, context);
        std::array::from_fn(|f| (raw[f] - self.mean[f]) / self.scale[f] * self.weight)
    }

    /// The features before standardisation.
    pub fn raw(&self, question: &str, context: &str) -> [f32; N_RELEVANCE] {
        let (prompt, answer) = split_context(context, &self.answer_marker);
        let mut scratch = Scratch::default();
        let mut q = Hashes::default();
        q.push(&mut scratch, question, true);
        let q_len = q.words.len();
        let q_words = self.word_vector(q.words);
        // The answer is read sentence by sentence, once: the sentences' tokens together are
        // the answer's (a sentence ends at white space, which never splits a token).
        let mut a = Hashes::default();
        let mut best_sentence = 0.0f32;
        for sentence in sentences(answer) {
            let from = a.words.len();
            a.push(&mut scratch, sentence, true);
            let sentence_words = self.word_vector(a.words[from..].to_vec());
            best_sentence = best_sentence.max(cosine(&q_words, &sentence_words));
        }
        let a_len = a.words.len();
        let a_words = self.word_vector(a.words);
        let mut p = Hashes::default();
        p.push(&mut scratch, prompt, false);
        [
            cosine(&q_words, &a_words),
            cosine(&unit_vector(q.chars), &unit_vector(a.chars)),
            cosine(&self.word_vector(p.words), &a_words),
            best_sentence,
            (a_len as f32).ln_1p(),
            (q_len as f32).ln_1p(),
        ]
    }

    /// Smooth idf, as the vectorizer's: a word never seen in training counts as df 0.
    fn idf(&self, hash: u64) -> f32 {
        let df = self.word_df.get(&hash).copied().unwrap_or(0);
        ((1.0 + f64::from(self.n_docs)) / (1.0 + f64::from(df))).ln() as f32 + 1.0
    }

    /// Unit-norm `(1 + ln tf) * idf` vector of word hashes, sorted by hash.
    fn word_vector(&self, hashes: Vec<u64>) -> Vec<(u64, f32)> {
        let mut vector = sublinear_counts(hashes);
        vector.iter_mut().for_each(|(h, v)| *v *= self.idf(*h));
        normalise(&mut vector);
        vector
    }
}

/// Reusable tokenisation buffers.
#[derive(Default)]
struct Scratch {
    tokens: Tokens,
    char_starts: Vec<usize>,
}

/// The word hashes and (optionally) `char_wb` n-gram hashes of some text.
#[derive(Default)]
struct Hashes {
    words: Vec<u64>,
    chars: Vec<u64>,
}

impl Hashes {
    /// Appends the hashes of `text`.
    fn push(&mut self, scratch: &mut Scratch, text: &str, with_chars: bool) {
        let Scratch {
            tokens,
            char_starts,
        } = scratch;
        tokens.fill(text);
        for i in 0..tokens.spans.len() {
            self.words.push(word_hash(tokens.token(i)));
            if with_chars {
                char_wb_ngrams(tokens.padded(i), CHAR_NGRAMS, char_starts, |gram| {
                    self.chars.push(hash_bytes(0, gram));
                });
            }
        }
    }
}

fn word_hash(token: &str) -> u64 {
    hash_bytes(0, token.as_bytes())
}

/// Unit-norm `(1 + ln tf)` vector of hashes, sorted by hash.
fn unit_vector(hashes: Vec<u64>) -> Vec<(u64, f32)> {
    let mut vector = sublinear_counts(hashes);
    normalise(&mut vector);
    vector
}

/// `(hash, 1 + ln count)` for each distinct hash, sorted by hash.
fn sublinear_counts(mut hashes: Vec<u64>) -> Vec<(u64, f32)> {
    hashes.sort_unstable();
    hashes
        .chunk_by(|a, b| a == b)
        .map(|run| (run[0], 1.0 + (run.len() as f32).ln()))
        .collect()
}

fn normalise(vector: &mut [(u64, f32)]) {
    let norm = vector.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|(_, v)| *v /= norm);
    }
}

/// Dot product of two hash-sorted unit vectors (0 when either is empty).
fn cosine(a: &[(u64, f32)], b: &[(u64, f32)]) -> f32 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    dot
}

/// The sentences of `text`: a sentence ends at `.`, `?` or `!` followed by white space.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .zip(rest.chars().skip(1))
            .find(|((_, c), next)| matches!(c, '.' | '?' | '!') && next.is_whitespace())
            .map_or(rest.len(), |((at, c), _)| at + c.len_utf8());
        let (sentence, tail) = rest.split_at(end);
        rest = tail;
        if !sentence.trim().is_empty() {
            return Some(sentence);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(q: &str, c: &str) -> (String, String) {
        (q.to_string(), c.to_string())
    }

    fn corpus() -> Vec<(String, String)> {
        vec![
            pair(
                "Will you raise taxes?",
                "Q: About the budget. Will you raise taxes?\nA: No. We will not raise taxes.",
            ),
            pair(
                "What about the border?",
                "Q: And the border?\nA: The weather was lovely today. I enjoyed the visit.",
            ),
            pair(
                "Is the deal done, yes or no?",
                "Q: The deal?\nA: I cannot comment on that.",
            ),
        ]
    }

    #[test]
    fn an_answer_about_the_question_scores_higher_overlap() {
        let r = RelevanceFeatures::fit(&corpus(), "\nA:", 1.0).expect("fit");
        let on_topic = r.raw("Will you raise taxes?", "Q: x\nA: We will not raise taxes.");
        let off_topic = r.raw("Will you raise taxes?", "Q: x\nA: The weather is lovely.");
        for f in [0, 1, 3] {
            assert!(
                on_topic[f] > off_topic[f] + 0.2,
                "{}: {} vs {}",
                RELEVANCE_FEATURES[f],
                on_topic[f],
                off_topic[f]
            );
        }
    }

    #[test]
    fn the_best_sentence_is_found_among_unrelated_ones() {
        let r = RelevanceFeatures::fit(&corpus(), "\nA:", 1.0).expect("fit");
        let context =
            "Q: x\nA: The weather is lovely. I enjoyed the visit! Taxes will rise next year.";
        let raw = r.raw("Will taxes rise?", context);
        // The best sentence shares more of its words with the question than the answer does.
        assert!(
            raw[3] > raw[0],
            "best sentence {} vs whole answer {}",
            raw[3],
            raw[0]
        );
        assert_eq!(
            sentences("One. Two? Three! Four.no split").collect::<Vec<_>>(),
            ["One.", " Two?", " Three!", " Four.no split"]
        );
    }

    #[test]
    fn lengths_and_identical_texts_have_their_exact_values() {
        let r = RelevanceFeatures::fit(&corpus(), "\nA:", 1.0).expect("fit");
        let raw = r.raw("raise taxes now", "Q: raise taxes now\nA: raise taxes now");
        assert!((raw[0] - 1.0).abs() < 1e-5 && (raw[1] - 1.0).abs() < 1e-5);
        assert!((raw[4] - 4f32.ln()).abs() < 1e-6 && (raw[5] - 4f32.ln()).abs() < 1e-6);
        let empty = r.raw("", "");
        assert_eq!(&empty[..4], &[0.0; 4]);
    }

    #[test]
    fn training_features_are_standardised_and_weighted() {
        let pairs = corpus();
        let r = RelevanceFeatures::fit(&pairs, "\nA:", 0.5).expect("fit");
        let rows: Vec<_> = pairs.iter().map(|(q, c)| r.transform(q, c)).collect();
        for f in 0..N_RELEVANCE {
            let mean = rows.iter().map(|x| x[f]).sum::<f32>() / 3.0;
            let sd = (rows.iter().map(|x| (x[f] - mean).powi(2)).sum::<f32>() / 3.0).sqrt();
            assert!(mean.abs() < 1e-5, "{}: mean {mean}", RELEVANCE_FEATURES[f]);
            assert!(
                (sd - 0.5).abs() < 1e-4,
                "{}: sd {sd}",
                RELEVANCE_FEATURES[f]
            );
        }
    }

    #[test]
    fn saved_features_round_trip_and_bad_state_is_rejected() {
        let r = RelevanceFeatures::fit(&corpus(), "\nA:", 0.1).expect("fit");
        let bytes = postcard::to_stdvec(&r).expect("encode");
        let back: RelevanceFeatures = postcard::from_bytes(&bytes).expect("decode");
        let (q, c) = &corpus()[1];
        assert_eq!(r.transform(q, c), back.transform(q, c));
        assert!(RelevanceFeatures::fit(&corpus(), "\nA:", 0.0).is_err());
        assert!(RelevanceFeatures::fit(&corpus(), "\nA:", f32::NAN).is_err());
    }
}
