//! The encoder plugin end to end: candle training through `clarity-host train`, our own ONNX
//! export, ONNX Runtime serving over HTTP, `train --resume` and `export`.

use clarity_tests::encoder::write_tiny_encoder;
use clarity_tests::{error_kind, plugin_lib, Project};
use serde_json::json;
use std::time::Duration;

const LABELS: [&str; 3] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];

fn tiny_project(epochs: usize) -> Project {
    let project = Project::new("");
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    write_yaml(&project, epochs);
    project
}

fn write_yaml(project: &Project, epochs: usize) {
    let yaml = format!(
        r#"- name: tiny
  type: encoder
  plugin: {plugin}
  route: /classify/tiny
  model_config: {{model_name: tiny-bert, max_length: 64, device: auto}}
  training_config:
    batch_size: 8
    learning_rate: 1.0e-3
    num_epochs: {epochs}
    warmup_ratio: 0.1
    save_strategy: epoch
    eval_strategy: epoch
    logging_steps: 1
  label_config: {{labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]}}
  data_config:
    train_file: "{data}/train.json"
    valid_file: "{data}/valid.json"
    train_sample_size: 64
    valid_sample_size: 32
"#,
        plugin = plugin_lib("clarity-encoder").display(),
        data = clarity_tests::sample_data().display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
}

fn train_report(project: &Project) -> serde_json::Value {
    let text = std::fs::read_to_string(project.path().join("artifacts/tiny/train_report.json"))
        .expect("train_report.json");
    serde_json::from_str(&text).expect("report json")
}

