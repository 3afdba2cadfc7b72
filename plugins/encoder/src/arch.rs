//! Which encoder a `config.json` describes, in the terms the model and the exporter share.
//!
//! BERT (and MiniLM), RoBERTa (and XLM-RoBERTa, CamemBERT) and DistilBERT are all post-norm
//! transformer encoders; they differ in names, position ids, segment embeddings and the
//! classification head. [`Arch`] holds those differences so the candle model and the ONNX
//! exporter are written once.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;

/// The families this plugin knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT, MiniLM: absolute positions from 0, segment embeddings, tanh pooler head.
    Bert,
    /// RoBERTa, XLM-RoBERTa: positions counted past the padding id, a dense+tanh head.
    Roberta,
    /// DistilBERT: no segment embeddings, a dense+ReLU head.
    DistilBert,
}

/// `model_type` values accepted, and their family.
pub const SUPPORTED: &[(&str, Family)] = &[
    ("bert", Family::Bert),
    ("roberta", Family::Roberta),
    ("xlm-roberta", Family::Roberta),
    ("camembert", Family::Roberta),
    ("distilbert", Family::DistilBert),
];

/// Which vector of the last hidden states the classification head reads
/// (`model_config.options.pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The first token's (`[CLS]`, `<s>`), as transformers' `*ForSequenceClassification`.
    #[default]
    Cls,
    /// The mean over the real tokens (padding left out), as sentence-transformers models
    /// such as all-MiniLM-L6-v2 were trained to be read.
    Mean,
}

impl Pooling {
    /// The `pooling` option (`cls` or `mean`; unset: `None`, what the model's `config.json`
    /// says, and `cls` when it says nothing).
    pub fn from_options(
        options: &std::collections::BTreeMap<String, Value>,
    ) -> Result<Option<Self>, String> {
        match options.get("pooling") {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some("cls") => Ok(Some(Self::Cls)),
                Some("mean") => Ok(Some(Self::Mean)),
                _ => Err(format!(
                    "model_config.options.pooling must be `cls` (the first token, the default) \
                     or `mean` (the mean over real tokens), not {v}"
                )),
            },
        }
    }
}

/// The `config.json` key that records mean pooling (transformers ignores it and reads the
/// first token).
pub const POOLING_KEY: &str = "clarity_pooling";

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Exact GELU, `x * Φ(x)` via erf.
    Gelu,
    /// ReLU.
    Relu,
}

/// Everything about an encoder's shape that training and export need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// The family.
    pub family: Family,
    /// `model_type` as written in `config.json`.
    pub model_type: String,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_layers: usize,
    /// Attention heads per layer.
    pub num_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Rows of the position embedding.
    pub max_positions: usize,
    /// Rows of the segment embedding (0: none).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Padding token id (RoBERTa positions start after it).
    pub pad_token_id: usize,
    /// Dropout on hidden states.
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attention_dropout: f32,
    /// Dropout before the classifier.
    pub classifier_dropout: f32,
    /// What the head reads (not in `config.json`: the entry's option; absent in older
    /// `encoder_meta.json` files, which were all `cls`).
    #[serde(default)]
    pub pooling: Pooling,
}

