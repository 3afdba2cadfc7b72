//! Shared machinery of Clarity's ML plugins (`encoder`, `lora`).
//!
//! - [`tokenize`]: question/context pairs to padded id batches with the `tokenizers` crate.
//! - [`hf_tokenizer`]: a Hugging Face folder's tokenizer, built from `vocab.txt` or
//!   `vocab.json` + `merges.txt` when it has no `tokenizer.json`.
//! - [`device`]: which candle device trains (CUDA, then Metal, then CPU, or a fixed choice).
//! - [`batch`]: token batches as candle tensors, and the model interface the loop trains.
//! - [`train`]: the training loop (AdamW, warmup + linear decay, accumulation, evaluation,
//!   early stopping, safetensors checkpoints and resume), reporting to the host.
//! - [`onnx`]: an ONNX graph writer (our own, no Python), used by each plugin's exporter.
//! - [`serve`]: ONNX Runtime sessions for inference, with the execution provider chosen at
//!   run time.
//! - [`resolve`]: where pretrained models (a folder, a pip package, the Hugging Face hub and its
//!   cache) and the ONNX Runtime library are found.
//! - [`meta`]: the JSON files written beside `model.onnx` (the plugin's record, `config.json`).
//! - [`errors`]: each error above as a [`clarity_sdk::Error`] of the right kind, for `?`.
#![deny(missing_docs)]

pub mod batch;
pub mod cpu_values;
pub mod device;
pub mod errors;
pub mod hf_tokenizer;
pub mod input;
pub mod kernels;
pub mod meta;
pub mod onnx;
pub mod resolve;
pub mod serve;
pub mod tokenize;
pub mod train;
