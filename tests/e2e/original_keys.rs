//! A `models.yaml` written in the Python original's spelling (every field of its
//! `EncoderModelConfig`, `EncoderTrainingConfig`, `EncoderDataConfig`, `LabelConfig` and
//! `TensorboardConfig`, plus `optimizer`/`fp16` of its LoRA config) trains the real encoder
//! plugin, and the keys are honoured: `save_total_limit`, `metric_for_best_model` with
//! `greater_is_better`, `load_best_model_at_end`, `model_config.output_dir`, `train_files`.

use candle_core::{Device, Tensor};
use clarity_tests::encoder::write_tiny_encoder;
use clarity_tests::{plugin_lib, Project};
use std::collections::HashMap;
use std::path::Path;

struct Keys<'a> {
    save_total_limit: usize,
    greater_is_better: bool,
    load_best_model_at_end: bool,
    out: &'a str,
    learning_rate: f64,
}

fn original_yaml(keys: &Keys<'_>) -> String {
    format!(
        r#"models:
  - name: tiny
    type: encoder
    plugin: {plugin}
    enabled: true
    route: /classify/tiny
    model_config:
      model_name: tiny-bert
      num_labels: 3
      trust_remote_code: true
      output_dir: {out}
    training_config:
      max_length: 64
      batch_size: 16
      gradient_accumulation_steps: 1
      learning_rate: {lr:e}
      num_epochs: 3
      warmup_ratio: 0.1
      weight_decay: 0.01
      eval_strategy: "epoch"
      save_strategy: "epoch"
      eval_steps: null
      save_steps: null
      save_total_limit: {limit}
      logging_steps: 5
      metric_for_best_model: "eval_loss"
      greater_is_better: {greater}
      load_best_model_at_end: {load_best}
      early_stopping_patience: null
      early_stopping_threshold: 0.0
      dataloader_num_workers: 0
      optimizer: "adamw_torch"
      fp16: true
    data_config:
      train_files:
        - "/app/data/cleaned/train.json"
        - "./data/cleaned/train.json"
        - "{data}/train.json"
      valid_files:
        - "./data/cleaned/valid.json"
        - "{data}/valid.json"
      train_sample_size: 64
      valid_sample_size: 32
      label_field: "clarity_label"
      context_field: "context"
      question_field: "question"
    label_config:
      labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
      label2id: {{"Clear Reply": 0, "Clear Non-Reply": 1, "Ambivalent": 2}}
      id2label: {{"0": "Clear Reply", "1": "Clear Non-Reply", "2": "Ambivalent"}}
    tensorboard_config:
      auto_start: false
      port: 6006
      host: "127.0.0.1"
"#,
        plugin = plugin_lib("clarity-encoder").display(),
        data = clarity_tests::sample_data().display(),
        out = keys.out,
        limit = keys.save_total_limit,
        greater = keys.greater_is_better,
        load_best = keys.load_best_model_at_end,
        lr = keys.learning_rate,
    )
}

