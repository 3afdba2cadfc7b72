//! Question/context pairs to padded token-id batches.
//!
//! Our models read (question, context) ([`PairOrder::QuestionContext`]): the context is
//! truncated first (it is the long part); only when the question alone does not fit is the
//! question cut too. Models fine-tuned by the Python Clarity read (context, question) with
//! transformers' `truncation=True` (longest first) ([`PairOrder::ContextQuestion`]). A batch
//! is padded to its longest pair, not to `max_length`, so short requests stay cheap.

use crate::input::InputLayout;
use clarity_sdk::input::InputConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

/// Why a tokenizer could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizeError {
    /// `tokenizer.json` could not be read or parsed.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Encoding failed.
    #[error("cannot tokenize: {0}")]
    Encode(String),
}

/// Read a `tokenizer.json` as it is (its own truncation and padding included).
pub fn read_tokenizer(path: &Path) -> Result<Tokenizer, TokenizeError> {
    Tokenizer::from_file(path).map_err(|e| TokenizeError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A batch of encoded pairs, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Pairs in the batch.
    pub batch: usize,
    /// Tokens per pair after padding.
    pub seq: usize,
    /// Token ids.
    pub input_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// 0 for the first text's segment, 1 for the second's (see [`PairOrder`]).
    pub token_type_ids: Vec<i64>,
}

impl Encoded {
    /// Real (unpadded) tokens of row `i`.
    pub fn length(&self, i: usize) -> usize {
        self.attention_mask[i * self.seq..(i + 1) * self.seq]
            .iter()
            .filter(|&&m| m != 0)
            .count()
    }

    /// A batch of the given rows, in that order, padded to the longest of them. Rows are
    /// right-padded, so cutting each row to the new width drops padding only.
    pub fn select(&self, rows: &[usize]) -> Encoded {
        let seq = rows.iter().map(|&i| self.length(i)).max().unwrap_or(0);
        let pick = |column: &[i64]| -> Vec<i64> {
            rows.iter()
                .flat_map(|&i| column[i * self.seq..i * self.seq + seq].iter().copied())
                .collect()
        };
        Encoded {
            batch: rows.len(),
            seq,
            input_ids: pick(&self.input_ids),
            attention_mask: pick(&self.attention_mask),
            token_type_ids: pick(&self.token_type_ids),
        }
    }
}

/// Turns question/context pairs into a padded batch: what the training loop needs of a
/// tokenizer. Encoders use [`PairTokenizer`]; decoders place the pair in a prompt template.
pub trait EncodePairs {
    /// Encode `pairs`, padded to the longest in the batch.
    fn encode(&self, pairs: &[(&str, &str)]) -> Result<Encoded, TokenizeError>;

    /// Each pair's length in tokens before truncation (special tokens included): a pair
    /// longer than `max_length` is cut by [`EncodePairs::encode`].
    fn token_counts(&self, pairs: &[(&str, &str)]) -> Result<Vec<usize>, TokenizeError>;
}

impl EncodePairs for PairTokenizer {
    fn encode(&self, pairs: &[(&str, &str)]) -> Result<Encoded, TokenizeError> {
        self.encode_pairs(pairs)
    }

    fn token_counts(&self, pairs: &[(&str, &str)]) -> Result<Vec<usize>, TokenizeError> {
        if let Some(layout) = &self.layout {
            return layout.token_counts(pairs);
        }
        let inputs: Vec<tokenizers::EncodeInput> = pairs
            .iter()
            .map(|&(q, c)| match self.order {
                PairOrder::QuestionContext => (q, c).into(),
                PairOrder::ContextQuestion => (c, q).into(),
            })
            .collect();
        let encodings = self
            .untruncated
            .encode_batch(inputs, true)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(encodings.iter().map(tokenizers::Encoding::len).collect())
    }
}

/// Which text of a pair a model reads first: it must be the order it was trained with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairOrder {
    /// `[CLS] question [SEP] context [SEP]`, context truncated first: models trained here.
    #[default]
    QuestionContext,
    /// `[CLS] context [SEP] question [SEP]`, longest first: models fine-tuned by the Python
    /// Clarity (`tokenizer(context, question, truncation=True)`).
    ContextQuestion,
}

/// A `tokenizer.json` set up for pair classification.
#[derive(Clone)]
pub struct PairTokenizer {
    /// Truncates the context only.
    context_first: Tokenizer,
    /// Fallback when the question alone is longer than `max_length`.
    longest_first: Tokenizer,
    /// Neither truncates nor pads: measures pairs for [`EncodePairs::token_counts`].
    untruncated: Tokenizer,
    max_length: usize,
    order: PairOrder,
    /// `data_config.input`, when set: replaces `order` and the context-first cut.
    layout: Option<InputLayout>,
}

impl std::fmt::Debug for PairTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairTokenizer")
            .field("max_length", &self.max_length)
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

/// Tokens a pair needs beside its text (`[CLS] q [SEP] c [SEP]`, `<s> q </s></s> c </s>`).
const MIN_LENGTH: usize = 8;

