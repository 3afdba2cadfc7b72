//! Question/context pairs placed in a prompt template and tokenized for a decoder.
//!
//! The head reads the last real token, so the template's tail (`...Classification:`) must
//! survive truncation: the context is shortened (then, if need be, the question) at a token
//! boundary of its own text, never the prompt's end. Rows are right-padded.

use crate::slots::SlotPrompt;
use clarity_runtime::tokenize::{EncodePairs, Encoded, TokenizeError};
use clarity_sdk::input::InputConfig;
use tokenizers::Tokenizer;

/// The template when `model_config.prompt_template` is not set.
pub const DEFAULT_TEMPLATE: &str = "Question: {question}\n\nContext: {context}\n\nClassification:";

/// Fewest tokens a prompt may be cut to.
const MIN_LENGTH: usize = 8;

/// A tokenizer and a template with `{question}` and `{context}` slots.
#[derive(Clone)]
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    template: String,
    max_length: usize,
    pad_id: u32,
    /// `data_config.input`, when set: the template's slots are its parts.
    slots: Option<SlotPrompt>,
}

impl std::fmt::Debug for PromptTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptTokenizer")
            .field("template", &self.template)
            .field("max_length", &self.max_length)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl PromptTokenizer {
    /// Set up `tokenizer` (its own truncation and padding are removed) for `template`.
    pub fn new(
        tokenizer: Tokenizer,
        template: &str,
        max_length: usize,
        pad_id: u32,
    ) -> Result<Self, String> {
        Self::with_input(tokenizer, template, max_length, pad_id, None)
    }

    /// [`PromptTokenizer::new`] with the parts of `data_config.input` in the template's slots.
    pub fn with_input(
        mut tokenizer: Tokenizer,
        template: &str,
        max_length: usize,
        pad_id: u32,
        input: Option<InputConfig>,
    ) -> Result<Self, String> {
        let slots = input
            .map(|config| SlotPrompt::new(template, config))
            .transpose()?;
        if slots.is_none() {
            for slot in ["{question}", "{context}"] {
                if template.matches(slot).count() != 1 {
                    return Err(format!(
                        "model_config.prompt_template must hold {slot} exactly once: {template:?}"
                    ));
                }
            }
        }
        if max_length < MIN_LENGTH {
            return Err(format!(
                "max_length {max_length} is too short (at least {MIN_LENGTH})"
            ));
        }
        tokenizer.with_truncation(None).map_err(|e| e.to_string())?;
        tokenizer.with_padding(None);
        let this = Self {
            tokenizer,
            template: template.to_string(),
            max_length,
            pad_id,
            slots,
        };
        let empty = match &this.slots {
            Some(slots) => this.ids_of(&slots.render(&[]))?,
            None => this.ids("", "")?,
        };
        if empty.len() + 2 > max_length {
            return Err(format!(
                "the prompt template alone is {} tokens: raise max_length above {max_length}",
                empty.len()
            ));
        }
        Ok(this)
    }

    /// The template.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Longest prompt, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Size of the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The underlying tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The filled-in prompt.
    pub fn render(&self, question: &str, context: &str) -> String {
        if let Some(slots) = &self.slots {
            return slots.render(&slots.texts(question, context));
        }
        // Context first: a question containing "{context}" must stay literal.
        let (before, after) = self
            .template
            .split_once("{context}")
            .unwrap_or((self.template.as_str(), ""));
        format!(
            "{}{context}{}",
            before.replace("{question}", question),
            after.replace("{question}", question)
        )
    }

    /// The input construction, when `data_config.input` set one.
    pub fn input(&self) -> Option<&InputConfig> {
        self.slots.as_ref().map(SlotPrompt::config)
    }

    fn ids(&self, question: &str, context: &str) -> Result<Vec<u32>, String> {
        self.ids_of(&self.render(question, context))
    }

    fn ids_of(&self, prompt: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode(prompt, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| e.to_string())
    }

    /// `text` cut to about `keep` of its own tokens (at a token boundary).
    fn cut(&self, text: &str, keep: usize) -> Result<String, String> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| e.to_string())?;
        let offsets = encoding.get_offsets();
        if keep >= offsets.len() {
            return Ok(text.to_string());
        }
        // Offsets are byte positions into `text`; back off to a char boundary.
        let mut end = offsets.get(keep).map_or(text.len(), |o| o.0);
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        Ok(text[..end].to_string())
    }

    fn text_tokens(&self, text: &str) -> Result<usize, String> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.len())
            .map_err(|e| e.to_string())
    }

    /// Token ids of one pair, at most `max_length` long, the template's tail kept.
    pub fn encode_one(&self, question: &str, context: &str) -> Result<Vec<u32>, String> {
        if let Some(slots) = &self.slots {
            return slots.encode_one(&self.tokenizer, question, context, self.max_length);
        }
        let ids = self.ids(question, context)?;
        if ids.len() <= self.max_length {
            return Ok(ids);
        }
        let mut question = question.to_string();
        let mut context = context.to_string();
        // Cutting at a token boundary of the text alone can merge differently inside the
        // prompt: shrink by the excess until it fits (a few rounds at most).
        for _ in 0..8 {
            let ids = self.ids(&question, &context)?;
            let excess = match ids.len().checked_sub(self.max_length) {
                None | Some(0) => return Ok(ids),
                Some(n) => n,
            };
            let context_len = self.text_tokens(&context)?;
            if context_len > 0 {
                context = self.cut(&context, context_len.saturating_sub(excess))?;
            } else {
                let question_len = self.text_tokens(&question)?;
                question = self.cut(&question, question_len.saturating_sub(excess))?;
            }
        }
        let ids = self.ids(&question, &context)?;
        match ids.len() <= self.max_length {
            true => Ok(ids),
            // Should not happen; keep the tail (the head reads the last token).
            false => Ok(ids[ids.len() - self.max_length..].to_vec()),
        }
    }
}

impl EncodePairs for PromptTokenizer {
    fn encode(&self, pairs: &[(&str, &str)]) -> Result<Encoded, TokenizeError> {
        let rows: Vec<Vec<u32>> = pairs
            .iter()
            .map(|(q, c)| self.encode_one(q, c))
            .collect::<Result<_, _>>()
            .map_err(TokenizeError::Encode)?;
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = Encoded {
            batch: rows.len(),
            seq,
            input_ids: Vec::with_capacity(rows.len() * seq),
            attention_mask: Vec::with_capacity(rows.len() * seq),
            token_type_ids: vec![0; rows.len() * seq],
        };
        for row in &rows {
            out.input_ids.extend(row.iter().map(|&id| i64::from(id)));
            out.input_ids
                .extend(std::iter::repeat_n(i64::from(self.pad_id), seq - row.len()));
            out.attention_mask.extend(std::iter::repeat_n(1, row.len()));
            out.attention_mask
                .extend(std::iter::repeat_n(0, seq - row.len()));
        }
        Ok(out)
    }

    fn token_counts(&self, pairs: &[(&str, &str)]) -> Result<Vec<usize>, TokenizeError> {
        pairs
            .iter()
            .map(|(q, c)| match &self.slots {
                Some(slots) => slots.token_count(&self.tokenizer, q, c),
                None => self.ids(q, c).map(|ids| ids.len()),
            })
            .collect::<Result<_, _>>()
            .map_err(TokenizeError::Encode)
    }
}
