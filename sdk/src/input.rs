//! `data_config.input`: how a (question, context) pair becomes a model's input.
//!
//! The context can be split at a marker into the text before it (`prompt`) and after it
//! (`answer`); `parts` chooses which texts go in and in which order, each with its own
//! truncation (`head`, `tail`, `head_tail`) and token budget. Plugins save this with the
//! trained model so serving builds a request exactly as training built an example.
//!
//! ```yaml
//! data_config:
//!   input:
//!     answer_marker: "\nA:"
//!     parts:
//!       - {text: question, max_tokens: 64}
//!       - {text: answer, truncation: head_tail, head: 96, tail: 160}
//! ```

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// `data_config.input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Splits the context at its first occurrence: the text before is `prompt`, the text
    /// after is `answer`. A context without it is all `answer`. Needed by `prompt`/`answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_marker: Option<String>,
    /// The texts the model reads, in order. A part is a name (`question`) or a map
    /// (`{text: answer, truncation: tail, max_tokens: 200}`).
    pub parts: Vec<InputPart>,
}

/// One text of the input and how it is cut when the whole does not fit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputPart {
    /// Which text.
    pub text: PartText,
    /// Which tokens are kept when the part is cut.
    pub truncation: Truncation,
    /// At most this many of the part's tokens (for `head_tail`: `head` + `tail` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<usize>,
    /// `head_tail`: tokens kept from the start (with `tail`, also the cut's proportions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<usize>,
    /// `head_tail`: tokens kept from the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<usize>,
}

/// A text of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartText {
    /// The question field.
    Question,
    /// The whole context field.
    Context,
    /// The context before `answer_marker` (empty when the marker is absent).
    Prompt,
    /// The context after `answer_marker` (all of it when the marker is absent).
    Answer,
}

impl PartText {
    /// The name used in `models.yaml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Question => "question",
            Self::Context => "context",
            Self::Prompt => "prompt",
            Self::Answer => "answer",
        }
    }
}

/// Which tokens of a part survive a cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// The first tokens.
    #[default]
    Head,
    /// The last tokens.
    Tail,
    /// The first and the last (Sun et al. 2019: best for long texts).
    HeadTail,
}

impl InputPart {
    /// A part kept from its start, with no budget of its own.
    pub fn head(text: PartText) -> Self {
        Self {
            text,
            truncation: Truncation::Head,
            max_tokens: None,
            head: None,
            tail: None,
        }
    }

    /// The most tokens this part may keep, if it has a budget of its own.
    pub fn cap(&self) -> Option<usize> {
        match (self.head, self.tail) {
            (Some(h), Some(t)) => Some(h + t),
            _ => self.max_tokens,
        }
    }

    /// Of `keep` tokens kept by a `head_tail` cut, how many come from the end: the
    /// configured `head`:`tail` proportion, half when none is given.
    pub fn tail_share(&self, keep: usize) -> usize {
        match (self.head, self.tail) {
            (Some(h), Some(t)) if h + t > 0 => {
                let tail = (keep as u128 * t as u128 / (h + t) as u128) as usize;
                tail.min(keep)
            }
            _ => keep / 2,
        }
    }
}

impl InputConfig {
    /// What is wrong with this configuration: the field under `data_config.input` (e.g.
    /// `parts[1].head`) and why, or `None`.
    pub fn problem(&self) -> Option<(String, String)> {
        let at = |field: String, message: &str| Some((field, message.to_string()));
        if self.parts.is_empty() {
            return at(
                "parts".into(),
                "list at least one text (question, context, prompt, answer)",
            );
        }
        for (i, part) in self.parts.iter().enumerate() {
            let field = |f: &str| format!("parts[{i}].{f}");
            if self.parts[..i].iter().any(|p| p.text == part.text) {
                return at(field("text"), "this text is already listed");
            }
            let problem = match (part.truncation, part.head, part.tail) {
                (Truncation::HeadTail, Some(_), Some(_)) if part.max_tokens.is_some() => {
                    Some(("max_tokens", "give head and tail, or max_tokens, not both"))
                }
                (Truncation::HeadTail, Some(_), None) | (Truncation::HeadTail, None, Some(_)) => {
                    Some(("head", "head_tail needs both head and tail (or neither)"))
                }
                (Truncation::Head | Truncation::Tail, Some(_), _)
                | (Truncation::Head | Truncation::Tail, _, Some(_)) => Some((
                    "truncation",
                    "head and tail belong to truncation: head_tail; use max_tokens",
                )),
                _ if part.cap() == Some(0) => {
                    Some(("max_tokens", "a budget of 0 tokens drops the part"))
                }
                _ => None,
            };
            if let Some((key, message)) = problem {
                return at(field(key), message);
            }
        }
        let split = self
            .parts
            .iter()
            .any(|p| matches!(p.text, PartText::Prompt | PartText::Answer));
        match &self.answer_marker {
            None if split => at(
                "answer_marker".into(),
                "prompt and answer are the context split at a marker: set one (e.g. \"\\nA:\")",
            ),
            Some(m) if m.is_empty() => at("answer_marker".into(), "must not be empty"),
            _ => None,
        }
    }