fn train(keys: &Keys<'_>) -> (Project, String) {
    let project = Project::new(&original_yaml(keys));
    write_tiny_encoder(&project.path().join("tiny-bert"), "bert", 32, 2);
    let out = project.host(&["train", "--model", "tiny"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    (project, log)
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("json")
}

/// (epoch, eval loss) of every evaluation the run recorded.
fn eval_losses(report: &serde_json::Value) -> Vec<(u64, f64)> {
    report["history"]["evaluations"]
        .as_array()
        .expect("evaluations")
        .iter()
        .map(|e| {
            (
                e["epoch"].as_u64().expect("epoch"),
                e["loss"].as_f64().expect("loss"),
            )
        })
        .collect()
}

fn checkpoints(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("checkpoint folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    names.sort();
    names
}

/// Whether every tensor of `a` equals the same-named tensor of `b`.
fn same_weights(a: &Path, b: &Path) -> bool {
    let load = |p: &Path| -> HashMap<String, Tensor> {
        candle_core::safetensors::load(p, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let (a, b) = (load(a), load(b));
    assert!(!a.is_empty());
    a.iter().all(|(name, t)| {
        let other = b
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing in the exported weights"));
        let x: Vec<f32> = t.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
        let y: Vec<f32> = other.flatten_all().and_then(|t| t.to_vec1()).expect("vec");
        x == y
    })
}

#[test]
fn the_originals_keys_pick_the_lowest_loss_epoch_and_keep_one_checkpoint() {
    let (project, log) = train(&Keys {
        save_total_limit: 1,
        greater_is_better: false,
        load_best_model_at_end: true,
        out: "out/tiny",
        learning_rate: 2e-2,
    });
    // model_config.output_dir is where the model goes.
    let dir = project.path().join("out/tiny");
    assert!(dir.join("model.onnx").is_file(), "{log}");
    assert!(!project.path().join("artifacts/tiny").exists());
    assert!(log.contains("trust_remote_code has no effect"), "{log}");
    assert!(log.contains("training runs in f32"), "{log}");

    // The values in the original's spelling reached the training job.
    let spec = read_json(&dir.join("model_spec.json"));
    let t = &spec["training_config"];
    assert_eq!(t["save_total_limit"], 1);
    assert_eq!(t["batch_size"], 16);
    assert_eq!(t["logging_steps"], 5);
    assert_eq!(t["metric_for_best_model"], "eval_loss");
    assert_eq!(t["greater_is_better"], false);
    let report = read_json(&dir.join("train_report.json"));
    assert_eq!(report["train_examples"], 64);
    assert_eq!(report["valid_examples"], 32);
    // 64 pairs in batches of 16, 3 epochs.
    assert_eq!(report["report"]["steps"], 12);
    assert!(
        report["valid_source"]
            .as_str()
            .is_some_and(|s| s.ends_with("valid.json")),
        "{report}"
    );

    // save_total_limit: 1 keeps exactly one step checkpoint (the newest) on disk.
    let kept = checkpoints(&dir.join("checkpoints"));
    assert_eq!(kept, vec!["step-00000012".to_string()], "{log}");

    // eval_loss, lower is better: the kept epoch is the lowest-loss one.
    let losses = eval_losses(&report);
    eprintln!("evaluation losses by epoch: {losses:?}");
    assert_eq!(losses.len(), 3, "{report}");
    let lowest = losses
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|e| e.0)
        .expect("an evaluation");
    // At this learning rate the loss is lowest before the last epoch, so best and last differ.
    assert_ne!(lowest, 3, "{losses:?}");
    assert_eq!(
        report["report"]["best_epoch"].as_u64(),
        Some(lowest),
        "{report}"
    );
    assert!(
        log.contains("keeping the best model by lower eval_loss"),
        "{log}"
    );
    // ...and its weights are the exported ones (best.safetensors holds the best epoch's).
    assert!(same_weights(
        &dir.join("checkpoints/best.safetensors"),
        &dir.join("model.safetensors")
    ));
    assert!(!same_weights(
        &dir.join("checkpoints/step-00000012/weights.safetensors"),
        &dir.join("model.safetensors")
    ));
}

#[test]
fn without_load_best_model_at_end_the_last_epoch_is_exported() {
    // greater_is_better: true on a loss picks the highest-loss epoch as "best": the direction
    // is followed even where it is odd, and load_best_model_at_end: false ignores it anyway.
    let (project, log) = train(&Keys {
        save_total_limit: 2,
        greater_is_better: true,
        load_best_model_at_end: false,
        out: "artifacts/tiny",
        learning_rate: 1e-3,
    });
    let dir = project.path().join("artifacts/tiny");
    assert_eq!(
        checkpoints(&dir.join("checkpoints")),
        vec!["step-00000008".to_string(), "step-00000012".to_string()]
    );
    let report = read_json(&dir.join("train_report.json"));
    assert_eq!(report["report"]["best_epoch"].as_u64(), Some(3), "{report}");
    assert!(log.contains("load_best_model_at_end is false"), "{log}");
    // The exported weights are the last step's, not best.safetensors' (the highest loss).
    assert!(same_weights(
        &dir.join("checkpoints/step-00000012/weights.safetensors"),
        &dir.join("model.safetensors")
    ));
    let losses = eval_losses(&report);
    eprintln!("evaluation losses by epoch: {losses:?}");
    let highest = losses
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|e| e.0)
        .expect("an evaluation");
    assert_ne!(highest, 3, "{losses:?}");
    assert!(!same_weights(
        &dir.join("checkpoints/best.safetensors"),
        &dir.join("model.safetensors")
    ));
}

#[test]
fn train_files_with_no_existing_file_name_every_path_tried() {
    let project = Project::new(
        "- name: c\n  plugin: classic-template\n  data_config:\n    train_files: [missing/train.json, /nowhere/train.json]\n",
    );
    // Run from a subfolder: each relative entry is looked for beside models.yaml, then
    // in the working directory.
    let cwd = project.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let out = clarity_tests::host_command(&project.config(), &cwd, &["train", "--model", "c"])
        .output()
        .expect("run clarity-host");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("none of these files exists"))
        .unwrap_or_else(|| panic!("{log}"));
    let beside_config = project.path().join("missing/train.json");
    assert!(
        line.contains(&format!(
            "none of these files exists: {}, missing/train.json, /nowhere/train.json.",
            beside_config.display()
        )),
        "{line}"
    );
    assert!(line.contains("Set `train_file: <path>`"), "{line}");
}
