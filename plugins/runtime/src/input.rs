//! `data_config.input` for encoders: a pair's texts cut to their budgets and laid out the
//! way the tokenizer lays out a pair.
//!
//! The first part is the first segment; the others form the second segment, separated by
//! the tokenizer's own pair separator (`[SEP]` for BERT, `</s></s>` for RoBERTa). The
//! special tokens and their type ids are learnt from the tokenizer's post-processor, so any
//! `tokenizer.json` works. When the whole is longer than `max_length`, the budget left after
//! the special tokens is shared "longest first" (each part capped by its own budget), and
//! each part is cut by its own truncation: its first, last, or first and last tokens.

use crate::tokenize::{Encoded, TokenizeError};
use clarity_sdk::input::{InputConfig, InputPart, Truncation};
use tokenizers::Tokenizer;

/// Special tokens around and between segments, with their type ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Template {
    prefix: Vec<(u32, u32)>,
    middle: Vec<(u32, u32)>,
    suffix: Vec<(u32, u32)>,
    /// Type id of the first segment's tokens.
    first_type: u32,
    /// Type id of the second segment's tokens.
    second_type: u32,
}

impl Template {
    /// Learn the template from how `tokenizer` encodes `("a", "b")` (or `"a"` alone).
    fn learn(tokenizer: &Tokenizer, pair: bool) -> Result<Self, String> {
        let encoding = match pair {
            true => tokenizer.encode(("a", "b"), true),
            false => tokenizer.encode("a", true),
        }
        .map_err(|e| e.to_string())?;
        let mut template = Template::default();
        let mut seen = None;
        for ((&id, &type_id), sequence) in encoding
            .get_ids()
            .iter()
            .zip(encoding.get_type_ids())
            .zip(encoding.get_sequence_ids())
        {
            match sequence {
                Some(0) => {
                    template.first_type = type_id;
                    seen = Some(0);
                }
                Some(_) => {
                    template.second_type = type_id;
                    seen = Some(1);
                }
                None => match seen {
                    None => template.prefix.push((id, type_id)),
                    Some(0) if pair => template.middle.push((id, type_id)),
                    Some(_) => template.suffix.push((id, type_id)),
                },
            }
        }
        if seen.is_none() {
            return Err("the tokenizer dropped the probe text \"a\"".into());
        }
        Ok(template)
    }
}

/// Builds model inputs from pairs according to a [`InputConfig`].
#[derive(Clone)]
pub struct InputLayout {
    config: InputConfig,
    /// Encodes part texts without special tokens, truncation or padding.
    plain: Tokenizer,
    single: Template,
    pair: Template,
    max_length: usize,
    pad_id: u32,
}

impl std::fmt::Debug for InputLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputLayout")
            .field("config", &self.config)
            .field("max_length", &self.max_length)
            .finish()
    }
}

/// One pair's parts as token ids, before cutting.
type PartIds = Vec<Vec<u32>>;

impl InputLayout {
    /// Set up `config` for `tokenizer` (its own truncation and padding are ignored).
    pub fn new(
        tokenizer: &Tokenizer,
        config: InputConfig,
        max_length: usize,
        pad_id: u32,
    ) -> Result<Self, String> {
        if let Some((field, message)) = config.problem() {
            return Err(format!("data_config.input.{field}: {message}"));
        }
        let mut plain = tokenizer.clone();
        plain.with_truncation(None).map_err(|e| e.to_string())?;
        plain.with_padding(None);
        let layout = Self {
            single: Template::learn(&plain, false)?,
            pair: Template::learn(&plain, true)?,
            plain,
            config,
            max_length,
            pad_id,
        };
        let fixed = layout.special_tokens(layout.config.parts.len());
        if fixed + layout.config.parts.len() > max_length {
            return Err(format!(
                "max_length {max_length} leaves no room for {} parts ({fixed} special tokens)",
                layout.config.parts.len()
            ));
        }
        Ok(layout)
    }

    /// The configuration.
    pub fn config(&self) -> &InputConfig {
        &self.config
    }

    /// Special tokens in an input of `parts` non-empty parts after the first.
    fn special_tokens(&self, parts: usize) -> usize {
        let t = if parts <= 1 { &self.single } else { &self.pair };
        let separators = parts.saturating_sub(2) * self.pair.middle.len();
        t.prefix.len() + t.middle.len() + t.suffix.len() + separators
    }

    /// Each pair's part texts as token ids.
    fn part_ids(&self, pairs: &[(&str, &str)]) -> Result<Vec<PartIds>, TokenizeError> {
        let parts = self.config.parts.len();
        let texts: Vec<&str> = pairs
            .iter()
            .flat_map(|&(q, c)| self.config.texts(q, c))
            .collect();
        let encodings = self
            .plain
            .encode_batch(texts, false)
            .map_err(|e| TokenizeError::Encode(e.to_string()))?;
        Ok(encodings
            .chunks(parts.max(1))
            .map(|row| row.iter().map(|e| e.get_ids().to_vec()).collect())
            .collect())
    }

