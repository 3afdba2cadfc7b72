//! `data_config.input` for decoders: the template names a slot for each part (`{question}`,
//! `{prompt}`, `{answer}`, `{context}`), and each part is cut by its own truncation and budget
//! so the template's tail (`Classification:`, which the head reads) always survives.

use clarity_runtime::input::allocate;
use clarity_sdk::input::{InputConfig, InputPart, PartText, Truncation};
use tokenizers::Tokenizer;

const ALL_TEXTS: [PartText; 4] = [
    PartText::Question,
    PartText::Context,
    PartText::Prompt,
    PartText::Answer,
];

/// The template when `data_config.input` is set and `model_config.prompt_template` is not: one
/// labelled line per part, in order.
pub fn default_template(config: &InputConfig) -> String {
    let mut out = String::new();
    for part in &config.parts {
        let title = match part.text {
            PartText::Question => "Question",
            PartText::Context => "Context",
            PartText::Prompt => "Interviewer",
            PartText::Answer => "Answer",
        };
        out.push_str(&format!("{title}: {{{}}}\n\n", part.text.name()));
    }
    out.push_str("Classification:");
    out
}

/// A piece of the template: literal text or the part at this index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(usize),
}

/// A template split at its slots, with the parts that fill them.
#[derive(Debug, Clone)]
pub struct SlotPrompt {
    config: InputConfig,
    pieces: Vec<Piece>,
}