#[test]
fn a_tiny_encoder_trains_exports_serves_and_resumes() {
    let project = tiny_project(1);
    let out = project.host(&["train", "--model", "tiny"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    // The head is new: the plugin says so instead of initialising it silently.
    assert!(
        log.contains("newly initialised") && log.contains("classifier.weight"),
        "{log}"
    );
    let dir = project.path().join("artifacts/tiny");
    for file in [
        "model.onnx",
        "tokenizer.json",
        "model.safetensors",
        "config.json",
        "labels.json",
        "metrics.json",
    ] {
        assert!(
            dir.join(file).is_file(),
            "{file} missing in {}",
            dir.display()
        );
    }
    let first_steps = train_report(&project)["report"]["steps"]
        .as_u64()
        .expect("steps");
    assert_eq!(first_steps, 8, "64 pairs in batches of 8 for one epoch");

    // Resume with one more epoch: the step count goes on from the checkpoint.
    write_yaml(&project, 2);
    let out = project.host(&["train", "--model", "tiny", "--resume"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "resume failed:\n{log}");
    assert!(log.to_lowercase().contains("resum"), "{log}");
    assert_eq!(
        train_report(&project)["report"]["steps"].as_u64(),
        Some(16),
        "{log}"
    );

    // `export` rebuilds model.onnx from the saved weights, in place.
    let before = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    let stdout = project.host_ok(&["export", "--model", "tiny"]);
    assert!(stdout.contains("artifacts/tiny"), "{stdout}");
    let after = std::fs::read(dir.join("model.onnx")).expect("model.onnx");
    assert_eq!(
        before, after,
        "re-export of the same weights must give the same graph"
    );

    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let (status, body) = server.post_json(
        "/classify/tiny",
        &json!({"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No."}),
    );
    assert_eq!(status, 200, "{body}");
    let label = body["clarity_label"].as_str().expect("clarity_label");
    assert!(LABELS.contains(&label), "{body}");
    let scores = body["scores"].as_object().expect("scores");
    assert_eq!(scores.len(), 3);
    let sum: f64 = scores.values().filter_map(|v| v.as_f64()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{body}");
    let top = scores
        .values()
        .filter_map(|v| v.as_f64())
        .fold(0.0, f64::max);
    assert!(
        (body["confidence"].as_f64().unwrap_or(0.0) - top).abs() < 1e-6,
        "{body}"
    );

    // A batch gives the same answers as single requests, in order.
    let pairs = json!([
        {"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No."},
        {"question": "Why?", "context": "Q: Why did you vote that way?\nA: Let me talk about something else entirely, and at length."}
    ]);
    let (status, batch) = server.post_json("/classify/tiny", &pairs);
    assert_eq!(status, 200, "{batch}");
    for (i, pair) in pairs.as_array().into_iter().flatten().enumerate() {
        let (_, single) = server.post_json("/classify/tiny", pair);
        for label in LABELS {
            let (a, b) = (
                batch[i]["scores"][label].as_f64(),
                single["scores"][label].as_f64(),
            );
            let (a, b) = (a.expect("batch score"), b.expect("single score"));
            assert!(
                (a - b).abs() < 1e-5,
                "row {i} {label}: batch {a} vs single {b}"
            );
        }
    }

    // GET / says which runtime and execution provider serve it.
    let (_, root) = server.get("/");
    let text = root.to_string();
    assert!(
        text.contains("onnxruntime") && text.contains("cpu"),
        "{text}"
    );
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

/// Real fine-tuning of the shipped MiniLM entry (about a minute on 2 cores): run it in release,
/// `./scripts/test.sh --release -- --ignored minilm`.
#[test]
#[ignore = "real MiniLM fine-tuning; run with --release -- --ignored minilm"]
fn the_shipped_minilm_learns_the_sample_data() {
    let project = clarity_tests::shipped_project(&[]);
    let out = project.host(&["train", "--model", "minilm"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    let dir = project.path().join("artifacts/minilm");
    let metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json"),
    )
    .expect("metrics json");
    let f1 = metrics["valid"]["macro_f1"].as_f64().expect("macro_f1");
    let baseline = metrics["majority_baseline"]["macro_f1"]
        .as_f64()
        .expect("baseline");
    assert!(
        f1 > baseline + 0.2,
        "macro-F1 {f1} vs majority {baseline}\n{log}"
    );

    // The training loss went down: the last logged steps average below the first ones.
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("train_report.json")).expect("train_report.json"),
    )
    .expect("report json");
    let history = report["history"]["evaluations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let losses: Vec<f64> = history.iter().filter_map(|h| h["loss"].as_f64()).collect();
    assert!(losses.len() >= 2, "no loss history in {report}");
    assert!(
        losses[losses.len() - 1] < losses[0],
        "validation loss did not fall: {losses:?}"
    );

    // `test` scores a file through ONNX Runtime with the same numbers format as the classic model.
    let stdout = project.host_ok(&["test", "--model", "minilm", "--json"]);
    let scored: serde_json::Value = serde_json::from_str(&stdout).expect("test json");
    assert!(
        scored["metrics"]["accuracy"].as_f64().unwrap_or(0.0) > 0.5,
        "{scored}"
    );
}

/// `model_config.options.pooling: mean` end to end: trained on the mean over real tokens,
/// recorded with the model, exported and served that way; the saved record, not the entry,
/// decides what `export` writes.
#[test]
fn mean_pooling_is_trained_saved_exported_and_served() {
    let project = tiny_project(1);
    let yaml = std::fs::read_to_string(project.config()).expect("models.yaml");
    let yaml = yaml.replace(
        "max_length: 64, device: auto}",
        "max_length: 64, device: auto, options: {pooling: mean}}",
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    project.host_ok(&["train", "--model", "tiny"]);
    let dir = project.path().join("artifacts/tiny");
    let read_json = |file: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(file)).expect(file);
        serde_json::from_str(&text).expect("json")
    };
    assert_eq!(read_json("encoder_meta.json")["arch"]["pooling"], "mean");
    assert_eq!(read_json("config.json")["clarity_pooling"], "mean");
    let graph = |dir: &std::path::Path| std::fs::read(dir.join("model.onnx")).expect("onnx");
    let has_reduce_sum = |bytes: &[u8]| bytes.windows(9).any(|w| w == b"ReduceSum");
    assert!(
        has_reduce_sum(&graph(&dir)),
        "the graph averages over tokens"
    );

    let pair = json!({"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No, not this year and not the next."});
    let served = |project: &Project| {
        let mut server = project.serve(&[]);
        server.wait_ready(Duration::from_secs(120));
        let (status, body) = server.post_json("/classify/tiny", &pair);
        assert_eq!(status, 200, "{body}");
        assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
        LABELS.map(|l| body["scores"][l].as_f64().expect("score"))
    };
    let mean_scores = served(&project);

    // The same weights read through the first token: another graph, other scores.
    let mut meta = read_json("encoder_meta.json");
    meta["arch"]["pooling"] = json!("cls");
    std::fs::write(dir.join("encoder_meta.json"), meta.to_string()).expect("write meta");
    project.host_ok(&["export", "--model", "tiny"]);
    assert!(!has_reduce_sum(&graph(&dir)), "the first token's graph");
    let cls_scores = served(&project);
    assert!(
        mean_scores
            .iter()
            .zip(&cls_scores)
            .any(|(a, b)| (a - b).abs() > 1e-4),
        "{mean_scores:?} vs {cls_scores:?}"
    );
}

#[test]
fn a_wrong_pooling_value_is_a_config_error_naming_the_option() {
    let project = tiny_project(1);
    let yaml = std::fs::read_to_string(project.config()).expect("models.yaml");
    let yaml = yaml.replace("device: auto}", "device: auto, options: {pooling: max}}");
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    let out = project.host(&["train", "--model", "tiny"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "train accepted pooling: max");
    assert!(
        stderr.contains("model_config.options.pooling") && stderr.contains("max"),
        "{stderr}"
    );
    assert!(!project.path().join("artifacts/tiny/model.onnx").exists());
}

/// models.yaml with one encoder entry `ext` serving the folder `exported` as it is.
fn write_exported_entry(project: &Project) {
    let yaml = format!(
        "- name: ext\n  type: encoder\n  plugin: {}\n  model_config: {{model_name: exported, max_length: 32}}\n",
        plugin_lib("clarity-encoder").display()
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
}

#[test]
fn a_folder_exported_elsewhere_is_served_without_training() {
    let project = Project::new("");
    clarity_tests::encoder::write_onnx_folder(&project.path().join("exported"), &["yes", "no"]);
    write_exported_entry(&project);
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let (status, body) = server.post_json(
        "/classify/ext",
        &json!({"question": "Is it served?", "context": "A: It should be, from the ONNX file alone."}),
    );
    assert_eq!(status, 200, "{body}");
    let label = body["clarity_label"].as_str().expect("label");
    assert!(label == "yes" || label == "no", "{body}");
    assert_eq!(
        body["scores"].as_object().map(|s| s.len()),
        Some(2),
        "{body}"
    );
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

/// Text the model's tokenizer refuses is the request's fault: a 422 `validation`, not a 500.
///
/// MiniLM's own tokenizer refuses nothing a request can carry (a question too long for
/// context-only truncation falls back to cutting both, an unknown word becomes `[UNK]`), so
/// the folder's tokenizer here has no unknown token: a character outside its vocabulary then
/// makes tokenization fail inside the plugin, as a tokenizer that cannot represent some text
/// would with any input.
#[test]
fn text_the_tokenizer_refuses_is_a_422_not_a_500() {
    let project = Project::new("");
    let dir = project.path().join("exported");
    clarity_tests::encoder::write_onnx_folder(&dir, &["yes", "no"]);
    let path = dir.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tokenizer.json"))
            .expect("tokenizer json");
    assert_eq!(tokenizer["model"]["type"], "WordPiece");
    tokenizer["model"]["unk_token"] = json!("[NOT-IN-THE-VOCABULARY]");
    std::fs::write(&path, tokenizer.to_string()).expect("write tokenizer.json");
    write_exported_entry(&project);
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));

    let fine = json!({"question": "Is it served?", "context": "A: It is."});
    let (status, body) = server.post_json("/classify/ext", &fine);
    assert_eq!(status, 200, "{body}");

    let refused = json!({"question": "Is it a crab?", "context": "A: It is a \u{1f980}."});
    let (status, body) = server.post_json("/classify/ext", &refused);
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_kind(&body), "validation", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("tokenize"),
        "{body}"
    );
    // In a batch too; and the server goes on serving.
    let (status, body) = server.post_json("/classify/ext", &json!([fine, refused]));
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.post_json("/classify/ext", &fine);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn a_missing_pretrained_model_is_a_clear_error() {
    let project = Project::new("");
    let yaml = format!(
        "- name: nowhere\n  type: encoder\n  plugin: {}\n  model_config: {{model_name: no-such-model-package}}\n  data_config: {{train_file: \"{}/train.json\"}}\n",
        plugin_lib("clarity-encoder").display(),
        clarity_tests::sample_data().display()
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    let out = project.host(&["train", "--model", "nowhere"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no-such-model-package") && stderr.contains("config.json"),
        "{stderr}"
    );
}
