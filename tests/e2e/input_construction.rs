//! `data_config.input` and `label_config.groups` end to end: a real encoder trained on
//! question + answer (the context split at its marker, the answer cut head+tail) with fine
//! labels grouped into coarse ones, then served: requests are built exactly as training
//! examples were, and the answers are the coarse labels.

use clarity_tests::encoder::write_tiny_encoder;
use clarity_tests::{plugin_lib, Project};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const COARSE: [&str; 3] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];

/// The sample data with a fine label beside each coarse one: `<coarse> / even|odd` by position.
fn write_fine_data(dir: &Path) {
    for split in ["train", "valid"] {
        let path = clarity_tests::sample_data().join(format!("{split}.json"));
        let mut records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).expect("sample")).expect("json");
        for (i, r) in records.iter_mut().enumerate() {
            let coarse = r["clarity_label"].as_str().expect("label").to_string();
            let half = if i % 2 == 0 { "even" } else { "odd" };
            r["fine"] = json!(format!("{coarse} / {half}"));
        }
        std::fs::write(
            dir.join(format!("{split}.json")),
            serde_json::to_string(&records).expect("json"),
        )
        .expect("write data");
    }
}

fn groups_yaml() -> String {
    COARSE
        .iter()
        .map(|c| format!("      \"{c}\": [\"{c} / even\", \"{c} / odd\"]\n"))
        .collect()
}

fn project(entry: &str) -> Project {
    let project = Project::new("");
    write_fine_data(project.path());
    std::fs::write(project.config(), entry).expect("write models.yaml");
    project
}

fn encoder_project() -> Project {
    let yaml = format!(
        r#"- name: tiny
  type: encoder
  plugin: {plugin}
  route: /classify/tiny
  model_config: {{model_name: tiny-bert, max_length: 48}}
  training_config: {{batch_size: 8, learning_rate: 1.0e-3, num_epochs: 1, seed: 7}}
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
    groups:
{groups}  data_config:
    train_file: train.json
    valid_file: valid.json
    fine_label_field: fine
    train_sample_size: 64
    valid_sample_size: 24
    input:
      answer_marker: "\nA:"
      parts:
        - question
        - {{text: answer, truncation: head_tail, head: 8, tail: 16}}
"#,
        plugin = plugin_lib("clarity-encoder").display(),
        groups = groups_yaml(),
    );
    let project = project(&yaml);
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    project
}

fn scores(body: &Value) -> Vec<f64> {
    COARSE
        .iter()
        .map(|l| body["scores"][l].as_f64().expect("score per coarse label"))
        .collect()
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn an_encoder_trained_on_question_and_answer_serves_the_same_construction() {
    let project = encoder_project();
    let out = project.host(&["train", "--model", "tiny"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    // Trained on the six fine labels.
    assert!(log.contains("Clear Reply / odd"), "{log}");

    // The construction is saved with the model.
    let dir = project.path().join("artifacts/tiny");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("encoder_meta.json")).expect("meta"),
    )
    .expect("meta json");
    assert_eq!(meta["input"]["answer_marker"], "\nA:", "{meta}");
    assert_eq!(
        meta["input"]["parts"][1]["truncation"], "head_tail",
        "{meta}"
    );
    assert_eq!(meta["labels"].as_array().map(Vec::len), Some(6), "{meta}");

    // Validation metrics are on the coarse labels.
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json"),
    )
    .expect("metrics json");
    let per_label: Vec<&str> = metrics["valid"]["per_label"]
        .as_array()
        .expect("per_label")
        .iter()
        .filter_map(|l| l["label"].as_str())
        .collect();
    assert_eq!(per_label, COARSE, "{metrics}");

    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let (_, root) = server.get("/");
    assert!(root.to_string().contains("Clear Non-Reply"), "{root}");
    assert!(!root.to_string().contains("/ even"), "{root}");

    let answer = "We will hold the vote next week. ".repeat(12);
    let ask = |context: &str, truncate: bool| {
        server.post_json(
            "/classify/tiny",
            &json!({"question": "Will you hold the vote?", "context": context, "truncate": truncate}),
        )
    };
    let (status, a) = ask(&format!("Q: Good morning. Will you?\nA: {answer}"), true);
    assert_eq!(status, 200, "{a}");
    let sa = scores(&a);
    assert!((sa.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{a}");
    assert!(
        COARSE.contains(&a["clarity_label"].as_str().unwrap_or("")),
        "{a}"
    );

    // The interviewer's prompt is not part of the input: changing it changes nothing.
    let long_prompt = "Thank you all for coming today, it is a pleasure. ".repeat(40);
    let (status, b) = ask(&format!("Q: {long_prompt}\nA: {answer}"), true);
    assert_eq!(status, 200, "{b}");
    assert!(close(&sa, &scores(&b)), "{a} vs {b}");

    // The answer's middle is cut (head 8 + tail 16 tokens): a change there is not seen, a
    // change at its end is.
    let middle = format!("Q: Will you?\nA: {answer} In between, much more. {answer}");
    let (_, c) = ask(&middle, true);
    let (_, c2) = ask(
        &format!("Q: Will you?\nA: {answer} In between, other words entirely. {answer}"),
        true,
    );
    assert!(close(&scores(&c), &scores(&c2)), "{c} vs {c2}");
    let (_, d) = ask(&format!("Q: Will you?\nA: {answer} No, never."), true);
    assert!(!close(&sa, &scores(&d)), "{a} vs {d}");

    // `truncate: false` counts the constructed input: a long prompt does not count, a long
    // answer does.
    let (status, e) = ask(&format!("Q: {long_prompt}\nA: Yes."), false);
    assert_eq!(status, 200, "{e}");
    let (status, f) = ask(&format!("Q: Will you?\nA: {answer}"), false);
    assert_eq!(status, 422, "{f}");
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn fine_labels_grouped_for_a_classic_model_answer_and_test_on_the_coarse_ones() {
    let yaml = format!(
        r#"- name: classic
  type: classic
  plugin: {plugin}
  label_config:
    groups:
{groups}  data_config:
    train_file: train.json
    valid_file: valid.json
    test_file: valid.json
    fine_label_field: fine
"#,
        plugin = plugin_lib("clarity-classic-example").display(),
        groups = groups_yaml(),
    );
    let project = project(&yaml);
    project.host_ok(&["train", "--model", "classic"]);
    // `test` reads the coarse `clarity_label` and scores the coarse answers.
    let stdout = project.host_ok(&["test", "--model", "classic", "--json"]);
    let scored: Value = serde_json::from_str(&stdout).expect("test json");
    let labels: Vec<&str> = scored["metrics"]["per_label"]
        .as_array()
        .expect("per_label")
        .iter()
        .filter_map(|l| l["label"].as_str())
        .collect();
    // No label_config.labels: the coarse labels are sorted.
    assert_eq!(
        labels,
        ["Ambivalent", "Clear Non-Reply", "Clear Reply"],
        "{scored}"
    );
    let accuracy = scored["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!(accuracy > 0.5, "{scored}");

    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let (status, body) = server.post_json(
        "/classify/classic",
        &json!({"question": "Will you?", "context": "Q: Will you?\nA: Yes, we will."}),
    );
    assert_eq!(status, 200, "{body}");
    let map = body["scores"].as_object().expect("scores");
    assert_eq!(map.len(), 3, "{body}");
    let sum: f64 = map.values().filter_map(Value::as_f64).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{body}");
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}
