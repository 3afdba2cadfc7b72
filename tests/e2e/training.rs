//! Training writes a complete model folder or nothing.

use clarity_tests::{plugin_lib, Project};
use serde_json::json;
use std::time::Duration;

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_panic_during_training_leaves_no_model_behind() {
    let project = Project::new(&format!(
        "- name: boom\n  type: classic\n  plugin: {}\n  label_config: {{labels: [Clear Reply, Clear Non-Reply, Ambivalent]}}\n  data_config: {{train_file: \"{{data}}/train.json\"}}\n",
        plugin_lib("clarity-fixture-panic-plugin").display()
    ));
    let out = project.host(&["train", "--model", "boom"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fixture training always panics"),
        "{stderr}"
    );
    let model_dir = project.path().join("artifacts/boom");
    let files: Vec<String> = std::fs::read_dir(&model_dir)
        .map(|e| {
            e.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        files.iter().all(|f| f == "checkpoints"),
        "half-written model: {files:?}"
    );
    assert!(leftovers(&project.path().join("artifacts")).is_empty());
}

#[test]
fn the_template_plugin_trains_serves_and_a_failed_retrain_keeps_the_old_model() {
    let template = plugin_lib("clarity-classic-template");
    let yaml = |train: &str| {
        format!(
            "- name: tmpl\n  type: classic\n  plugin: {}\n  data_config:\n    train_file: \"{train}\"\n    valid_file: \"{{data}}/valid.json\"\n",
            template.display()
        )
    };
    let project = Project::new(&yaml("{data}/train.json"));
    project.host_ok(&["train", "--model", "tmpl"]);
    let model_dir = project.path().join("artifacts/tmpl");
    for f in [
        "priors.json",
        "labels.json",
        "metrics.json",
        "model_spec.json",
        "train_report.json",
    ] {
        assert!(model_dir.join(f).is_file(), "missing {f}");
    }
    let priors = std::fs::read_to_string(model_dir.join("priors.json")).expect("priors");

    // The labels were derived from the data (sorted), so the template predicts priors.
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(30));
    let (status, body) =
        server.post_json("/classify/tmpl", &json!({"question": "q", "context": "c"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["clarity_label"], "Ambivalent",
        "the majority label: {body}"
    );
    drop(server);

    // A retrain that fails (its data has a label outside the configured ones) keeps the old model.
    let bad = project.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"question": "q", "context": "c", "clarity_label": "Maybe"}]"#,
    )
    .expect("write");
    let mut text = yaml(&bad.display().to_string());
    text.push_str("  label_config: {labels: [Clear Reply, Clear Non-Reply, Ambivalent]}\n");
    std::fs::write(
        project.config(),
        text.replace(
            "{data}",
            &clarity_tests::sample_data().display().to_string(),
        ),
    )
    .expect("rewrite models.yaml");
    let out = project.host(&["train", "--model", "tmpl"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Maybe") && stderr.contains("bad.json"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(model_dir.join("priors.json")).expect("priors"),
        priors
    );
    assert!(leftovers(&project.path().join("artifacts")).is_empty());
}