    /// The texts of `parts`, in order, taken from one pair.
    pub fn texts<'a>(&self, question: &'a str, context: &'a str) -> Vec<&'a str> {
        let (prompt, answer) = match self.answer_marker.as_deref() {
            Some(marker) if !marker.is_empty() => match context.find(marker) {
                Some(at) => (&context[..at], &context[at + marker.len()..]),
                None => ("", context),
            },
            _ => ("", context),
        };
        self.parts
            .iter()
            .map(|p| match p.text {
                PartText::Question => question.trim(),
                PartText::Context => context.trim(),
                PartText::Prompt => prompt.trim(),
                PartText::Answer => answer.trim(),
            })
            .collect()
    }
}

// A part is either a bare name or a map; a visitor (rather than an untagged enum) keeps
// serde's own error for a wrong key or value, so the host can name the field.
impl<'de> Deserialize<'de> for InputPart {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PartVisitor;

        impl<'de> Visitor<'de> for PartVisitor {
            type Value = InputPart;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a text name (question, context, prompt, answer) or a map with `text`")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<InputPart, E> {
                let text = PartText::deserialize(de::value::StrDeserializer::<E>::new(name))?;
                Ok(InputPart::head(text))
            }

            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<InputPart, M::Error> {
                InputPartMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(|m| {
                    InputPart {
                        text: m.text,
                        truncation: m.truncation,
                        max_tokens: m.max_tokens,
                        head: m.head,
                        tail: m.tail,
                    }
                })
            }
        }

        deserializer.deserialize_any(PartVisitor)
    }
}

/// The map form of [`InputPart`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputPartMap {
    text: PartText,
    #[serde(default)]
    truncation: Truncation,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    head: Option<usize>,
    #[serde(default)]
    tail: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<InputConfig, String> {
        serde_json::from_value(yaml_to_json(yaml)).map_err(|e| e.to_string())
    }

    // The SDK has no YAML parser; the tests write JSON.
    fn yaml_to_json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("test input is JSON")
    }

    #[test]
    fn parts_are_names_or_maps() {
        let c = parse(
            r#"{"answer_marker": "\nA:", "parts": ["question",
                {"text": "answer", "truncation": "head_tail", "head": 64, "tail": 192}]}"#,
        )
        .unwrap();
        assert_eq!(c.parts[0], InputPart::head(PartText::Question));
        assert_eq!(c.parts[1].truncation, Truncation::HeadTail);
        assert_eq!(c.parts[1].cap(), Some(256));
        assert_eq!(c.parts[1].tail_share(100), 75);
        assert_eq!(c.problem(), None);
    }

    #[test]
    fn wrong_names_and_keys_are_refused() {
        assert!(parse(r#"{"parts": ["questions"]}"#)
            .unwrap_err()
            .contains("unknown variant `questions`"));
        assert!(parse(r#"{"parts": [{"text": "answer", "keep": 3}]}"#)
            .unwrap_err()
            .contains("unknown field `keep`"));
    }

    #[test]
    fn problems_name_the_field() {
        let field = |json: &str| parse(json).unwrap().problem().unwrap_or_default().0;
        assert_eq!(field(r#"{"parts": ["answer"]}"#), "answer_marker");
        assert_eq!(field(r#"{"parts": []}"#), "parts");
        assert_eq!(
            field(r#"{"parts": ["question", "question"]}"#),
            "parts[1].text"
        );
        assert_eq!(
            field(r#"{"parts": [{"text": "context", "head": 3}]}"#),
            "parts[0].truncation"
        );
        assert_eq!(
            field(r#"{"parts": [{"text": "context", "truncation": "head_tail", "tail": 3}]}"#),
            "parts[0].head"
        );
        assert_eq!(
            field(r#"{"parts": ["question", {"text": "context", "max_tokens": 0}]}"#),
            "parts[1].max_tokens"
        );
    }

    #[test]
    fn the_context_splits_at_the_first_marker() {
        let c = parse(r#"{"answer_marker": "\nA:", "parts": ["prompt", "answer", "question"]}"#)
            .unwrap();
        assert_eq!(
            c.texts(" why? ", "Q: So?\nA: Yes.\nA: No."),
            vec!["Q: So?", "Yes.\nA: No.", "why?"]
        );
        // No marker: all answer, no prompt.
        assert_eq!(c.texts("q", "just text"), vec!["", "just text", "q"]);
    }
}
