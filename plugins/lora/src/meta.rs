//! `lora_meta.json`: what `load` and `export` need to serve or rebuild a trained LoRA model,
//! written beside `model.onnx`, the tokenizer and the adapter files.

use crate::arch::{DecoderArch, Family};
use clarity_runtime::meta::{self as files, MetaError, MetaFile};
use clarity_sdk::input::InputConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use clarity_runtime::meta::{CONFIG_FILE, ONNX_FILE, TOKENIZER_FILE};

/// Our record of a trained model.
pub const META_FILE: &str = "lora_meta.json";

/// Adapter hyper-parameters as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLora {
    /// Rank.
    pub r: usize,
    /// Alpha.
    pub alpha: f64,
    /// Dropout used in training.
    pub dropout: f64,
    /// Target modules.
    pub target_modules: Vec<String>,
}

/// What `load` needs to serve the folder, and `export` to rebuild the graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoraMeta {
    /// Format version of this file.
    pub format: u32,
    /// Labels in output order.
    pub labels: Vec<String>,
    /// Longest prompt in tokens (also the rotary tables' length in the graph).
    pub max_length: usize,
    /// The prompt template.
    pub template: String,
    /// `data_config.input` as trained: its parts fill the template's slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputConfig>,
    /// Padding token id.
    pub pad_id: u32,
    /// The architecture.
    pub arch: DecoderArch,
    /// The base model the adapters belong to (a folder or a `.gguf` file).
    pub base_model: String,
    /// The adapters.
    pub lora: StoredLora,
    /// ONNX opset of `model.onnx`.
    pub opset: i64,
    /// The frozen weights were held in 8 bits in training.
    #[serde(default)]
    pub use_8bit: bool,
    /// How `model.int8.onnx` was quantized, when `model_config.quantize: int8` wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

impl MetaFile for LoraMeta {
    const FILE: &'static str = META_FILE;
    const FORMAT: u32 = 1;
}

impl LoraMeta {
    /// transformers' config for the folder: the architecture, `id2label` / `label2id`.
    pub fn write_hf_config(&self, dir: &Path) -> Result<(), MetaError> {
        let class = match self.arch.family {
            Family::Llama => "LlamaForSequenceClassification",
            Family::Qwen2 => "Qwen2ForSequenceClassification",
            Family::Opt => "OPTForSequenceClassification",
            Family::Gpt2 => "GPT2ForSequenceClassification",
        };
        files::write_hf_config(
            self.arch.to_hf_config(),
            class,
            &self.labels,
            &dir.join(CONFIG_FILE),
        )
    }
}
