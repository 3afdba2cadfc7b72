//! The pretrained base model: a Hugging Face folder (`config.json`, `*.safetensors`,
//! `tokenizer.json`) or a GGUF file (config and tokenizer from its metadata, quantized
//! weights kept as stored until the model is built), and the adapter files written after
//! training.

use crate::arch::{ArchError, DecoderArch};
use crate::gguf;
use crate::lora::LoraSettings;
use crate::model::BaseWeights;
use candle_core::Device;
use candle_nn::VarMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The adapters and head, as safetensors (names as in PEFT, minus `base_model.model.`).
pub const ADAPTER_FILE: &str = "adapter_model.safetensors";
/// PEFT-style description of the adapters.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";

/// Why the base model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `config.json` is unusable.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// The GGUF file is unusable.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// A file is missing.
    #[error("{dir} has no {what}: a decoder model folder needs config.json, *.safetensors and tokenizer.json, or a .gguf file")]
    Missing {
        /// The folder.
        dir: PathBuf,
        /// What is missing.
        what: &'static str,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// A base model ready to build [`crate::model::DecoderModel`]s from.
pub struct Base {
    /// Shape.
    pub arch: DecoderArch,
    /// Weights.
    pub weights: BaseWeights,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Where it came from (shown to users, stored in the model's metadata).
    pub source: PathBuf,
    /// `safetensors` or `gguf (Q4_1, Q8_0, F32)`.
    pub format: String,
}

/// The `.gguf` file `path` is, or the only one a folder without `config.json` holds.
pub fn gguf_file(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return (path.extension()? == "gguf").then(|| path.to_path_buf());
    }
    if path.join("config.json").is_file() {
        return None;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Read the base model at `path` (a folder, or a `.gguf` file) onto `device`.
pub fn load_base(path: &Path, device: &Device) -> Result<Base, LoadError> {
    if let Some(file) = gguf_file(path) {
        let model = gguf::read_gguf(&file, device)?;
        let arch = DecoderArch::from_value(&model.config, &file)?;
        let mut kinds: Vec<&str> = model.dtypes.values().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let weights =
            BaseWeights::with_quantized(&arch, model.tensors, model.quantized).map_err(|e| {
                LoadError::Read {
                    path: file.clone(),
                    message: e.to_string(),
                }
            })?;
        return Ok(Base {
            arch,
            weights,
            tokenizer: model.tokenizer,
            source: file,
            format: format!("gguf ({})", kinds.join(", ")),
        });
    }
    let config = path.join("config.json");
    if !config.is_file() {
        return Err(LoadError::Missing {
            dir: path.to_path_buf(),
            what: "config.json",
        });
    }
    let arch = DecoderArch::from_file(&config)?;
    let tokenizer_path = path.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(LoadError::Missing {
            dir: path.to_path_buf(),
            what: "tokenizer.json",
        });
    }
    let tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(|e| LoadError::Read {
        path: tokenizer_path.clone(),
        message: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| LoadError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .filter(|p| p.file_name().is_some_and(|n| n != ADAPTER_FILE))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LoadError::Missing {
            dir: path.to_path_buf(),
            what: "*.safetensors weights",
        });
    }
    // Sharded checkpoints (model-00001-of-00002.safetensors, ...) are read shard by shard.
    let mut tensors = HashMap::new();
    for file in &files {
        let shard = candle_core::safetensors::load(file, device).map_err(|e| LoadError::Read {
            path: file.clone(),
            message: e.to_string(),
        })?;
        tensors.extend(shard);
    }
    let weights = BaseWeights::new(&arch, tensors).map_err(|e| LoadError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(Base {
        arch,
        weights,
        tokenizer,
        source: path.to_path_buf(),
        format: "safetensors".into(),
    })
}

/// Write the adapters and head (`ADAPTER_FILE`) and a PEFT-style `ADAPTER_CONFIG_FILE`.
pub fn save_adapters(
    varmap: &VarMap,
    lora: &LoraSettings,
    base: &str,
    dir: &Path,
) -> Result<(), String> {
    let path = dir.join(ADAPTER_FILE);
    varmap.save(&path).map_err(|e| {
        let why = clarity_sdk::durable::explain_chain(&e);
        format!("cannot write {}: {why}", path.display())
    })?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "SEQ_CLS",
        "base_model_name_or_path": base,
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "modules_to_save": ["score"],
        "bias": "none",
    });
    let path = dir.join(ADAPTER_CONFIG_FILE);
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| {
        let why = clarity_sdk::durable::explain(&e);
        format!("cannot write {}: {why}", path.display())
    })
}

/// Set the variables of `varmap` from `ADAPTER_FILE` in `dir` (every variable must be there).
pub fn load_adapters(varmap: &mut VarMap, dir: &Path) -> Result<(), String> {
    let path = dir.join(ADAPTER_FILE);
    varmap
        .load(&path)
        .map_err(|e| format!("cannot read adapters {}: {e}", path.display()))
}
