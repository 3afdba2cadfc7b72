//! Tiny classifiers in the layout the Hugging Face Trainer leaves (what the Python Clarity
//! fine-tunes): `config.json` with `architectures` and `id2label`, the head's weights under
//! transformers' names, as `model.safetensors` or `pytorch_model.bin`; and candle's own
//! forward of the same weights, to check what a server answers.

use crate::pth::{write_pth, NamedTensor};
use candle_core::{Device, Tensor};
use clarity_encoder::arch::Arch;
use clarity_encoder::model::EncoderModel;
use clarity_encoder::names;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::tokenize::Encoded;
use std::collections::HashMap;
use std::path::Path;

/// How the weights are stored.
#[derive(Debug, Clone, Copy)]
pub enum WeightFormat {
    /// `model.safetensors`.
    Safetensors,
    /// `pytorch_model.bin` (PyTorch's zip + pickle).
    Pytorch,
}

/// A fine-tuned classifier: its config and every tensor.
pub struct TinyClassifier {
    /// The architecture.
    pub arch: Arch,
    /// `config.json`.
    pub config: serde_json::Value,
    /// Every parameter, with transformers' names.
    pub tensors: Vec<NamedTensor>,
}

/// A tiny `model_type` (`bert`, `roberta` or `distilbert`) classifier for `labels`, its weights drawn from
/// `seed` with spreads large enough that the scores differ clearly between inputs.
pub fn tiny_classifier(
    model_type: &str,
    vocab_size: usize,
    labels: &[&str],
    seed: u64,
) -> TinyClassifier {
    let id2label: serde_json::Map<_, _> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), serde_json::json!(l)))
        .collect();
    let label2id: serde_json::Map<_, _> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.to_string(), serde_json::json!(i)))
        .collect();
    let config = match model_type {
        "roberta" => serde_json::json!({"model_type": "roberta",
            "architectures": ["RobertaForSequenceClassification"], "vocab_size": vocab_size,
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 66, "type_vocab_size": 1,
            "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "layer_norm_eps": 1e-5,
            "hidden_act": "gelu", "id2label": id2label, "label2id": label2id,
            "problem_type": "single_label_classification"}),
        "distilbert" => serde_json::json!({"model_type": "distilbert",
            "architectures": ["DistilBertForSequenceClassification"], "vocab_size": vocab_size,
            "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64,
            "max_position_embeddings": 128, "pad_token_id": 0, "activation": "gelu",
            "id2label": id2label, "label2id": label2id}),
        _ => serde_json::json!({"model_type": "bert",
            "architectures": ["BertForSequenceClassification"], "vocab_size": vocab_size,
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 128, "type_vocab_size": 2,
            "pad_token_id": 0, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
            "id2label": id2label, "label2id": label2id,
            "problem_type": "single_label_classification"}),
    };
    let arch = Arch::from_json(&config, "tiny classifier").expect("tiny config");
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut uniform = move || {
        // xorshift64*: deterministic, no dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let bits = state.wrapping_mul(2685821657736338717) >> 40;
        bits as f32 / (1u64 << 24) as f32 - 0.5
    };
    let tensors = names::parameters(&arch, labels.len())
        .into_iter()
        .map(|(name, shape, _)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if names::is_norm(&name) && name.ends_with(".weight") {
                (0..n).map(|_| 1.0 + 0.4 * uniform()).collect()
            } else if name.ends_with(".bias") {
                (0..n).map(|_| 0.2 * uniform()).collect()
            } else {
                (0..n).map(|_| 0.8 * uniform()).collect()
            };
            (name, shape, values)
        })
        .collect();
    TinyClassifier {
        arch,
        config,
        tensors,
    }
}

impl TinyClassifier {
    /// Write `config.json` and the weights into `dir` (tokenizer files are the caller's).
    pub fn write(&self, dir: &Path, format: WeightFormat) {
        std::fs::create_dir_all(dir).expect("create model folder");
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&self.config).expect("config json"),
        )
        .expect("write config.json");
        match format {
            WeightFormat::Pytorch => write_pth(&dir.join("pytorch_model.bin"), &self.tensors),
            WeightFormat::Safetensors => {
                let map: HashMap<String, Tensor> = self.tensors().into_iter().collect();
                candle_core::safetensors::save(&map, dir.join("model.safetensors"))
                    .expect("write model.safetensors");
            }
        }
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .map(|(name, shape, values)| {
                let t = Tensor::from_vec(values.clone(), shape.as_slice(), &Device::Cpu)
                    .expect("tensor");
                (name.clone(), t)
            })
            .collect()
    }

    /// The model in candle, built straight from the tensors (not through the plugin's loader).
    pub fn model(&self) -> EncoderModel {
        let varmap = candle_nn::VarMap::new();
        {
            let mut data = varmap.data().lock().expect("varmap lock");
            for (name, t) in self.tensors() {
                data.insert(name, candle_core::Var::from_tensor(&t).expect("var"));
            }
        }
        EncoderModel::from_varmap(self.arch.clone(), varmap, Device::Cpu).expect("model")
    }

    /// Candle's label probabilities for one tokenized pair.
    pub fn scores(&self, input_ids: &[u32], token_type_ids: &[u32]) -> Vec<f32> {
        let seq = input_ids.len();
        let encoded = Encoded {
            batch: 1,
            seq,
            input_ids: input_ids.iter().map(|&x| i64::from(x)).collect(),
            attention_mask: vec![1; seq],
            token_type_ids: token_type_ids.iter().map(|&x| i64::from(x)).collect(),
        };
        let batch = TensorBatch::from_encoded(&encoded, &Device::Cpu).expect("batch");
        let logits = self.model().logits(&batch, false).expect("forward");
        let row = logits
            .squeeze(0)
            .expect("one row")
            .to_vec1::<f32>()
            .expect("logits");
        clarity_runtime::serve::softmax(&row)
    }
}
