//! Tokenisation, the stable n-gram hash and n-gram extraction: turning the blocks of a pair
//! into (repeated) n-gram keys. The keys are stored in saved models, so the tokeniser, the
//! hash and the way n-grams are hashed must never change.

use std::ops::Range;

use super::blocks::{block_id, tag, Field, FIELDS};
use super::{range_enabled, split_context, VectorizerConfig};

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
pub(super) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
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
pub(super) struct Tokens {
    text: String,
    pub(super) spans: Vec<Range<usize>>,
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
    pub(super) fn fill(&mut self, input: &str) {
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

    pub(super) fn token(&self, i: usize) -> &str {
        &self.text[self.spans[i].clone()]
    }

    /// The token with one space on each side.
    pub(super) fn padded(&self, i: usize) -> &str {
        let span = &self.spans[i];
        &self.text[span.start - 1..span.end + 1]
    }
}

// ---- n-gram extraction ----

/// Reusable buffers for turning one text into n-gram keys.
#[derive(Default)]
pub(super) struct Scratch {
    tokens: Tokens,
    token_hashes: Vec<u64>,
    char_starts: Vec<usize>,
    pub(super) keys: Vec<u64>,
}

impl Scratch {
    /// Replaces `self.keys` with the (repeated) n-gram keys of every weighted block of a pair.
    pub(super) fn pair_keys(&mut self, cfg: &VectorizerConfig, question: &str, context: &str) {
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

    /// `char_wb` n-grams of every token (see [`char_wb_ngrams`]).
    fn push_char_ngrams(&mut self, range: [usize; 2], block: u64) {
        for i in 0..self.tokens.spans.len() {
            let padded = self.tokens.padded(i);
            char_wb_ngrams(padded, range, &mut self.char_starts, |gram| {
                self.keys.push(tag(block, hash_bytes(block, gram)));
            });
        }
    }
}

/// The `char_wb` n-grams of one space-padded token, `min_n` to `max_n` characters long: the
/// windows inside it, and the token itself once when it is shorter than `n` (like
/// scikit-learn). `starts` is scratch space for the characters' byte offsets.
pub(super) fn char_wb_ngrams(
    padded: &str,
    [min_n, max_n]: [usize; 2],
    starts: &mut Vec<usize>,
    mut gram: impl FnMut(&[u8]),
) {
    starts.clear();
    starts.extend(padded.char_indices().map(|(at, _)| at));
    starts.push(padded.len());
    let n_chars = starts.len() - 1;
    for n in min_n..=max_n {
        let windows = n_chars.saturating_sub(n) + 1;
        for w in 0..windows {
            let end = starts[(w + n).min(n_chars)];
            gram(&padded.as_bytes()[starts[w]..end]);
        }
        if n >= n_chars {
            break;
        }
    }
}