impl SlotPrompt {
    /// Check that `template` has a slot for each part, once, and none for other texts.
    pub fn new(template: &str, config: InputConfig) -> Result<Self, String> {
        if let Some((field, message)) = config.problem() {
            return Err(format!("data_config.input.{field}: {message}"));
        }
        for text in ALL_TEXTS {
            let slot = format!("{{{}}}", text.name());
            let count = template.matches(&slot).count();
            let listed = config.parts.iter().any(|p| p.text == text);
            if listed && count != 1 {
                return Err(format!(
                    "model_config.prompt_template must hold {slot} exactly once (it is in \
                     data_config.input.parts): {template:?}"
                ));
            }
            if !listed && count > 0 {
                return Err(format!(
                    "model_config.prompt_template has {slot}, but data_config.input.parts does \
                     not list {}: add it there or take it out of the template",
                    text.name()
                ));
            }
        }
        // Split at the slots in the order they appear.
        let mut pieces = Vec::new();
        let mut rest = template;
        loop {
            let next = config
                .parts
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    rest.find(&format!("{{{}}}", p.text.name()))
                        .map(|at| (at, i, p.text.name().len() + 2))
                })
                .min();
            match next {
                Some((at, i, len)) => {
                    pieces.push(Piece::Text(rest[..at].to_string()));
                    pieces.push(Piece::Slot(i));
                    rest = &rest[at + len..];
                }
                None => {
                    pieces.push(Piece::Text(rest.to_string()));
                    break;
                }
            }
        }
        Ok(Self { config, pieces })
    }

    /// The configuration.
    pub fn config(&self) -> &InputConfig {
        &self.config
    }

    /// The parts' texts taken from one pair, in order.
    pub fn texts(&self, question: &str, context: &str) -> Vec<String> {
        self.config
            .texts(question, context)
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// The template filled with `texts` (one per part). Slots are filled in one pass, so a
    /// text containing `{answer}` stays literal.
    pub fn render(&self, texts: &[String]) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Slot(i) => texts.get(*i).map_or("", String::as_str),
            })
            .collect()
    }

    /// One pair's prompt as token ids, at most `max_length` long.
    pub fn encode_one(
        &self,
        tokenizer: &Tokenizer,
        question: &str,
        context: &str,
        max_length: usize,
    ) -> Result<Vec<u32>, String> {
        let ids = |texts: &[String]| -> Result<Vec<u32>, String> {
            tokenizer
                .encode(self.render(texts), true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| e.to_string())
        };
        let texts = self.texts(question, context);
        let whole = ids(&texts)?;
        if whole.len() <= max_length {
            return Ok(whole);
        }
        let empty = vec![String::new(); texts.len()];
        let overhead = ids(&empty)?.len();
        let encodings = texts
            .iter()
            .map(|t| {
                tokenizer
                    .encode(t.as_str(), false)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let demands: Vec<usize> = self
            .config
            .parts
            .iter()
            .zip(&encodings)
            .map(|(p, e)| p.cap().map_or(e.len(), |cap| e.len().min(cap)))
            .collect();
        let mut keep = allocate(&demands, max_length.saturating_sub(overhead));
        let mut last = whole;
        // Cutting at token boundaries of a text alone can merge differently inside the
        // prompt: take the excess off the longest part until it fits (a few rounds at most).
        for _ in 0..8 {
            let cut: Vec<String> = self
                .config
                .parts
                .iter()
                .zip(&texts)
                .zip(&encodings)
                .zip(&keep)
                .map(|(((part, text), e), &n)| cut_text(part, text, e.get_offsets(), n))
                .collect();
            last = ids(&cut)?;
            let Some(excess) = last.len().checked_sub(max_length).filter(|&n| n > 0) else {
                return Ok(last);
            };
            let Some(longest) = (0..keep.len()).max_by_key(|&i| keep[i]) else {
                break;
            };
            keep[longest] = keep[longest].saturating_sub(excess);
        }
        // Should not happen; keep the tail (the head reads the last token).
        Ok(last[last.len().saturating_sub(max_length)..].to_vec())
    }

    /// Each pair's prompt length in tokens before any cut.
    pub fn token_count(
        &self,
        tokenizer: &Tokenizer,
        question: &str,
        context: &str,
    ) -> Result<usize, String> {
        let texts = self.texts(question, context);
        tokenizer
            .encode(self.render(&texts), true)
            .map(|e| e.len())
            .map_err(|e| e.to_string())
    }
}

/// `text` cut to `keep` of its tokens (`offsets` are its tokens' byte ranges), at token
/// boundaries, by the part's truncation.
fn cut_text(part: &InputPart, text: &str, offsets: &[(usize, usize)], keep: usize) -> String {
    let n = offsets.len();
    if keep >= n {
        return text.to_string();
    }
    // Byte offsets are token boundaries; back off to a char boundary to be safe.
    let at = |i: usize| {
        let mut b = offsets.get(i).map_or(text.len(), |o| o.0).min(text.len());
        while b > 0 && !text.is_char_boundary(b) {
            b -= 1;
        }
        b
    };
    match part.truncation {
        Truncation::Head => text[..at(keep)].trim_end().to_string(),
        Truncation::Tail => text[at(n - keep)..].to_string(),
        Truncation::HeadTail => {
            let tail = part.tail_share(keep);
            let head = keep - tail;
            format!("{} {}", text[..at(head)].trim_end(), &text[at(n - tail)..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(parts: Vec<InputPart>) -> InputConfig {
        InputConfig {
            answer_marker: Some("\nA:".into()),
            parts,
        }
    }

    #[test]
    fn the_default_template_labels_each_part() {
        let c = config(vec![
            InputPart::head(PartText::Question),
            InputPart::head(PartText::Answer),
        ]);
        assert_eq!(
            default_template(&c),
            "Question: {question}\n\nAnswer: {answer}\n\nClassification:"
        );
        let p = SlotPrompt::new(&default_template(&c), c).unwrap();
        assert_eq!(
            p.render(&["q {answer}".into(), "a".into()]),
            "Question: q {answer}\n\nAnswer: a\n\nClassification:"
        );
    }

    #[test]
    fn templates_must_match_the_parts() {
        let c = config(vec![InputPart::head(PartText::Answer)]);
        let err = SlotPrompt::new("Q: {question} A: {answer}", c.clone()).unwrap_err();
        assert!(err.contains("does not list question"), "{err}");
        let err = SlotPrompt::new("no slot", c).unwrap_err();
        assert!(err.contains("{answer} exactly once"), "{err}");
    }

    #[test]
    fn cuts_keep_head_tail_or_both_at_token_boundaries() {
        let text = "one two three four five six";
        let offsets = [(0, 3), (4, 7), (8, 13), (14, 18), (19, 23), (24, 27)];
        let part = |truncation| InputPart {
            truncation,
            ..InputPart::head(PartText::Answer)
        };
        assert_eq!(
            cut_text(&part(Truncation::Head), text, &offsets, 2),
            "one two"
        );
        assert_eq!(
            cut_text(&part(Truncation::Tail), text, &offsets, 2),
            "five six"
        );
        assert_eq!(
            cut_text(&part(Truncation::HeadTail), text, &offsets, 4),
            "one two five six"
        );
        assert_eq!(cut_text(&part(Truncation::Head), text, &offsets, 9), text);
    }
}
