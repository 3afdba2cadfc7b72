//! The shape of a decoder LM, read from a Hugging Face `config.json` (or the equivalent the
//! GGUF reader builds from its metadata).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `model_type`s this plugin builds.
pub const SUPPORTED: &[&str] = &["llama", "qwen2"];

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The file could not be read or parsed.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An architecture the plugin does not build.
    #[error("{path}: model_type `{model_type}` is not supported by the lora plugin (supported: {})", SUPPORTED.join(", "))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Its `model_type`.
        model_type: String,
    },
    /// A required field is missing or has the wrong type.
    #[error("{path}: `{field}` is missing or not {expected}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The numbers do not fit together.
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
}

/// Decoder families. Llama covers SmolLM2, TinyLlama, Llama 2/3 and Mistral-style models
/// without sliding windows; Qwen2 is Llama with biases on the q/k/v projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama.
    Llama,
    /// Qwen2.
    Qwen2,
}

/// Everything the model, the exporter and the checkpoints need to know about the shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderArch {
    /// Family.
    pub family: Family,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Transformer layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// Rotary base.
    pub rope_theta: f64,
    /// Longest sequence the positions were trained for.
    pub max_positions: usize,
    /// Whether q, k and v projections have biases.
    pub attention_bias: bool,
    /// Padding token id, if the config names one.
    pub pad_token_id: Option<u32>,
    /// End-of-sequence token id.
    pub eos_token_id: Option<u32>,
}

impl DecoderArch {
    /// Read `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ArchError> {
        let text = std::fs::read_to_string(path).map_err(|e| ArchError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| ArchError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_value(&value, path)
    }

    /// Interpret a parsed config; `path` names it in errors.
    pub fn from_value(config: &Value, path: &Path) -> Result<Self, ArchError> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("(none)");
        let family = match model_type {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            other => {
                return Err(ArchError::Unsupported {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                })
            }
        };
        let size = |field: &'static str| -> Result<usize, ArchError> {
            config
                .get(field)
                .and_then(Value::as_u64)
                .filter(|&n| n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| ArchError::Field {
                    path: path.to_path_buf(),
                    field,
                    expected: "a positive whole number",
                })
        };
        let float = |field: &'static str, default: f64| -> f64 {
            config.get(field).and_then(Value::as_f64).unwrap_or(default)
        };
        // eos may be a list (Llama 3): the first one pads.
        let token = |field: &str| -> Option<u32> {
            let v = config.get(field)?;
            v.as_u64()
                .or_else(|| v.as_array()?.first()?.as_u64())
                .map(|n| n as u32)
        };
        let hidden_size = size("hidden_size")?;
        let num_heads = size("num_attention_heads")?;
        let num_kv_heads = match config.get("num_key_value_heads") {
            None | Some(Value::Null) => num_heads,
            Some(_) => size("num_key_value_heads")?,
        };
        let head_dim = match config.get("head_dim") {
            None | Some(Value::Null) => hidden_size / num_heads,
            Some(_) => size("head_dim")?,
        };
        let arch = Self {
            family,
            vocab_size: size("vocab_size")?,
            hidden_size,
            intermediate_size: size("intermediate_size")?,
            num_layers: size("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: float("rms_norm_eps", 1e-6),
            rope_theta: float("rope_theta", 10000.0),
            max_positions: size("max_position_embeddings").unwrap_or(2048),
            attention_bias: family == Family::Qwen2
                || config
                    .get("attention_bias")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            pad_token_id: token("pad_token_id"),
            eos_token_id: token("eos_token_id"),
        };
        arch.check(path)?;
        Ok(arch)
    }

    fn check(&self, path: &Path) -> Result<(), ArchError> {
        let problem = if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            Some(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_heads, self.num_kv_heads
            ))
        } else if !self.head_dim.is_multiple_of(2) {
            Some(format!(
                "head_dim {} is odd: rotary positions need pairs",
                self.head_dim
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(ArchError::Inconsistent {
                path: path.to_path_buf(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Query heads per key/value head.
    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Width of the query projection's output.
    pub fn q_width(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// Width of the key and value projections' output.
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// A Hugging Face `config.json` for this shape (for tiny test models and the exported
    /// folder).
    pub fn to_hf_config(&self) -> Value {
        serde_json::json!({
            "model_type": match self.family { Family::Llama => "llama", Family::Qwen2 => "qwen2" },
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_positions,
            "attention_bias": self.attention_bias,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smollm2() -> Value {
        serde_json::json!({
            "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
            "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
            "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
            "max_position_embeddings": 8192, "eos_token_id": 2
        })
    }

    #[test]
    fn reads_a_llama_config_and_derives_the_head_width() {
        let arch = DecoderArch::from_value(&smollm2(), Path::new("config.json")).unwrap();
        assert_eq!(arch.family, Family::Llama);
        assert_eq!(arch.head_dim, 64);
        assert_eq!(arch.group_size(), 3);
        assert_eq!(arch.kv_width(), 192);
        assert!(!arch.attention_bias);
        let again = DecoderArch::from_value(&arch.to_hf_config(), Path::new("x")).unwrap();
        assert_eq!(again, arch);
    }

    #[test]
    fn unsupported_types_and_bad_shapes_are_named() {
        let mut config = smollm2();
        config["model_type"] = "mamba".into();
        let err = DecoderArch::from_value(&config, Path::new("m/config.json")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("m/config.json")
                && text.contains("mamba")
                && text.contains("llama, qwen2"),
            "{text}"
        );
        let mut config = smollm2();
        config["num_key_value_heads"] = 4.into();
        let err = DecoderArch::from_value(&config, Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("multiple"), "{err}");
        let mut config = smollm2();
        config.as_object_mut().unwrap().remove("hidden_size");
        let err = DecoderArch::from_value(&config, Path::new("c")).unwrap_err();
        assert!(err.to_string().contains("`hidden_size`"), "{err}");
    }
}
