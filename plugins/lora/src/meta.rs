//! `lora_meta.json`: what `load` and `export` need to serve or rebuild a trained LoRA model,
//! written beside `model.onnx`, the tokenizer and the adapter files.

use crate::arch::DecoderArch;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Our record of a trained model.
pub const META_FILE: &str = "lora_meta.json";
/// The merged ONNX graph.
pub const ONNX_FILE: &str = "model.onnx";
/// The tokenizer (copied, or built from the GGUF metadata).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// A transformers-style config with our labels.
pub const CONFIG_FILE: &str = "config.json";

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
}

impl LoraMeta {
    /// Current format.
    pub const FORMAT: u32 = 1;

    /// Read `dir/lora_meta.json`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.format != Self::FORMAT {
            return Err(format!(
                "{}: format {} is not {} (written by another version: retrain)",
                path.display(),
                meta.format,
                Self::FORMAT
            ));
        }
        Ok(meta)
    }

    /// Write `dir/lora_meta.json`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let path = dir.join(META_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }

    /// transformers' config for the folder: the architecture, `id2label` / `label2id`.
    pub fn write_hf_config(&self, dir: &Path) -> Result<(), String> {
        let mut config = self.arch.to_hf_config();
        let class = match self.arch.family {
            crate::arch::Family::Llama => "LlamaForSequenceClassification",
            crate::arch::Family::Qwen2 => "Qwen2ForSequenceClassification",
            crate::arch::Family::Opt => "OPTForSequenceClassification",
            crate::arch::Family::Gpt2 => "GPT2ForSequenceClassification",
        };
        if let Some(obj) = config.as_object_mut() {
            obj.insert("architectures".into(), serde_json::json!([class]));
            obj.insert("num_labels".into(), self.labels.len().into());
            obj.insert(
                "id2label".into(),
                self.labels
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (i.to_string(), serde_json::json!(l)))
                    .collect(),
            );
        }
        let path = dir.join(CONFIG_FILE);
        let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
        std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }
}
