//! Ensembles on the real binary: `train --model ens` trains its two classic members first
//! (the classic example with two settings, labels listed in different orders), fits the
//! weights on the validation set, and writes `ensemble.json`; `test` scores it; `serve`
//! answers its route with the weighted combination of what the members' own routes answer,
//! and also serves it alone (`--model`), with its members on workers of its own.

use clarity_tests::{plugin_lib, Project};
use serde_json::{json, Value};
use std::time::Duration;

const PAIRS: [(&str, &str); 3] = [
    (
        "Will you raise the minimum wage?",
        "Q: Will you raise the minimum wage?\nA: Yes. We will raise it to fifteen dollars next year.",
    ),
    (
        "Do you support the trade deal?",
        "Q: Do you support the trade deal?\nA: Well, there are many things to consider, and we are looking at all of them.",
    ),
    (
        "Who will you appoint?",
        "Q: Who will you appoint?\nA: I cannot comment on personnel decisions before they are made.",
    ),
];

fn project(ensemble: &str) -> Project {
    let plugin = plugin_lib("clarity-classic-example").display().to_string();
    Project::new(&format!(
        r#"- name: words
  type: classic
  plugin: {plugin}
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: {{data}}/train.json
    valid_file: {{data}}/valid.json
  model_config:
    options: {{char_ngrams: [0, 0], word_ngrams: [1, 2], c: 1}}
  tensorboard_config: {{auto_start: false}}
- name: chars
  type: classic
  plugin: {plugin}
  label_config:
    labels: ["Ambivalent", "Clear Reply", "Clear Non-Reply"]
  data_config:
    train_file: {{data}}/train.json
    valid_file: {{data}}/valid.json
  model_config:
    options: {{char_ngrams: [2, 4], word_ngrams: [0, 0], c: 10}}
  tensorboard_config: {{auto_start: false}}
{ensemble}"#
    ))
}

const ENSEMBLE: &str = r#"- name: ens
  type: ensemble
  ensemble_config:
    members: [words, chars]
    weights: fit
  tensorboard_config: {auto_start: false}
"#;

