//! Files written beside `model.onnx` so the artifact folder serves on its own and loads in
//! other tools: `encoder_meta.json` (ours) and a transformers-style `config.json`.

use crate::arch::{Arch, Family, Pooling, POOLING_KEY};
use clarity_runtime::meta::{self as files, MetaError, MetaFile};
use clarity_runtime::tokenize::PairOrder;
use clarity_sdk::input::InputConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

pub use clarity_runtime::meta::{CONFIG_FILE, ONNX_FILE, TOKENIZER_FILE};

/// Our record of a trained encoder.
pub const META_FILE: &str = "encoder_meta.json";
/// The trained weights (transformers names), for resuming, re-export and other tools.
pub const WEIGHTS_FILE: &str = "model.safetensors";

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
    /// The order the model reads a pair in (absent in older files: ours).
    #[serde(default)]
    pub pair_order: PairOrder,
    /// `data_config.input` as trained: serving builds requests the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputConfig>,
    /// Set when the folder was imported from a classifier fine-tuned elsewhere (e.g. by the
    /// Python Clarity) rather than trained here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<Imported>,
    /// How `model.int8.onnx` was quantized, when `model_config.quantize: int8` wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

/// Where an imported model came from, to re-import when the source changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// The Hugging Face folder read.
    pub source: PathBuf,
    /// Sizes and modification times of its config and weight files when it was read.
    pub fingerprint: String,
}

impl MetaFile for EncoderMeta {
    const FILE: &'static str = META_FILE;
    const FORMAT: u32 = 1;
    const SORTED_KEYS: bool = true;
}

/// The pretrained `config.json` with our labels and head, so transformers'
/// `AutoModelForSequenceClassification` loads `model.safetensors` from this folder.
pub fn write_hf_config(
    pretrained_config: &Path,
    arch: &Arch,
    labels: &[String],
    out: &Path,
) -> Result<(), MetaError> {
    let mut config = std::fs::read_to_string(pretrained_config)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({"model_type": arch.model_type}));
    if let Some(object) = config.as_object_mut() {
        // transformers reads the first token whatever this says; we read it back.
        match arch.pooling {
            Pooling::Mean => object.insert(POOLING_KEY.into(), json!("mean")),
            Pooling::Cls => object.remove(POOLING_KEY),
        };
    }
    let class = match arch.family {
        Family::Bert => "BertForSequenceClassification",
        Family::Roberta if arch.model_type == "xlm-roberta" => {
            "XLMRobertaForSequenceClassification"
        }
        Family::Roberta => "RobertaForSequenceClassification",
        Family::DistilBert => "DistilBertForSequenceClassification",
    };
    files::write_hf_config(config, class, labels, out)
}
