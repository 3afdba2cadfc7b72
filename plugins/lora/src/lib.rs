//! Clarity's LoRA plugin: decoder-only language models (Llama family, Qwen2) fine-tuned for
//! sequence classification with LoRA adapters and a classification head on the last real
//! token, in candle; merged into the base weights and exported to ONNX by our own graph
//! writer; served by ONNX Runtime.
#![deny(missing_docs)]

pub mod arch;
pub mod export;
pub mod gguf;
pub mod lora;
pub mod model;
pub mod prompt;
pub mod tiny;
