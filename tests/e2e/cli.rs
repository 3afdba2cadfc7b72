//! The command line: list, test (one pair and a file), and clear errors for bad models.yaml.

use clarity_tests::{plugin_lib, Project};

fn project() -> Project {
    Project::new(&format!(
        r#"
- name: classic
  type: classic
  plugin: {}
  data_config:
    train_file: "{{data}}/train.json"
    valid_file: "{{data}}/valid.json"
    test_file: "{{data}}/test.json"
- name: spare
  type: classic
  enabled: false
  plugin: {}
"#,
        plugin_lib("clarity-classic-example").display(),
        plugin_lib("clarity-classic-template").display()
    ))
}

#[test]
fn list_shows_models_routes_and_training_state() {
    let project = project();
    let out = project.host_ok(&["list"]);
    assert!(out.contains("classic"), "{out}");
    assert!(out.contains("/classify/classic"), "{out}");
    assert!(out.contains("/classify/spare"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&project.host_ok(&["list", "--json"])).expect("JSON");
    assert_eq!(json[0]["trained"], false);
    assert_eq!(json[1]["enabled"], false);
    project.host_ok(&["train", "--model", "classic"]);
    let json: serde_json::Value =
        serde_json::from_str(&project.host_ok(&["list", "--json"])).expect("JSON");
    assert_eq!(json[0]["trained"], true);
}

#[test]
fn test_command_classifies_a_pair_and_scores_a_file() {
    let project = project();
    let untrained = project.host(&[
        "test",
        "--model",
        "classic",
        "--question",
        "q",
        "--context",
        "c",
    ]);
    assert!(!untrained.status.success());
    let stderr = String::from_utf8_lossy(&untrained.stderr);
    assert!(
        stderr.contains("clarity-host train --model classic"),
        "{stderr}"
    );

    project.host_ok(&["train", "--model", "classic"]);
    let out = project.host_ok(&[
        "test",
        "--model",
        "classic",
        "--question",
        "Will you sign the bill?",
        "--context",
        "Q: Will you sign the bill?\nA: Yes, I will sign it tomorrow.",
    ]);
    let prediction: serde_json::Value = serde_json::from_str(&out).expect("JSON prediction");
    assert!(prediction["clarity_label"].is_string(), "{prediction}");
    assert_eq!(prediction["scores"].as_object().map(|s| s.len()), Some(3));

    // The file given explicitly, in each supported format, and the configured test_file.
    for file in ["valid.json", "valid.jsonl", "valid.csv"] {
        let path = clarity_tests::sample_data().join(file);
        let out = project.host_ok(&[
            "test",
            "--model",
            "classic",
            "--file",
            path.to_str().unwrap_or_default(),
        ]);
        assert!(out.contains("accuracy"), "{out}");
        assert!(out.contains("macro-F1"), "{out}");
        assert!(out.contains("confusion matrix"), "{out}");
        assert!(out.contains("Clear Non-Reply"), "{out}");
    }
    let out = project.host_ok(&["test", "--model", "classic", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let accuracy = report["metrics"]["accuracy"].as_f64().expect("accuracy");
    let total = report["metrics"]["total"].as_u64().expect("total");
    assert!(total > 0 && (0.0..=1.0).contains(&accuracy), "{report}");
    assert!(report["metrics"]["macro_f1"].as_f64().is_some());
    assert_eq!(
        report["metrics"]["confusion"].as_array().map(|r| r.len()),
        Some(3)
    );
    // The three formats hold the same records, so they score the same.
    let scores: Vec<String> = ["valid.json", "valid.jsonl", "valid.csv"]
        .iter()
        .map(|f| {
            let path = clarity_tests::sample_data().join(f);
            let out = project.host_ok(&[
                "test",
                "--model",
                "classic",
                "--json",
                "--file",
                path.to_str().unwrap_or_default(),
            ]);
            let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            v["metrics"].to_string()
        })
        .collect();
    assert_eq!(scores[0], scores[1]);
    assert_eq!(scores[0], scores[2]);
}

#[test]
fn a_typo_in_models_yaml_names_file_line_and_key() {
    let project = Project::new(
        "- name: m\n  type: classic\n  training_config:\n    batch_size: 8\n    learnin_rate: 0.1\n",
    );
    let out = project.host(&["list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("models.yaml:5"), "{stderr}");
    assert!(stderr.contains("learnin_rate"), "{stderr}");
    assert!(stderr.contains("training_config"), "{stderr}");
}

#[test]
fn duplicate_names_and_routes_are_errors() {
    let project = Project::new(
        "- name: a\n  type: classic\n  route: /x\n- name: a\n  type: classic\n  route: /x\n",
    );
    let out = project.host(&["list"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("duplicate"), "{stderr}");
    assert!(stderr.contains("models.yaml:4"), "{stderr}");
}

#[test]
fn unknown_model_lists_the_available_ones() {
    let project = project();
    let out = project.host(&["train", "--model", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nope") && stderr.contains("classic"),
        "{stderr}"
    );
}
