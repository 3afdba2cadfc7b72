//! The classic example learns: it beats the majority baseline on held-out data.

use clarity_tests::{plugin_lib, Project};

fn metrics(project: &Project, model: &str) -> serde_json::Value {
    let path = project
        .path()
        .join(format!("artifacts/{model}/metrics.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("metrics.json")).expect("JSON")
}

#[test]
fn classic_example_beats_the_majority_baseline_on_sample_data() {
    let project = Project::new(&format!(
        "- name: classic\n  type: classic\n  plugin: {}\n  data_config:\n    train_file: \"{{data}}/train.json\"\n    valid_file: \"{{data}}/valid.json\"\n",
        plugin_lib("clarity-classic-example").display()
    ));
    project.host_ok(&["train", "--model", "classic"]);
    let m = metrics(&project, "classic");
    let f1 = m["valid"]["macro_f1"].as_f64().expect("macro_f1");
    let base = m["majority_baseline"]["macro_f1"]
        .as_f64()
        .expect("baseline");
    assert!(f1 > base + 0.2, "macro-F1 {f1:.3} vs majority {base:.3}");
    let accuracy = m["valid"]["accuracy"].as_f64().expect("accuracy");
    let base_accuracy = m["majority_baseline"]["accuracy"]
        .as_f64()
        .expect("baseline accuracy");
    assert!(
        accuracy > base_accuracy + 0.1,
        "accuracy {accuracy:.3} vs majority {base_accuracy:.3}"
    );
}

/// The real QEvasion data (not in the repo: read from ../shared). Run with
/// `cargo build --release --workspace && cargo test -p clarity-tests --release -- --ignored qevasion`.
#[test]
#[ignore = "reads ../shared/data/qevasion; run by hand or in benchmarks"]
fn qevasion_classic_example() {
    let shared = clarity_tests::workspace_root().join("../shared/data/qevasion");
    assert!(
        shared.join("train.json").is_file(),
        "no QEvasion data at {}",
        shared.display()
    );
    let project = Project::new(&format!(
        "- name: classic\n  type: classic\n  plugin: {}\n  data_config:\n    train_file: \"{}\"\n    valid_file: \"{}\"\n",
        plugin_lib("clarity-classic-example").display(),
        shared.join("train.json").display(),
        shared.join("valid.json").display()
    ));
    let started = std::time::Instant::now();
    let out = project.host_ok(&["train", "--model", "classic"]);
    println!("{out}");
    println!("train wall time: {:.1} s", started.elapsed().as_secs_f64());
    let m = metrics(&project, "classic");
    let f1 = m["valid"]["macro_f1"].as_f64().expect("macro_f1");
    let base = m["majority_baseline"]["macro_f1"]
        .as_f64()
        .expect("baseline");
    assert!(f1 > base, "macro-F1 {f1:.3} vs majority {base:.3}");
}