fn scores(prediction: &Value) -> Vec<(String, f64)> {
    prediction["scores"]
        .as_object()
        .unwrap_or_else(|| panic!("no scores in {prediction}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("a number")))
        .collect()
}

fn score_of(prediction: &Value, label: &str) -> f64 {
    prediction["scores"][label]
        .as_f64()
        .unwrap_or_else(|| panic!("no score for {label} in {prediction}"))
}

#[test]
fn an_ensemble_trains_its_members_fits_and_serves_their_weighted_combination() {
    let project = project(ENSEMBLE);
    let out = project.host_ok(&["train", "--model", "ens"]);
    assert!(
        out.contains("Member `words` of `ens` is not trained yet"),
        "{out}"
    );
    assert!(
        out.contains("Member `chars` of `ens` is not trained yet"),
        "{out}"
    );
    assert!(out.contains("trained first: words, chars"), "{out}");
    assert!(out.contains("ens (ensemble)"), "{out}");

    let fitted: Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("artifacts/ens/ensemble.json"))
            .expect("ensemble.json written"),
    )
    .expect("ensemble.json is JSON");
    let members = fitted["members"].as_array().expect("members");
    assert_eq!(members.len(), 2);
    assert_eq!(members[1]["labels"][0], "Ambivalent", "{fitted}");
    let weights: Vec<f64> = members
        .iter()
        .map(|m| m["weight"].as_f64().expect("weight"))
        .collect();
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{weights:?}"
    );
    let best_member = members
        .iter()
        .map(|m| m["valid"]["macro_f1"].as_f64().expect("member macro-F1"))
        .fold(0.0, f64::max);
    let ensemble_f1 = fitted["validation"]["ensemble"]["macro_f1"]
        .as_f64()
        .expect("ensemble macro-F1");
    assert!(
        ensemble_f1 + 1e-9 >= best_member,
        "fitted ensemble {ensemble_f1} below its best member {best_member}: {fitted}"
    );

    // `test` scores it like any model, with the same numbers as the fit saw.
    let valid = clarity_tests::sample_data().join("valid.json");
    let tested: Value = serde_json::from_str(&project.host_ok(&[
        "test",
        "--model",
        "ens",
        "--file",
        &valid.display().to_string(),
        "--json",
    ]))
    .expect("test --json");
    let tested_f1 = tested["metrics"]["macro_f1"].as_f64().expect("macro_f1");
    assert!(
        (tested_f1 - ensemble_f1).abs() < 1e-6,
        "{tested_f1} vs {ensemble_f1}"
    );
    let listed = project.host_ok(&["list", "--json"]);
    let listed: Value = serde_json::from_str(&listed).expect("list --json");
    let row = listed
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "ens"))
        .expect("ens listed");
    assert_eq!(row["type"], "ensemble");
    assert_eq!(row["trained"], true);
    assert_eq!(row["members"], json!(["words", "chars"]));

    // Served beside its members: its answer is the weighted mean of theirs.
    let server = project.serve(&["--no-tensorboard"]);
    server.wait_ready(Duration::from_secs(60));
    let (status, index) = server.get("/");
    assert_eq!(status, 200);
    let entry = index["models"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == "ens"))
        .expect("ens in GET /");
    assert_eq!(entry["type"], "ensemble");
    assert_eq!(entry["status"], "ready");
    assert_eq!(entry["details"]["members"][0]["name"], "words");
    assert_eq!(entry["details"]["members"][1]["route"], "/classify/chars");
    let batch: Vec<Value> = PAIRS
        .iter()
        .map(|(q, c)| json!({"question": q, "context": c}))
        .collect();
    let (status, combined) = server.post_json("/classify/ens", &json!(batch));
    assert_eq!(status, 200, "{combined}");
    let (_, words) = server.post_json("/classify/words", &json!(batch));
    let (_, chars) = server.post_json("/classify/chars", &json!(batch));
    let mut differs = false;
    for i in 0..PAIRS.len() {
        let ens = &combined[i];
        let row = scores(ens);
        // (serde_json sorts the object's keys, so only the set is checked here.)
        assert_eq!(row.len(), 3, "{ens}");
        let total: f64 = row.iter().map(|(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-5, "scores sum to {total}: {ens}");
        for (label, p) in &row {
            let want =
                weights[0] * score_of(&words[i], label) + weights[1] * score_of(&chars[i], label);
            assert!(
                (p - want).abs() < 1e-5,
                "{label}: {p} != {want}\n{ens}\n{}\n{}",
                words[i],
                chars[i]
            );
            differs |= (score_of(&words[i], label) - score_of(&chars[i], label)).abs() > 1e-3;
        }
        let top = row
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(l, _)| l.clone())
            .expect("a label");
        assert_eq!(ens["clarity_label"], top.as_str());
    }
    assert!(
        differs,
        "the two members should disagree somewhere: the check would be empty"
    );
    // One pair, the seed shape.
    let (q, c) = PAIRS[0];
    let (status, one) = server.post_json("/classify/ens", &json!({"question": q, "context": c}));
    assert_eq!(status, 200, "{one}");
    assert_eq!(scores(&one), scores(&combined[0]));
    // A request the route refuses is refused as for any model.
    let (status, _) = server.post_json("/classify/ens", &json!({"question": " ", "context": c}));
    assert_eq!(status, 422);
    drop(server);

    // Served alone: the members run on workers of the ensemble's own, not on routes.
    let server = project.serve(&["--no-tensorboard", "--model", "ens"]);
    server.wait_ready(Duration::from_secs(60));
    let (status, alone) = server.post_json("/classify/ens", &json!(batch));
    assert_eq!(status, 200, "{alone}");
    for i in 0..PAIRS.len() {
        for ((l1, p1), (l2, p2)) in scores(&alone[i]).iter().zip(scores(&combined[i])) {
            assert_eq!(l1, &l2);
            assert!((p1 - p2).abs() < 1e-6, "{l1}: {p1} vs {p2}");
        }
    }
    let (status, _) = server.post_json("/classify/words", &json!(batch));
    assert_eq!(status, 404, "a member not selected has no route");
    // The Open Inference route gives the same scores.
    let questions: Vec<&str> = PAIRS.iter().map(|p| p.0).collect();
    let contexts: Vec<&str> = PAIRS.iter().map(|p| p.1).collect();
    let (status, v2) = server.post_json(
        "/v2/models/ens/infer",
        &json!({"inputs": [
            {"name": "question", "datatype": "BYTES", "shape": [PAIRS.len()], "data": questions},
            {"name": "context", "datatype": "BYTES", "shape": [PAIRS.len()], "data": contexts},
        ]}),
    );
    assert_eq!(status, 200, "{v2}");
    let flat: Vec<f64> = v2["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"] == "scores"))
        .and_then(|o| o["data"].as_array())
        .expect("scores output")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect();
    let seed: Vec<f64> = (0..PAIRS.len())
        .flat_map(|i| {
            ["Clear Reply", "Clear Non-Reply", "Ambivalent"].map(|l| score_of(&alone[i], l))
        })
        .collect();
    assert_eq!(flat.len(), seed.len(), "{v2}");
    for (a, b) in flat.iter().zip(&seed) {
        assert!((a - b).abs() < 1e-6, "{flat:?} vs {seed:?}");
    }
    let (_, index) = server.get("/");
    assert_eq!(index["models"].as_array().map(Vec::len), Some(1), "{index}");
    assert_eq!(
        index["models"][0]["details"]["members"][0]["route"],
        Value::Null
    );
}

#[test]
fn an_untrained_ensemble_says_how_to_train_it() {
    let project = project(ENSEMBLE);
    let out = project.host(&[
        "test",
        "--model",
        "ens",
        "--question",
        "q",
        "--context",
        "c",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = format!("{stdout}{stderr}");
    assert!(text.contains("clarity-host train --model ens"), "{text}");
    let out = project.host(&["export", "--model", "ens"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("is an ensemble"),
        "{text}"
    );
}

#[test]
fn a_broken_ensemble_entry_names_the_file_line_and_field() {
    let unknown =
        project("- name: ens\n  type: ensemble\n  ensemble_config:\n    members: [words, wordz]\n");
    let out = unknown.host(&["list"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("models.yaml:26"), "{text}");
    assert!(
        text.contains("models[2].ensemble_config.members[1]"),
        "{text}"
    );
    assert!(
        text.contains("member \"wordz\" is not an entry of this file"),
        "{text}"
    );

    let plugin = plugin_lib("clarity-classic-example").display().to_string();
    let mismatch = Project::new(&format!(
        "- name: a\n  plugin: {plugin}\n  label_config: {{labels: [yes, no]}}\n\
         - name: b\n  plugin: {plugin}\n  label_config: {{labels: [yes, maybe]}}\n\
         - name: ens\n  type: ensemble\n  ensemble_config: {{members: [a, b]}}\n"
    ));
    let out = mismatch.host(&["train", "--model", "ens"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("models.yaml:9"), "{text}");
    assert!(
        text.contains("models[2].ensemble_config.members[1]"),
        "{text}"
    );
    assert!(text.contains("must predict the same labels"), "{text}");
}
