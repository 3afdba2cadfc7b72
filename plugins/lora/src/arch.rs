//! The shape of a decoder LM, read from a Hugging Face `config.json` (or the equivalent the
//! GGUF reader builds from its metadata).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `model_type`s this plugin builds.
pub const SUPPORTED: &[&str] = &["llama", "qwen2", "opt", "gpt2"];

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
/// without sliding windows; Qwen2 is Llama with biases on the q/k/v projections. OPT and GPT-2
/// are pre-LayerNorm decoders with learned absolute positions and a plain two-layer MLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Llama.
    Llama,
    /// Qwen2.
    Qwen2,
    /// OPT (`facebook/opt-*`).
    Opt,
    /// GPT-2.
    Gpt2,
}

impl Family {
    /// RMSNorm (Llama, Qwen2) rather than LayerNorm with a bias (OPT, GPT-2).
    pub fn rms_norm(self) -> bool {
        matches!(self, Self::Llama | Self::Qwen2)
    }

    /// Rotary positions (Llama, Qwen2) rather than a learned position table.
    pub fn rotary(self) -> bool {
        self.rms_norm()
    }

    /// SwiGLU MLP (gate, up, down) rather than up → activation → down.
    pub fn gated_mlp(self) -> bool {
        self.rms_norm()
    }

    /// Whether every linear layer has a bias (OPT, GPT-2).
    pub fn linear_bias(self) -> bool {
        !self.rms_norm()
    }