    /// Special tokens plus parts, for a pair whose parts have these lengths. Empty parts after
    /// the first are left out together with their separator.
    fn parts_present(lengths: &[usize]) -> usize {
        1 + lengths.iter().skip(1).filter(|&&n| n > 0).count()
    }

    /// One pair's token ids and type ids, cut to `max_length`.
    fn assemble(&self, ids: &PartIds) -> (Vec<u32>, Vec<u32>) {
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let present = Self::parts_present(&lengths);
        let budget = self.max_length.saturating_sub(self.special_tokens(present));
        let demands: Vec<usize> = self
            .config
            .parts
            .iter()
            .zip(&lengths)
            .map(|(part, &n)| part.cap().map_or(n, |cap| n.min(cap)))
            .collect();
        let keep = allocate(&demands, budget);
        let template = if present <= 1 {
            &self.single
        } else {
            &self.pair
        };
        let mut out_ids = Vec::with_capacity(self.max_length);
        let mut out_types = Vec::with_capacity(self.max_length);
        push_specials(&mut out_ids, &mut out_types, &template.prefix);
        for (i, ((part, part_ids), &n)) in self.config.parts.iter().zip(ids).zip(&keep).enumerate()
        {
            if i > 0 && part_ids.is_empty() {
                continue;
            }
            if i > 0 {
                // Between the first segment and the second, and between parts of the second.
                push_specials(&mut out_ids, &mut out_types, &self.pair.middle);
            }
            let kept = cut(part, part_ids, n);
            let type_id = if i == 0 {
                template.first_type
            } else {
                template.second_type
            };
            out_types.extend(std::iter::repeat_n(type_id, kept.len()));
            out_ids.extend(kept);
        }
        push_specials(&mut out_ids, &mut out_types, &template.suffix);
        (out_ids, out_types)
    }

    /// Encode `pairs`, right-padded to the longest in the batch.
    pub fn encode(&self, pairs: &[(&str, &str)]) -> Result<Encoded, TokenizeError> {
        let rows: Vec<(Vec<u32>, Vec<u32>)> = self
            .part_ids(pairs)?
            .iter()
            .map(|ids| self.assemble(ids))
            .collect();
        let seq = rows.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let mut out = Encoded {
            batch: rows.len(),
            seq,
            input_ids: Vec::with_capacity(rows.len() * seq),
            attention_mask: Vec::with_capacity(rows.len() * seq),
            token_type_ids: Vec::with_capacity(rows.len() * seq),
        };
        for (ids, types) in &rows {
            let pad = seq - ids.len();
            out.input_ids.extend(ids.iter().map(|&x| i64::from(x)));
            out.input_ids
                .extend(std::iter::repeat_n(i64::from(self.pad_id), pad));
            out.attention_mask.extend(std::iter::repeat_n(1, ids.len()));
            out.attention_mask.extend(std::iter::repeat_n(0, pad));
            out.token_type_ids
                .extend(types.iter().map(|&x| i64::from(x)));
            out.token_type_ids.extend(std::iter::repeat_n(0, pad));
        }
        Ok(out)
    }

    /// Each pair's length in tokens before any part is cut (special tokens included).
    pub fn token_counts(&self, pairs: &[(&str, &str)]) -> Result<Vec<usize>, TokenizeError> {
        Ok(self
            .part_ids(pairs)?
            .iter()
            .map(|ids| {
                let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
                lengths.iter().sum::<usize>() + self.special_tokens(Self::parts_present(&lengths))
            })
            .collect())
    }
}

fn push_specials(ids: &mut Vec<u32>, types: &mut Vec<u32>, specials: &[(u32, u32)]) {
    for &(id, t) in specials {
        ids.push(id);
        types.push(t);
    }
}

/// `keep` of `ids`, chosen by the part's truncation.
fn cut(part: &InputPart, ids: &[u32], keep: usize) -> Vec<u32> {
    if keep >= ids.len() {
        return ids.to_vec();
    }
    match part.truncation {
        Truncation::Head => ids[..keep].to_vec(),
        Truncation::Tail => ids[ids.len() - keep..].to_vec(),
        Truncation::HeadTail => {
            let tail = part.tail_share(keep);
            let head = keep - tail;
            ids[..head]
                .iter()
                .chain(&ids[ids.len() - tail..])
                .copied()
                .collect()
        }
    }
}

/// Share `budget` tokens among parts wanting `demands`: everything when it fits, otherwise
/// longest first (the shortest keep all they want while that is below an equal share).
pub fn allocate(demands: &[usize], budget: usize) -> Vec<usize> {
    if demands.iter().sum::<usize>() <= budget {
        return demands.to_vec();
    }
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| demands[i]);
    let mut out = vec![0; demands.len()];
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (demands.len() - k);
        out[i] = demands[i].min(share);
        left -= out[i];
    }
    // Rounding leaves at most a few tokens: give them to the parts still cut, longest first.
    for &i in order.iter().rev() {
        if left == 0 {
            break;
        }
        let more = (demands[i] - out[i]).min(left);
        out[i] += more;
        left -= more;
    }
    out
}

#[cfg(test)]
mod tests;