/// Why a `config.json` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The file could not be read or is not JSON.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// `model_type` is missing or not one we build.
    #[error("{path}: model_type {found:?} is not supported by the encoder plugin (supported: {supported})")]
    Unsupported {
        /// The file.
        path: String,
        /// What it says.
        found: String,
        /// The list we support.
        supported: String,
    },
    /// A required field is missing or of the wrong type.
    #[error("{path}: field `{field}` {problem}")]
    Field {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

impl Arch {
    /// Read `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ArchError> {
        let text = std::fs::read_to_string(path).map_err(|e| ArchError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| ArchError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&value, &path.display().to_string())
    }

    /// Interpret a parsed `config.json`; `origin` names it in errors.
    pub fn from_json(config: &Value, origin: &str) -> Result<Self, ArchError> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let family = SUPPORTED
            .iter()
            .find(|(name, _)| *name == model_type)
            .map(|(_, family)| *family)
            .ok_or_else(|| ArchError::Unsupported {
                path: origin.to_string(),
                found: model_type.clone(),
                supported: SUPPORTED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let fields = Fields { config, origin };
        match family {
            Family::Bert | Family::Roberta => {
                if let Some(kind) = config
                    .get("position_embedding_type")
                    .and_then(Value::as_str)
                {
                    if kind != "absolute" {
                        return Err(fields.problem(
                            "position_embedding_type",
                            format!("is {kind:?}; only \"absolute\" is supported"),
                        ));
                    }
                }
                let hidden_dropout = fields.float_or("hidden_dropout_prob", 0.1)?;
                Ok(Self {
                    family,
                    model_type,
                    vocab_size: fields.usize("vocab_size")?,
                    hidden_size: fields.usize("hidden_size")?,
                    num_layers: fields.usize("num_hidden_layers")?,
                    num_heads: fields.usize("num_attention_heads")?,
                    intermediate_size: fields.usize("intermediate_size")?,
                    max_positions: fields.usize("max_position_embeddings")?,
                    type_vocab_size: fields.usize_or("type_vocab_size", 2)?,
                    layer_norm_eps: f64::from(fields.float_or("layer_norm_eps", 1e-12)?),
                    activation: fields.activation("hidden_act", "gelu")?,
                    pad_token_id: fields.usize_or(
                        "pad_token_id",
                        if family == Family::Roberta { 1 } else { 0 },
                    )?,
                    hidden_dropout,
                    attention_dropout: fields.float_or("attention_probs_dropout_prob", 0.1)?,
                    classifier_dropout: fields.float_or("classifier_dropout", hidden_dropout)?,
                    pooling: Pooling::Cls,
                })
            }
            Family::DistilBert => Ok(Self {
                family,
                model_type,
                vocab_size: fields.usize("vocab_size")?,
                hidden_size: fields.usize("dim")?,
                num_layers: fields.usize("n_layers")?,
                num_heads: fields.usize("n_heads")?,
                intermediate_size: fields.usize("hidden_dim")?,
                max_positions: fields.usize("max_position_embeddings")?,
                type_vocab_size: 0,
                layer_norm_eps: 1e-12,
                activation: fields.activation("activation", "gelu")?,
                pad_token_id: fields.usize_or("pad_token_id", 0)?,
                hidden_dropout: fields.float_or("dropout", 0.1)?,
                attention_dropout: fields.float_or("attention_dropout", 0.1)?,
                classifier_dropout: fields.float_or("seq_classif_dropout", 0.2)?,
                pooling: Pooling::Cls,
            }),
        }
        .map(|mut arch| {
            // Written by `meta::write_hf_config` for a model trained here with mean pooling.
            if config.get(POOLING_KEY).and_then(Value::as_str) == Some("mean") {
                arch.pooling = Pooling::Mean;
            }
            arch
        })
        .and_then(|arch| arch.checked(origin))
    }

    fn checked(self, origin: &str) -> Result<Self, ArchError> {
        if self.num_heads == 0 || !self.hidden_size.is_multiple_of(self.num_heads) {
            return Err(ArchError::Field {
                path: origin.to_string(),
                field: "num_attention_heads".into(),
                problem: format!(
                    "({}) must divide the hidden size ({})",
                    self.num_heads, self.hidden_size
                ),
            });
        }
        Ok(self)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Whether the model reads segment ids (RoBERTa's single-row table needs none).
    pub fn uses_token_type_ids(&self) -> bool {
        self.type_vocab_size > 1
    }

    /// The longest sequence the position table allows (RoBERTa spends `pad + 1` rows).
    pub fn max_sequence(&self) -> usize {
        match self.family {
            Family::Roberta => self.max_positions.saturating_sub(self.pad_token_id + 1),
            _ => self.max_positions,
        }
    }
}

/// Typed reads from a `config.json` object with errors naming the field.
struct Fields<'a> {
    config: &'a Value,
    origin: &'a str,
}

impl Fields<'_> {
    fn problem(&self, field: &str, problem: impl Into<String>) -> ArchError {
        ArchError::Field {
            path: self.origin.to_string(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    fn usize(&self, field: &str) -> Result<usize, ArchError> {
        match self.config.get(field) {
            None | Some(Value::Null) => Err(self.problem(field, "is missing")),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.problem(field, format!("must be a whole number, not {v}"))),
        }
    }

    fn usize_or(&self, field: &str, default: usize) -> Result<usize, ArchError> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(_) => self.usize(field),
        }
    }

    fn float_or(&self, field: &str, default: f32) -> Result<f32, ArchError> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .map(|x| x as f32)
                .ok_or_else(|| self.problem(field, format!("must be a number, not {v}"))),
        }
    }

    fn activation(&self, field: &str, default: &str) -> Result<Activation, ArchError> {
        let name = match self.config.get(field) {
            None | Some(Value::Null) => default,
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.problem(field, format!("must be a string, not {v}")))?,
        };
        match name {
            "gelu" => Ok(Activation::Gelu),
            "relu" => Ok(Activation::Relu),
            other => Err(self.problem(
                field,
                format!("is {other:?}; supported activations: gelu, relu"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_minilm_style_bert() {
        let config = json!({"model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
            "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536,
            "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
            "layer_norm_eps": 1e-12, "pad_token_id": 0});
        let arch = Arch::from_json(&config, "config.json").unwrap();
        assert_eq!(arch.family, Family::Bert);
        assert_eq!(arch.head_dim(), 32);
        assert!(arch.uses_token_type_ids());
        assert_eq!(arch.max_sequence(), 512);
    }

    #[test]
    fn roberta_positions_start_after_padding() {
        let config = json!({"model_type": "xlm-roberta", "vocab_size": 100, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1});
        let arch = Arch::from_json(&config, "config.json").unwrap();
        assert_eq!(arch.family, Family::Roberta);
        assert_eq!(arch.max_sequence(), 512);
        assert!(!arch.uses_token_type_ids());
    }

    #[test]
    fn distilbert_names_and_no_segments() {
        let config = json!({"model_type": "distilbert", "vocab_size": 100, "dim": 8,
            "n_layers": 2, "n_heads": 2, "hidden_dim": 16, "max_position_embeddings": 64});
        let arch = Arch::from_json(&config, "config.json").unwrap();
        assert_eq!(arch.family, Family::DistilBert);
        assert!(!arch.uses_token_type_ids());
        assert_eq!(arch.num_layers, 2);
    }

    #[test]
    fn unsupported_types_and_bad_fields_are_named() {
        let err = Arch::from_json(&json!({"model_type": "gpt2"}), "m/config.json").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("m/config.json") && text.contains("gpt2"),
            "{text}"
        );
        assert!(text.contains("distilbert"), "{text}");
        let err = Arch::from_json(&json!({"model_type": "bert", "vocab_size": "x"}), "c.json")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`vocab_size` must be a whole number"),
            "{err}"
        );
        let err = Arch::from_json(
            &json!({"model_type": "bert", "vocab_size": 10, "hidden_size": 10,
                "num_hidden_layers": 1, "num_attention_heads": 3, "intermediate_size": 4,
                "max_position_embeddings": 8}),
            "c.json",
        )
        .unwrap_err();
        assert!(err.to_string().contains("must divide"), "{err}");
    }
}
