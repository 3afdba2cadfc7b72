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

/// A shipped `models.yaml` recipe trained on the real QEvasion data, its macro-F1, accuracy,
/// per-label F1, wall time and peak RSS printed as a table row. The recipe entries are disabled
/// and read `data/qevasion/`; here they read `../shared/data/qevasion/` instead. Run with
/// `cargo build --release --workspace && cargo test -p clarity-tests --release -- --ignored
/// recipe_ --nocapture --test-threads 1`.
fn qevasion_recipe(name: &str, at_least: f64) {
    let project = qevasion_project();
    let (out, wall, peak_mb) = timed_train(&project, name);
    println!("{out}");
    let m = metrics(&project, name);
    let f1 = m["valid"]["macro_f1"].as_f64().expect("macro_f1");
    let accuracy = m["valid"]["accuracy"].as_f64().expect("accuracy");
    let per_label: Vec<String> = m["valid"]["per_label"]
        .as_array()
        .expect("per_label")
        .iter()
        .map(|l| {
            format!(
                "{} {:.3}",
                l["label"].as_str().unwrap_or("?"),
                l["f1"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    println!("| recipe | macro-F1 | accuracy | per-label F1 | train wall time | peak RSS |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {name} | {f1:.3} | {accuracy:.3} | {} | {:.1} min | {peak_mb:.0} MB |",
        per_label.join(", "),
        wall / 60.0
    );
    println!("({})", clarity_tests::cpu_description());
    assert!(f1 >= at_least, "{name}: macro-F1 {f1:.3} < {at_least}");
}

/// `clarity-host train --model NAME`: its output, wall time in seconds and the peak RSS in MB
/// of the largest child this test process has waited for (the `train` run).
fn timed_train(project: &Project, name: &str) -> (String, f64, f64) {
    let started = std::time::Instant::now();
    let out = project.host_ok(&["train", "--model", name]);
    let wall = started.elapsed().as_secs_f64();
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (out, wall, usage.ru_maxrss as f64 / 1024.0)
}

/// The repository's models.yaml in a fresh project, its QEvasion recipes reading
/// `../shared/data/qevasion/`.
fn qevasion_project() -> Project {
    let root = clarity_tests::workspace_root();
    let shared = root.join("../shared/data/qevasion");
    assert!(
        shared.join("train.json").is_file(),
        "no QEvasion data at {}",
        shared.display()
    );
    clarity_tests::shipped_project(&[("data/qevasion/", &shared)])
}

#[test]
#[ignore = "reads ../shared/data/qevasion; about 10 minutes of MiniLM training on 2 cores"]
fn recipe_minilm_question_answer() {
    // The default entry's input construction (question + answer, 128 tokens). Measured 0.567
    // (2026-12-07); it must stay above the paper's RoBERTa-base (0.530).
    qevasion_recipe("minilm-qa", 0.53);
}

#[test]
#[ignore = "reads ../shared/data/qevasion; about 14 minutes of MiniLM training on 2 cores"]
fn recipe_minilm_question_answer_half_rate() {
    // minilm-qa for 5 epochs at learning rate 5e-5: 0.592 on 2026-12-08 (seed 7: 0.553).
    qevasion_recipe("minilm-qa-e5-lr5", 0.56);
}

#[test]
#[ignore = "reads ../shared/data/qevasion; about 30 minutes of MiniLM training on 2 cores"]
fn recipe_minilm_fine_head_tail() {
    qevasion_recipe("minilm-fine-256", 0.6);
}

#[test]
#[ignore = "reads ../shared/data/qevasion; about a minute"]
fn recipe_classic_qevasion() {
    // Deterministic (full-batch L-BFGS): 0.510 on 2026-12-07, 0.545 with the relevance features.
    qevasion_recipe("classic-qevasion", 0.53);
}

/// SmolLM2 + LoRA with the original's settings: the yardstick of the LoRA memory work (its
/// wall time and peak RSS go in the README beside the run before it). It only has to beat
/// chance-level macro-F1 on three labels.
#[test]
#[ignore = "reads ../shared/data/qevasion; about 30-60 minutes of LoRA training on 2 cores"]
fn recipe_smollm2_lora_qevasion() {
    qevasion_recipe("smollm2-lora-qevasion", 0.25);
}

/// The LoRA recipe reading the question and the answer only: measured 0.373 on the 200-pair
/// sample (2026-12-07, Intel Xeon), against 0.299 for the same recipe reading the whole
/// context; it must keep a clear lead over that.
#[test]
#[ignore = "reads ../shared/data/qevasion; about 15-30 minutes of LoRA training on 2 cores"]
fn recipe_smollm2_lora_qa() {
    qevasion_recipe("smollm2-lora-qa", 0.34);
}

/// The same with adapters on every projection (attention and MLP): measured 0.400 on the
/// 200-pair sample (2026-12-07, Intel Xeon), against 0.373 with adapters on q and v only.
#[test]
#[ignore = "reads ../shared/data/qevasion; about 20-40 minutes of LoRA training on 2 cores"]
fn recipe_smollm2_lora_qa_all() {
    qevasion_recipe("smollm2-lora-qa-all", 0.36);
}

/// The ensemble recipe: its members trained first (about 75 minutes), then fitted. It must
/// beat its best member on validation, also when cross-fitted (weights fitted on four fifths
/// of the set, each fifth scored), which is what it earns on pairs it did not see.
#[test]
#[ignore = "reads ../shared/data/qevasion; trains minilm-qa, minilm-qa-256 and classic-qevasion first"]
fn recipe_qevasion_ensemble() {
    ensemble_recipe("qevasion-ensemble", 0.0);
}

/// The best QEvasion recipe so far: two MiniLM models that read the same tokens through the
/// first token (5 epochs) and through the mean over tokens, and the classic example. Measured
/// 0.612 cross-fitted on 2026-12-07 (AMD EPYC, AVX-512) and, with every member retrained on an
/// Intel Xeon, 0.578-0.588, and 0.583 (best member 0.577) on 2026-12-08 (AMD EPYC, after the
/// last-layer change): retraining the members moves it by about 0.02, so the check is 0.575.
#[test]
#[ignore = "reads ../shared/data/qevasion; trains its members first: about 45 minutes"]
fn recipe_qevasion_ensemble_mean() {
    ensemble_recipe("qevasion-ensemble-mean", 0.575);
}

/// Train the ensemble `name` (its members first), print its row, and check that it beats its
/// best member, fitted and cross-fitted, and that the cross-fitted score is `at_least`.
fn ensemble_recipe(name: &str, at_least: f64) {
    let project = qevasion_project();
    let (out, wall, peak_mb) = timed_train(&project, name);
    println!("{out}");
    let path = project
        .path()
        .join("artifacts")
        .join(name)
        .join("ensemble.json");
    let fitted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("ensemble.json"))
            .expect("json");
    let best_member = fitted["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["valid"]["macro_f1"].as_f64())
        .fold(0.0, f64::max);
    let validation = &fitted["validation"];
    let f1 = validation["ensemble"]["macro_f1"]
        .as_f64()
        .expect("ensemble");
    let crossed = validation["cross_fit"]["macro_f1"]
        .as_f64()
        .expect("cross_fit");
    println!("| recipe | macro-F1 (fitted on valid) | cross-fitted | best member | wall time (members included) | peak RSS |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {name} | {f1:.3} | {crossed:.3} | {best_member:.3} | {:.1} min | {peak_mb:.0} MB |",
        wall / 60.0
    );
    println!("({})", clarity_tests::cpu_description());
    assert!(f1 > best_member, "{f1:.3} vs best member {best_member:.3}");
    assert!(
        crossed > best_member,
        "cross-fitted {crossed:.3} vs best member {best_member:.3}"
    );
    assert!(
        crossed >= at_least,
        "cross-fitted {crossed:.3} < {at_least}"
    );
}
