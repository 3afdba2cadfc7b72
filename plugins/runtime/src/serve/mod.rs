//! ONNX Runtime inference for exported classifiers.
//!
//! - [`init_ort`]: load the library once per process (resolve its path with
//!   [`crate::resolve::ort_library`] first: `ort` panics if it has to guess).
//! - [`OrtClassifier`]: a session with its execution provider chosen at run time
//!   (see [`provider`]), fed from [`crate::tokenize::Encoded`] batches.
//! - [`hf_labels`]: label names from a Hugging Face `config.json`.
//! - [`OnnxServing`]: what a plugin holds once loaded (session, tokenizer, labels), with
//!   `classify_batch` and `info`; [`spec`] reads the settings it is started with.
//! - [`precision`]: which graph `model_config.quantize` serves (fp32 or int8).

mod classifier;
mod labels;
pub mod precision;
pub mod provider;
mod runtime;
mod serving;
pub mod spec;

pub use classifier::{softmax, OrtClassifier};
pub use labels::hf_labels;
pub use provider::Provider;
pub use runtime::{init_ort, ort_library_in_use};
pub use serving::{
    default_batch_tokens, idle_info, loaded, not_trained, token_budget_runs, OnnxServing,
    ServedFolder,
};

use std::path::PathBuf;

/// Why ONNX Runtime could not load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The library could not be loaded (missing, not a library, or too old).
    #[error("cannot load the ONNX Runtime library {path}: {message} (set ORT_DYLIB_PATH to a working libonnxruntime, or run ./scripts/setup.sh)")]
    OrtLibrary {
        /// The library file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A second, different library was asked for.
    #[error("ONNX Runtime is already loaded from {loaded}; cannot also load {requested} (one library per process)")]
    OrtAlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The one asked for now.
        requested: PathBuf,
    },
    /// A session was asked for before [`init_ort`].
    #[error("ONNX Runtime is not loaded yet: call serve::init_ort with the path from resolve::ort_library first")]
    NotInitialized,
    /// The requested execution provider is not available.
    #[error("{0}")]
    Provider(String),
    /// The model file could not be loaded, or its inputs/outputs are not a classifier's.
    #[error("cannot load ONNX model {path}: {message}")]
    Model {
        /// The `.onnx` file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The batch does not match its own shape.
    #[error("invalid batch: {0}")]
    Input(String),
    /// Inference failed.
    #[error("inference failed: {0}")]
    Run(String),
    /// `config.json` labels could not be read.
    #[error("cannot read labels from {path}: {message}")]
    Labels {
        /// The `config.json`.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

#[cfg(test)]
mod tests;
