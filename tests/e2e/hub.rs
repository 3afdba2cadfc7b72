//! Hub model names end to end: `clarity-host train` of an encoder entry whose `model_name` is
//! a hub id downloads the model through the real plugin from a loopback server speaking the
//! hub's file API into `HF_HOME`, trains on it, and later trains offline from that cache alone.

use clarity_fake_hub::{FakeHub, COMMIT};
use clarity_tests::encoder::write_tiny_encoder;
use clarity_tests::{host_command, plugin_lib, Project};
use std::path::Path;
use std::process::Output;

/// One `kind` model `tiny` on `model_name` that trains two quick steps on 16 sample pairs;
/// `extra` is more keys of the entry.
fn write_yaml(project: &Project, kind: &str, model_name: &str, extra: &str) {
    let yaml = format!(
        r#"- name: tiny
  type: {kind}
  plugin: {plugin}
  model_config: {{model_name: {model_name}, max_length: 32}}
  training_config: {{batch_size: 8, gradient_accumulation_steps: 1, learning_rate: 1.0e-3, num_epochs: 1, save_strategy: "no", eval_strategy: "no"}}
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_file: "{data}/train.json"
    valid_file: "{data}/valid.json"
    train_sample_size: 16
    valid_sample_size: 8
{extra}"#,
        plugin = plugin_lib(&format!("clarity-{kind}")).display(),
        data = clarity_tests::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
}

/// `clarity-host train --model tiny` with the hub variables `env`.
fn train(project: &Project, env: &[(&str, &str)]) -> (Output, String) {
    let mut command = host_command(
        &project.config(),
        project.path(),
        &["train", "--model", "tiny"],
    );
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run clarity-host");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, log)
}

#[test]
fn a_hub_model_name_downloads_trains_and_then_trains_offline() {
    let source = tempfile::tempdir().expect("temp dir");
    write_tiny_encoder(source.path(), "bert", 32, 1);
    let hub = FakeHub::start();
    hub.add_repo_from_dir("clarity-test/hub-tiny-bert", source.path());
    // The bare name is a renamed repo, as `roberta-base` is on the hub.
    hub.rename("hub-tiny-bert", "clarity-test/hub-tiny-bert");
    let endpoint = hub.endpoint().to_string();

    let project = Project::new("");
    write_yaml(&project, "encoder", "hub-tiny-bert", "");
    let home = project.path().join("hf-home");
    let home_str = home.to_str().expect("utf-8 path");
    let (out, log) = train(
        &project,
        &[("HF_ENDPOINT", &endpoint), ("HF_HOME", home_str)],
    );
    assert!(out.status.success(), "train failed:\n{log}");
    for needle in [
        format!("downloading `hub-tiny-bert` from the Hugging Face hub at {endpoint}"),
        "downloaded hub-tiny-bert/model.safetensors".to_string(),
        "downloaded hub-tiny-bert/tokenizer.json".to_string(),
    ] {
        assert!(log.contains(&needle), "{needle} missing from:\n{log}");
    }
    let seen: Vec<String> = hub.seen().into_iter().map(|s| s.path).collect();
    assert!(
        seen.contains(&"/hub-tiny-bert/resolve/main/config.json".to_string())
            && seen.contains(&"/clarity-test/hub-tiny-bert/resolve/main/config.json".to_string()),
        "{seen:?}"
    );
    // Python's cache layout under HF_HOME/hub, with the files as served.
    let snapshot = home
        .join("hub/models--hub-tiny-bert/snapshots")
        .join(COMMIT);
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert_eq!(
            std::fs::read(snapshot.join(file)).expect("cached file"),
            std::fs::read(source.path().join(file)).expect("source file"),
            "{file}"
        );
    }
    assert_trained(project.path());

    // With the hub gone and HF_HUB_OFFLINE set, the cache alone is enough.
    hub.stop();
    std::fs::remove_dir_all(project.path().join("artifacts")).expect("remove artifacts");
    let (out, log) = train(
        &project,
        &[
            ("HF_ENDPOINT", &endpoint),
            ("HF_HOME", home_str),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert!(out.status.success(), "offline train failed:\n{log}");
    assert!(
        log.contains("using `hub-tiny-bert` from the hub cache"),
        "{log}"
    );
    assert_trained(project.path());
}

fn assert_trained(project: &Path) {
    let dir = project.join("artifacts/tiny");
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("train_report.json")).expect("train_report.json"),
    )
    .expect("report json");
    assert_eq!(report["report"]["steps"].as_u64(), Some(2), "{report}");
    assert!(dir.join("model.onnx").is_file());
}

#[test]
fn offline_without_the_files_is_one_clear_error() {
    let project = Project::new("");
    write_yaml(&project, "encoder", "clarity-test/not-cached", "");
    let home = project.path().join("hf-home");
    let (out, log) = train(
        &project,
        &[
            ("HF_HOME", home.to_str().expect("utf-8")),
            ("HF_HUB_OFFLINE", "1"),
        ],
    );
    assert!(!out.status.success(), "{log}");
    let cache = home.join("hub/models--clarity-test--not-cached");
    for needle in [
        "model `clarity-test/not-cached` not found".to_string(),
        format!(
            "No folder {}",
            project.path().join("clarity-test/not-cached").display()
        ),
        "HF_HUB_OFFLINE is set".into(),
        "huggingface-cli download clarity-test/not-cached".into(),
        format!("{}/snapshots/<any-name>/", cache.display()),
    ] {
        assert!(log.contains(&needle), "{needle} missing from:\n{log}");
    }
}

/// The lora plugin resolves hub ids the same way: a tiny OPT served as `facebook/tiny-opt`
/// (the shape of the original Clarity's `facebook/opt-1.3b`) is downloaded and trained.
#[test]
fn the_lora_plugin_trains_a_decoder_from_the_hub() {
    let source = tempfile::tempdir().expect("temp dir");
    let example = clarity_tests::bin_dir().join("examples/write_tiny_decoder");
    assert!(
        example.is_file(),
        "{} is missing: build with `cargo build --workspace --all-targets`",
        example.display()
    );
    let out = std::process::Command::new(&example)
        .arg(source.path())
        .arg("opt")
        .arg(clarity_tests::encoder::minilm_dir().join("tokenizer.json"))
        .output()
        .expect("run write_tiny_decoder");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hub = FakeHub::start();
    hub.add_repo_from_dir("facebook/tiny-opt", source.path());

    let project = Project::new("");
    write_yaml(
        &project,
        "lora",
        "facebook/tiny-opt",
        "  lora_config: {r: 4, alpha: 8, target_modules: [q_proj, v_proj]}\n",
    );
    let home = project.path().join("hf-home");
    let (out, log) = train(
        &project,
        &[
            ("HF_ENDPOINT", hub.endpoint()),
            ("HF_HOME", home.to_str().expect("utf-8")),
        ],
    );
    assert!(out.status.success(), "train failed:\n{log}");
    assert!(
        log.contains("downloaded facebook/tiny-opt/config.json"),
        "{log}"
    );
    let snapshot = home
        .join("hub/models--facebook--tiny-opt/snapshots")
        .join(COMMIT);
    assert!(snapshot.join("config.json").is_file());
    assert_trained(project.path());
}