impl PairTokenizer {
    /// Load `path`, overriding whatever truncation and padding the file carries.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self, TokenizeError> {
        Self::new(read_tokenizer(path)?, max_length).map_err(|message| TokenizeError::Load {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Set up `tokenizer` for pairs of at most `max_length` tokens.
    pub fn new(tokenizer: Tokenizer, max_length: usize) -> Result<Self, String> {
        if max_length < MIN_LENGTH {
            return Err(format!(
                "max_length {max_length} is too short (at least {MIN_LENGTH})"
            ));
        }
        let padding = padding_params(&tokenizer);
        let configure = |strategy| -> Result<Tokenizer, String> {
            let mut t = tokenizer.clone();
            t.with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy,
                stride: 0,
            }))
            .map_err(|e| e.to_string())?;
            t.with_padding(Some(padding.clone()));
            Ok(t)
        };
        let mut untruncated = tokenizer.clone();
        untruncated
            .with_truncation(None)
            .map_err(|e| e.to_string())?;
        untruncated.with_padding(None);
        Ok(Self {
            context_first: configure(TruncationStrategy::OnlySecond)?,
            longest_first: configure(TruncationStrategy::LongestFirst)?,
            untruncated,
            max_length,
            order: PairOrder::default(),
            layout: None,
        })
    }

    /// Build inputs by `config` (parts, order, truncation) instead of (question, context).
    pub fn with_input(mut self, config: Option<InputConfig>) -> Result<Self, String> {
        self.layout = match config {
            None => None,
            Some(config) => {
                // The pad id chosen in `new` (the file's own, or the usual names).
                let pad_id = self.context_first.get_padding().map_or(0, |p| p.pad_id);
                Some(InputLayout::new(
                    &self.untruncated,
                    config,
                    self.max_length,
                    pad_id,
                )?)
            }
        };
        Ok(self)
    }

    /// The input construction, when `data_config.input` set one.
    pub fn input(&self) -> Option<&InputConfig> {
        self.layout.as_ref().map(InputLayout::config)
    }

    /// Feed pairs in `order` instead of (question, context).
    pub fn with_order(mut self, order: PairOrder) -> Self {
        self.order = order;
        self
    }

    /// The order pairs are fed in.
    pub fn order(&self) -> PairOrder {
        self.order
    }

    /// The longest pair, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.context_first.get_vocab_size(true)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.context_first.token_to_id(token)
    }

    /// The underlying tokenizer (configured for context-first truncation).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.context_first
    }

    /// Encode `pairs`, padded to the longest in the batch.
    pub fn encode_pairs<S: AsRef<str>>(&self, pairs: &[(S, S)]) -> Result<Encoded, TokenizeError> {
        if let Some(layout) = &self.layout {
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(q, c)| (q.as_ref(), c.as_ref()))
                .collect();
            return layout.encode(&pairs);
        }
        let inputs: Vec<tokenizers::EncodeInput> = pairs
            .iter()
            .map(|(q, c)| match self.order {
                PairOrder::QuestionContext => (q.as_ref(), c.as_ref()).into(),
                PairOrder::ContextQuestion => (c.as_ref(), q.as_ref()).into(),
            })
            .collect();
        let first_try = match self.order {
            PairOrder::QuestionContext => self.context_first.encode_batch(inputs.clone(), true),
            PairOrder::ContextQuestion => self.longest_first.encode_batch(inputs.clone(), true),
        };
        let encodings = match first_try {
            Ok(encodings) => encodings,
            // OnlySecond refuses pairs whose question alone is too long.
            Err(_) => self
                .longest_first
                .encode_batch(inputs, true)
                .map_err(|e| TokenizeError::Encode(e.to_string()))?,
        };
        let batch = encodings.len();
        let seq = encodings.first().map_or(0, |e| e.len());
        let mut out = Encoded {
            batch,
            seq,
            input_ids: Vec::with_capacity(batch * seq),
            attention_mask: Vec::with_capacity(batch * seq),
            token_type_ids: Vec::with_capacity(batch * seq),
        };
        for e in &encodings {
            if e.len() != seq {
                return Err(TokenizeError::Encode(format!(
                    "padding gave rows of {} and {seq} tokens",
                    e.len()
                )));
            }
            out.input_ids
                .extend(e.get_ids().iter().map(|&x| i64::from(x)));
            out.attention_mask
                .extend(e.get_attention_mask().iter().map(|&x| i64::from(x)));
            out.token_type_ids
                .extend(e.get_type_ids().iter().map(|&x| i64::from(x)));
        }
        Ok(out)
    }
}

/// Pad to the longest in the batch with the file's pad token (or the usual names for it).
fn padding_params(tokenizer: &Tokenizer) -> PaddingParams {
    let (pad_id, pad_token) = match tokenizer.get_padding() {
        Some(p) => (p.pad_id, p.pad_token.clone()),
        None => ["[PAD]", "<pad>", "<|endoftext|>"]
            .iter()
            .find_map(|t| tokenizer.token_to_id(t).map(|id| (id, t.to_string())))
            .unwrap_or((0, "[PAD]".to_string())),
    };
    PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        direction: PaddingDirection::Right,
        pad_to_multiple_of: None,
        pad_id,
        pad_type_id: 0,
        pad_token,
    }
}
