//! The lora plugin end to end: a tiny random decoder (written by the plugin's own example
//! binary, with MiniLM's real tokenizer) trained with LoRA through `clarity-host train`,
//! adapters saved, merged ONNX exported and served by ONNX Runtime over HTTP, `--resume`
//! and `export`.

use clarity_tests::{bin_dir, encoder::minilm_dir, plugin_lib, Project};
use serde_json::json;
use std::process::Command;
use std::time::Duration;

const LABELS: [&str; 3] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];

pub(crate) fn write_tiny_decoder(project: &Project, family: &str) {
    let example = bin_dir().join("examples/write_tiny_decoder");
    assert!(
        example.is_file(),
        "{} is missing: build with `cargo build --workspace --all-targets`",
        example.display()
    );
    let out = Command::new(&example)
        .arg(project.path().join("tiny-decoder"))
        .arg(family)
        .arg(minilm_dir().join("tokenizer.json"))
        .output()
        .expect("run write_tiny_decoder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn write_yaml(project: &Project, epochs: usize) {
    write_yaml_with(project, epochs, "false");
}

fn write_yaml_with(project: &Project, epochs: usize, use_8bit: &str) {
    let yaml = format!(
        r#"- name: tiny
  type: lora
  plugin: {plugin}
  route: /classify/tiny
  model_config: {{model_name: tiny-decoder, max_length: 64, use_8bit: {use_8bit}}}
  lora_config: {{r: 4, alpha: 8, dropout: 0.05, target_modules: [q_proj, v_proj]}}
  training_config:
    batch_size: 8
    gradient_accumulation_steps: 1
    learning_rate: 1.0e-3
    num_epochs: {epochs}
    save_strategy: epoch
    eval_strategy: epoch
    logging_steps: 1
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_file: "{data}/train.json"
    valid_file: "{data}/valid.json"
    train_sample_size: 48
    valid_sample_size: 24
"#,
        plugin = plugin_lib("clarity-lora").display(),
        data = clarity_tests::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
}

fn steps(project: &Project) -> Option<u64> {
    let text = std::fs::read_to_string(project.path().join("artifacts/tiny/train_report.json"))
        .expect("train_report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report json");
    report["report"]["steps"].as_u64()
}

#[test]
fn a_tiny_lora_decoder_trains_exports_serves_and_resumes() {
    let project = Project::new("");
    write_tiny_decoder(&project, "llama");
    write_yaml(&project, 1);
    let out = project.host(&["train", "--model", "tiny"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    assert!(
        log.contains("newly initialised") && log.contains("score.weight"),
        "{log}"
    );
    let dir = project.path().join("artifacts/tiny");
    for file in [
        "model.onnx",
        "tokenizer.json",
        "adapter_model.safetensors",
        "adapter_config.json",
        "lora_meta.json",
        "labels.json",
        "metrics.json",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    // The adapter file holds adapters and head only: far smaller than the base weights.
    let adapters = std::fs::metadata(dir.join("adapter_model.safetensors")).map(|m| m.len());
    let base =
        std::fs::metadata(project.path().join("tiny-decoder/model.safetensors")).map(|m| m.len());
    let (adapters, base) = (adapters.expect("adapters"), base.expect("base"));
    assert!(
        adapters * 20 < base,
        "adapters {adapters} B vs base {base} B"
    );
    assert_eq!(steps(&project), Some(6), "48 pairs in batches of 8");

    write_yaml(&project, 2);
    let out = project.host(&["train", "--model", "tiny", "--resume"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "resume failed:\n{log}");
    assert!(log.contains("resuming at step 6"), "{log}");
    assert_eq!(steps(&project), Some(12), "{log}");

    let before = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    project.host_ok(&["export", "--model", "tiny"]);
    let after = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    assert!(
        before == after,
        "re-export from the adapter file must give the same graph"
    );

    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let pairs = json!([
        {"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No."},
        {"question": "Why?", "context": "Q: Why did you vote that way?\nA: Let me talk about something else entirely, and at length."}
    ]);
    let (status, batch) = server.post_json("/classify/tiny", &pairs);
    assert_eq!(status, 200, "{batch}");
    for (i, pair) in pairs.as_array().into_iter().flatten().enumerate() {
        let (status, single) = server.post_json("/classify/tiny", pair);
        assert_eq!(status, 200, "{single}");
        let label = single["clarity_label"].as_str().expect("clarity_label");
        assert!(LABELS.contains(&label), "{single}");
        let sum: f64 = LABELS
            .iter()
            .filter_map(|l| single["scores"][l].as_f64())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4, "{single}");
        for l in LABELS {
            let (a, b) = (batch[i]["scores"][l].as_f64(), single["scores"][l].as_f64());
            let (a, b) = (a.expect("batch score"), b.expect("single score"));
            assert!((a - b).abs() < 1e-5, "row {i} {l}: batch {a} vs single {b}");
        }
    }
    let (_, root) = server.get("/");
    let text = root.to_string();
    assert!(
        text.contains("lora-onnx") && text.contains("onnxruntime"),
        "{text}"
    );
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

/// OPT's and GPT-2's checkpoint layouts through the host, one of them with the frozen
/// weights in 8 bits, each served afterwards.
#[test]
fn tiny_opt_in_8_bits_and_gpt2_train_and_serve() {
    for (family, use_8bit) in [("opt", "true"), ("gpt2", "false")] {
        let project = Project::new("");
        write_tiny_decoder(&project, family);
        write_yaml_with(&project, 1, use_8bit);
        let out = project.host(&["train", "--model", "tiny"]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{family}: train failed:\n{log}");
        assert!(
            log.contains(&format!("({}, 2 layers", family_name(family))),
            "{log}"
        );
        // The log names the frozen matrices' formats: Q8_0 (and f32 for rows that do not
        // split into 32-wide blocks) with use_8bit, f32 alone without.
        let formats = if use_8bit == "true" {
            "in Q8_0"
        } else {
            "in f32 ("
        };
        assert!(log.contains(&format!("frozen weights {formats}")), "{log}");
        let mut server = project.serve(&[]);
        server.wait_ready(Duration::from_secs(120));
        let (status, body) = server.post_json(
            "/classify/tiny",
            &json!({"question": "Will you?", "context": "Q: Will you?\nA: Yes."}),
        );
        assert_eq!(status, 200, "{family}: {body}");
        assert!(
            LABELS.contains(&body["clarity_label"].as_str().unwrap_or("")),
            "{body}"
        );
        assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
    }
}

/// How the plugin's log names the family.
fn family_name(family: &str) -> &'static str {
    match family {
        "opt" => "Opt",
        "gpt2" => "Gpt2",
        _ => "Llama",
    }
}

/// The original's LoRA keys: `prompt_config.template` (cut at `{label}`), `bias`,
/// `task_type`, the `text_field_*` names, and its LoRA training defaults (batch 2,
/// accumulation 8, 5 epochs) for the keys left out.
#[test]
fn the_originals_lora_keys_and_defaults_reach_the_plugin() {
    let project = Project::new("");
    write_tiny_decoder(&project, "llama");
    let yaml = format!(
        r#"- name: tiny
  type: lora
  plugin: {plugin}
  model_config: {{model_name: tiny-decoder, max_length: 64, use_8bit: false, trust_remote_code: true}}
  lora_config: {{r: 4, alpha: 8, dropout: 0.05, bias: none, task_type: CAUSAL_LM, target_modules: [q_proj, v_proj]}}
  training_config: {{learning_rate: 1.0e-3, save_total_limit: 1, logging_steps: 1}}
  prompt_config:
    template: "Context: {{context}}\nQuestion: {{question}}\nLabel: {{label}}\n"
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_files: ["{data}/train.json"]
    valid_files: ["{data}/valid.json"]
    train_sample_size: 48
    valid_sample_size: 24
    text_field_1: question
    text_field_2: context
"#,
        plugin = plugin_lib("clarity-lora").display(),
        data = clarity_tests::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    let out = project.host(&["train", "--model", "tiny"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    // 48 pairs in batches of 2 = 24 micro-batches, 8 per step: 3 steps an epoch, 5 epochs.
    assert_eq!(steps(&project), Some(15), "{log}");
    let dir = project.path().join("artifacts/tiny");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("lora_meta.json")).expect("lora_meta.json"),
    )
    .expect("meta json");
    assert_eq!(
        meta["template"], "Context: {context}\nQuestion: {question}\nLabel: ",
        "the prompt is the template up to {{label}}"
    );
    let checkpoints = std::fs::read_dir(dir.join("checkpoints"))
        .expect("checkpoints")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("step-"))
        .count();
    assert_eq!(checkpoints, 1, "save_total_limit: 1");
}