    /// The `model_type` of `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Opt => "opt",
            Self::Gpt2 => "gpt2",
        }
    }
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·sigmoid(x)` (SwiGLU's gate).
    Silu,
    /// `max(x, 0)` (OPT).
    Relu,
    /// GELU, tanh approximation (GPT-2's `gelu_new`).
    GeluTanh,
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
    /// Norm epsilon (RMSNorm or LayerNorm).
    #[serde(alias = "rms_norm_eps")]
    pub norm_eps: f64,
    /// The MLP's activation.
    #[serde(default = "silu")]
    pub activation: Activation,
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

fn silu() -> Activation {
    Activation::Silu
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
            "opt" => Family::Opt,
            "gpt2" => Family::Gpt2,
            other => {
                return Err(ArchError::Unsupported {
                    path: path.to_path_buf(),
                    model_type: other.to_string(),
                })
            }
        };
        let fields = Fields { config, path };
        let arch = match family {
            Family::Llama | Family::Qwen2 => fields.llama(family)?,
            Family::Opt => fields.opt()?,
            Family::Gpt2 => fields.gpt2()?,
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
        } else if self.num_heads * self.head_dim != self.hidden_size && !self.family.rotary() {
            Some(format!(
                "hidden size {} is not num_heads {} x head_dim {}",
                self.hidden_size, self.num_heads, self.head_dim
            ))
        } else if self.family.rotary() && !self.head_dim.is_multiple_of(2) {
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
    /// folder), in the family's own field names.
    pub fn to_hf_config(&self) -> Value {
        let activation = match self.activation {
            Activation::Silu => "silu",
            Activation::Relu => "relu",
            Activation::GeluTanh => "gelu_new",
        };
        match self.family {
            Family::Llama | Family::Qwen2 => serde_json::json!({
                "model_type": self.family.model_type(),
                "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads,
                "num_key_value_heads": self.num_kv_heads,
                "head_dim": self.head_dim,
                "rms_norm_eps": self.norm_eps,
                "rope_theta": self.rope_theta,
                "max_position_embeddings": self.max_positions,
                "attention_bias": self.attention_bias,
                "hidden_act": activation,
                "pad_token_id": self.pad_token_id,
                "eos_token_id": self.eos_token_id,
            }),
            Family::Opt => serde_json::json!({
                "model_type": "opt",
                "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size,
                "word_embed_proj_dim": self.hidden_size,
                "ffn_dim": self.intermediate_size,
                "num_hidden_layers": self.num_layers,
                "num_attention_heads": self.num_heads,
                "max_position_embeddings": self.max_positions,
                "do_layer_norm_before": true,
                "activation_function": activation,
                "layer_norm_eps": self.norm_eps,
                "pad_token_id": self.pad_token_id,
                "eos_token_id": self.eos_token_id,
            }),
            Family::Gpt2 => serde_json::json!({
                "model_type": "gpt2",
                "vocab_size": self.vocab_size,
                "n_embd": self.hidden_size,
                "n_inner": self.intermediate_size,
                "n_layer": self.num_layers,
                "n_head": self.num_heads,
                "n_positions": self.max_positions,
                "activation_function": activation,
                "layer_norm_epsilon": self.norm_eps,
                "pad_token_id": self.pad_token_id,
                "eos_token_id": self.eos_token_id,
            }),
        }
    }
}

/// Reads typed fields of a config, naming the file in errors.
struct Fields<'a> {
    config: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn size(&self, field: &'static str) -> Result<usize, ArchError> {
        self.config
            .get(field)
            .and_then(Value::as_u64)
            .filter(|&n| n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| ArchError::Field {
                path: self.path.to_path_buf(),
                field,
                expected: "a positive whole number",
            })
    }

    /// `field` when present and not null.
    fn size_or(&self, field: &'static str, default: usize) -> Result<usize, ArchError> {
        match self.config.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(_) => self.size(field),
        }
    }

    fn float(&self, field: &str, default: f64) -> f64 {
        self.config
            .get(field)
            .and_then(Value::as_f64)
            .unwrap_or(default)
    }

    fn flag(&self, field: &str, default: bool) -> bool {
        self.config
            .get(field)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    /// A token id; eos may be a list (Llama 3): the first one.
    fn token(&self, field: &str) -> Option<u32> {
        let v = self.config.get(field)?;
        v.as_u64()
            .or_else(|| v.as_array()?.first()?.as_u64())
            .map(|n| n as u32)
    }

    fn activation(&self, field: &str, default: &str) -> Result<Activation, ArchError> {
        let name = self
            .config
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or(default);
        match name {
            "silu" | "swish" => Ok(Activation::Silu),
            "relu" => Ok(Activation::Relu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            other => Err(ArchError::Inconsistent {
                path: self.path.to_path_buf(),
                message: format!(
                    "{field} `{other}` is not supported (silu, relu, gelu_new, gelu_pytorch_tanh)"
                ),
            }),
        }
    }

    fn llama(&self, family: Family) -> Result<DecoderArch, ArchError> {
        let hidden_size = self.size("hidden_size")?;
        let num_heads = self.size("num_attention_heads")?;
        Ok(DecoderArch {
            family,
            vocab_size: self.size("vocab_size")?,
            hidden_size,
            intermediate_size: self.size("intermediate_size")?,
            num_layers: self.size("num_hidden_layers")?,
            num_heads,
            num_kv_heads: self.size_or("num_key_value_heads", num_heads)?,
            head_dim: self.size_or("head_dim", hidden_size / num_heads)?,
            norm_eps: self.float("rms_norm_eps", 1e-6),
            activation: self.activation("hidden_act", "silu")?,
            rope_theta: self.float("rope_theta", 10000.0),
            max_positions: self.size_or("max_position_embeddings", 2048)?,
            attention_bias: family == Family::Qwen2 || self.flag("attention_bias", false),
            pad_token_id: self.token("pad_token_id"),
            eos_token_id: self.token("eos_token_id"),
        })
    }

    fn opt(&self) -> Result<DecoderArch, ArchError> {
        let hidden_size = self.size("hidden_size")?;
        let num_heads = self.size("num_attention_heads")?;
        // opt-350m projects embeddings in and out and normalises after each block.
        let unsupported = if self.size_or("word_embed_proj_dim", hidden_size)? != hidden_size {
            Some("word_embed_proj_dim differs from hidden_size (opt-350m's projections)")
        } else if !self.flag("do_layer_norm_before", true) {
            Some("do_layer_norm_before is false (opt-350m's post-norm blocks)")
        } else if !self.flag("enable_bias", true) {
            Some("enable_bias is false")
        } else {
            None
        };
        if let Some(what) = unsupported {
            return Err(ArchError::Inconsistent {
                path: self.path.to_path_buf(),
                message: format!("this OPT variant is not supported: {what}"),
            });
        }
        Ok(DecoderArch {
            family: Family::Opt,
            vocab_size: self.size("vocab_size")?,
            hidden_size,
            intermediate_size: self.size("ffn_dim")?,
            num_layers: self.size("num_hidden_layers")?,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: hidden_size / num_heads,
            norm_eps: self.float("layer_norm_eps", 1e-5),
            activation: self.activation("activation_function", "relu")?,
            rope_theta: 0.0,
            max_positions: self.size_or("max_position_embeddings", 2048)?,
            attention_bias: true,
            pad_token_id: self.token("pad_token_id"),
            eos_token_id: self.token("eos_token_id"),
        })
    }

    fn gpt2(&self) -> Result<DecoderArch, ArchError> {
        let hidden_size = self.size("n_embd")?;
        let num_heads = self.size("n_head")?;
        Ok(DecoderArch {
            family: Family::Gpt2,
            vocab_size: self.size("vocab_size")?,
            hidden_size,
            intermediate_size: self.size_or("n_inner", 4 * hidden_size)?,
            num_layers: self.size("n_layer")?,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: hidden_size / num_heads,
            norm_eps: self.float("layer_norm_epsilon", 1e-5),
            activation: self.activation("activation_function", "gelu_new")?,
            rope_theta: 0.0,
            max_positions: self.size_or("n_positions", 1024)?,
            attention_bias: true,
            pad_token_id: self.token("pad_token_id"),
            eos_token_id: self.token("eos_token_id"),
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
    fn reads_opt_and_gpt2_configs_and_refuses_opt_350m() {
        let opt = serde_json::json!({
            "model_type": "opt", "vocab_size": 50272, "hidden_size": 2048, "ffn_dim": 8192,
            "num_hidden_layers": 24, "num_attention_heads": 32, "max_position_embeddings": 2048,
            "word_embed_proj_dim": 2048, "do_layer_norm_before": true,
            "activation_function": "relu", "pad_token_id": 1, "eos_token_id": 2
        });
        let arch = DecoderArch::from_value(&opt, Path::new("opt-1.3b")).unwrap();
        assert_eq!(
            (arch.family, arch.head_dim, arch.num_kv_heads),
            (Family::Opt, 64, 32)
        );
        assert_eq!(arch.activation, Activation::Relu);
        assert_eq!(arch.pad_token_id, Some(1));
        let again = DecoderArch::from_value(&arch.to_hf_config(), Path::new("x")).unwrap();
        assert_eq!(again, arch);
        let mut small = opt.clone();
        small["word_embed_proj_dim"] = 512.into();
        let err = DecoderArch::from_value(&small, Path::new("opt-350m")).unwrap_err();
        assert!(err.to_string().contains("word_embed_proj_dim"), "{err}");

        let gpt2 = serde_json::json!({
            "model_type": "gpt2", "vocab_size": 50257, "n_embd": 768, "n_layer": 12,
            "n_head": 12, "n_positions": 1024, "activation_function": "gelu_new",
            "eos_token_id": 50256
        });
        let arch = DecoderArch::from_value(&gpt2, Path::new("gpt2")).unwrap();
        assert_eq!((arch.intermediate_size, arch.head_dim), (3072, 64));
        assert_eq!(arch.activation, Activation::GeluTanh);
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
