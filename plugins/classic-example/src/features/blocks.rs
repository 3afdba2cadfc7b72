//! The three text blocks of a pair (question, prompt, answer): splitting a context at the
//! answer marker, the blocks' weights, and the block id carried in the top bits of every
//! n-gram key. The key layout is part of the saved-model format: do not change it.

use serde::{Deserialize, Serialize};

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
    pub(super) fn of(&self, field: Field) -> f32 {
        match field {
            Field::Question => self.question,
            Field::Prompt => self.prompt,
            Field::Answer => self.answer,
        }
    }

    pub(super) fn validate(&self) -> Result<(), String> {
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

/// Which text block of a pair a feature comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Question = 0,
    Prompt = 1,
    Answer = 2,
}

pub(super) const FIELDS: [Field; 3] = [Field::Question, Field::Prompt, Field::Answer];

/// Feature blocks: (field, n-gram kind). Each block is normalised on its own so that a long
/// prompt cannot drown out the answer, nor the many char n-grams the few word n-grams.
pub(super) const N_BLOCKS: usize = 6;
const BLOCK_SHIFT: u32 = 61;
const HASH_MASK: u64 = (1 << BLOCK_SHIFT) - 1;

pub(super) fn block_id(field: Field, char_kind: bool) -> u64 {
    field as u64 * 2 + u64::from(char_kind)
}

pub(super) fn block_of(key: u64) -> usize {
    (key >> BLOCK_SHIFT) as usize
}

/// Puts the block id in the top bits, so sorting keys groups them by block.
pub(super) fn tag(block: u64, hash: u64) -> u64 {
    (block << BLOCK_SHIFT) | (hash & HASH_MASK)
}
