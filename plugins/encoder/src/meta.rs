//! Files written beside `model.onnx` so the artifact folder serves on its own and loads in
//! other tools: `encoder_meta.json` (ours) and a transformers-style `config.json`.

use crate::arch::{Arch, Family};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// Our record of a trained encoder.
pub const META_FILE: &str = "encoder_meta.json";
/// The ONNX graph.
pub const ONNX_FILE: &str = "model.onnx";
/// The trained weights (transformers names), for resuming, re-export and other tools.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer, copied from the pretrained model.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// transformers' config with our labels.
pub const CONFIG_FILE: &str = "config.json";

/// What `load` needs to serve the artifact folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderMeta {
    /// Format version of this file.
    pub format: u32,
    /// Labels in output order.
    pub labels: Vec<String>,
    /// Maximum tokens per pair used in training (and so in serving).
    pub max_length: usize,
    /// The architecture.
    pub arch: Arch,
    /// Where the pretrained weights came from.
    pub base_model: String,
    /// ONNX opset of `model.onnx`.
    pub opset: i64,
}

impl EncoderMeta {
    /// Current format.
    pub const FORMAT: u32 = 1;

    /// Read `dir/encoder_meta.json`.
    pub fn read(dir: &Path) -> Result<Self, String> {
        let path = dir.join(META_FILE);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta: Self =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.format != Self::FORMAT {
            return Err(format!(
                "{}: format {} is not {} (written by another version: retrain or re-export)",
                path.display(),
                meta.format,
                Self::FORMAT
            ));
        }
        Ok(meta)
    }

    /// Write `dir/encoder_meta.json`.
    pub fn write(&self, dir: &Path) -> Result<(), String> {
        write_json(
            &dir.join(META_FILE),
            &serde_json::to_value(self).map_err(|e| e.to_string())?,
        )
    }
}

/// The pretrained `config.json` with our labels and head, so transformers'
/// `AutoModelForSequenceClassification` loads `model.safetensors` from this folder.
pub fn write_hf_config(
    pretrained_config: &Path,
    arch: &Arch,
    labels: &[String],
    out: &Path,
) -> Result<(), String> {
    let mut config: Value = std::fs::read_to_string(pretrained_config)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"model_type": arch.model_type}));
    let class = match arch.family {
        Family::Bert => "BertForSequenceClassification",
        Family::Roberta if arch.model_type == "xlm-roberta" => {
            "XLMRobertaForSequenceClassification"
        }
        Family::Roberta => "RobertaForSequenceClassification",
        Family::DistilBert => "DistilBertForSequenceClassification",
    };
    if let Some(obj) = config.as_object_mut() {
        obj.insert("architectures".into(), json!([class]));
        obj.insert("num_labels".into(), json!(labels.len()));
        obj.insert(
            "id2label".into(),
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect(),
        );
        obj.insert(
            "label2id".into(),
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect(),
        );
    }
    write_json(out, &config)
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
