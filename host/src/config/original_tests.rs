//! `models.yaml` files in the Python original's spelling: its own file's layout, every field
//! of its config dataclasses, and the errors for what does not carry over.

use super::tests::{parse_err, parse_ok};
use super::*;

/// The layout of the original's shipped `models.yaml` (three models: a disabled LoRA entry
/// with `save_total_limit`, a disabled encoder with nothing but a model name, an enabled
/// encoder with its own training values).
const ORIGINALS_FILE: &str = r#"
models:
  - name: "opt-6.7b"
    type: "lora"
    enabled: false
    route: "/classify/opt-6-7b"
    model_config:
      model_name: "facebook/opt-6.7b"
      use_8bit: true
    lora_config:
      r: 16
      alpha: 32
      dropout: 0.05
    training_config:
      max_length: 192
      batch_size: 4
      gradient_accumulation_steps: 2
      learning_rate: 5e-4
      num_epochs: 3
      save_total_limit: 3
    label_config:
      labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  - name: "roberta-large"
    type: "encoder"
    enabled: false
    route: "/classify/roberta-large"
    model_config:
      model_name: "roberta-large"
    label_config:
      labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  - name: "roberta-base"
    type: "encoder"
    enabled: true
    route: "/classify/roberta-base"
    model_config:
      model_name: "roberta-base"
    training_config:
      max_length: 192
      batch_size: 4
      gradient_accumulation_steps: 2
      learning_rate: 1e-5
      num_epochs: 3
      save_total_limit: 3
      logging_steps: 5
    label_config:
      labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
"#;

#[test]
fn the_originals_file_parses_with_the_originals_defaults() {
    let models = parse_ok(ORIGINALS_FILE);
    assert_eq!(models.len(), 3);
    let opt = &models[0].training_config;
    // Written values win; the rest are the original's LoRA defaults.
    assert_eq!(
        (
            opt.max_length,
            opt.batch_size,
            opt.gradient_accumulation_steps
        ),
        (Some(192), 4, 2)
    );
    assert_eq!((opt.learning_rate, opt.num_epochs), (5e-4, 3));
    assert_eq!((opt.logging_steps, opt.save_total_limit), (5, 3));
    assert_eq!(opt.metric_for_best_model, "eval_loss");
    assert_eq!(opt.greater_is_better, None);
    assert!(opt.load_best_model_at_end);
    assert_eq!(opt.optimizer, "adamw_torch");
    let lora = models[0].lora_config.as_ref().expect("lora_config");
    assert_eq!((lora.r, lora.alpha, lora.bias.as_str()), (16, 32.0, "none"));
    assert_eq!(lora.task_type, "CAUSAL_LM");

    // Nothing but a model name: every training value is the original's encoder default.
    let large = &models[1].training_config;
    assert_eq!(large.max_length, Some(128));
    assert_eq!(
        (large.batch_size, large.learning_rate, large.num_epochs),
        (16, 2e-5, 3)
    );
    assert_eq!(
        (large.gradient_accumulation_steps, large.logging_steps),
        (1, 10)
    );
    assert_eq!(large.save_total_limit, 3);
    assert_eq!((large.warmup_ratio, large.weight_decay), (0.1, 0.01));
    assert_eq!(large.early_stopping_threshold, 0.0);

    let base = &models[2].training_config;
    assert_eq!((base.batch_size, base.learning_rate), (4, 1e-5));
    assert_eq!((base.logging_steps, base.max_length), (5, Some(192)));
    assert!(models[2].enabled && !models[1].enabled);

    // A LoRA entry with nothing set gets the original's LoRA defaults.
    let bare = parse_ok("- name: l\n  type: lora\n")[0]
        .training_config
        .clone();
    assert_eq!(
        (bare.max_length, bare.batch_size, bare.learning_rate),
        (Some(256), 2, 3e-4)
    );
    assert_eq!(
        (
            bare.num_epochs,
            bare.gradient_accumulation_steps,
            bare.logging_steps
        ),
        (5, 8, 5)
    );
    // A max_length in model_config is not overridden by the type's default.
    let m = &parse_ok("- name: e\n  type: encoder\n  model_config: {max_length: 64}\n")[0];
    assert_eq!(
        (m.model_config.max_length, m.training_config.max_length),
        (Some(64), None)
    );
    // `type` defaults to classic, as in the original; classic keeps the schema's defaults.
    let c = &parse_ok("- name: c\n")[0];
    assert_eq!(c.kind, "classic");
    assert_eq!(
        c.training_config,
        clarity_sdk::config::TrainingConfig::default()
    );
}

/// Every field of the original's LoRA dataclasses (`LoRAModelConfig`, `LoRAConfig`,
/// `LoRATrainingConfig`, `LoRADataConfig` with the `text_field_*` of its comments,
/// `LabelConfig`, `PromptConfig`, `TensorboardConfig`).
const EVERY_LORA_KEY: &str = r#"
- name: opt
  type: lora
  enabled: true
  route: /classify/opt
  model_config:
    model_name: facebook/opt-350m
    use_8bit: false
    trust_remote_code: true
    output_dir: ./.artifacts/opt
  lora_config:
    r: 4
    alpha: 8
    dropout: 0.1
    bias: none
    task_type: CAUSAL_LM
    target_modules: [q_proj, v_proj]
  training_config:
    max_length: 200
    batch_size: 3
    gradient_accumulation_steps: 4
    learning_rate: 1e-4
    num_epochs: 2
    warmup_ratio: 0.2
    weight_decay: 0.05
    eval_strategy: steps
    save_strategy: steps
    eval_steps: 50
    save_steps: 50
    save_total_limit: 2
    logging_steps: 7
    metric_for_best_model: eval_accuracy
    greater_is_better: true
    dataloader_num_workers: 2
    optimizer: adamw_hf
    fp16: true
    bf16: false
  data_config:
    train_files: [a.json, b.json]
    valid_files: [c.json]
    train_sample_size: 600
    valid_sample_size: 200
    label_field: clarity_label
    text_field_1: q
    text_field_2: answer
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
    label2id: {"Clear Reply": 0, "Clear Non-Reply": 1, "Ambivalent": 2}
    id2label: {0: "Clear Reply", 1: "Clear Non-Reply", 2: "Ambivalent"}
  prompt_config:
    template: "Classify.\n### Context ###\n{context}\n### Question ###\n{question}\n### Label ###\n{label}\n"
  tensorboard_config:
    auto_start: true
    port: 6007
    host: "0.0.0.0"
"#;

#[test]
fn every_key_of_the_originals_lora_config_is_accepted_and_carried() {
    let m = &parse_ok(EVERY_LORA_KEY)[0];
    assert_eq!(m.output_dir, Some(PathBuf::from("./.artifacts/opt")));
    assert_eq!(m.model_config.output_dir, None, "moved to the top level");
    assert_eq!(m.model_config.trust_remote_code, Some(true));
    let t = &m.training_config;
    assert_eq!(
        (t.max_length, t.batch_size, t.num_epochs),
        (Some(200), 3, 2)
    );
    assert_eq!((t.gradient_accumulation_steps, t.logging_steps), (4, 7));
    assert_eq!(
        (t.eval_steps, t.save_steps, t.save_total_limit),
        (Some(50), Some(50), 2)
    );
    assert_eq!(t.metric_for_best_model, "eval_accuracy");
    assert_eq!(t.greater_is_better, Some(true));
    assert_eq!(
        (t.dataloader_num_workers, t.optimizer.as_str()),
        (2, "adamw_hf")
    );
    assert!(t.fp16 && !t.bf16);
    let d = &m.data_config;
    assert_eq!(
        (d.question_field.as_str(), d.context_field.as_str()),
        ("q", "answer")
    );
    assert_eq!(d.train_files.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        m.model_config.prompt_template.as_deref(),
        Some(
            "Classify.\n### Context ###\n{context}\n### Question ###\n{question}\n### Label ###\n"
        )
    );
    assert_eq!(m.tensorboard_config.port, 6007);
}

#[test]
fn a_classic_python_loader_is_one_clear_error() {
    let err = parse_err(
        "- name: roberta\n  type: classic\n  route: /classify/roberta\n  module: models.roberta_base\n  loader: load_model\n",
    );
    assert!(
        err.starts_with("models.yaml:4:11: models[0].module: "),
        "{err}"
    );
    for needle in [
        "models.roberta_base:load_model",
        "compiled plugin",
        "plugins/classic-template",
        "Writing your own classic plugin",
        "plugin:",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn label_maps_define_the_order_and_must_agree() {
    let m = &parse_ok("- name: a\n  label_config:\n    id2label: {\"1\": yes, \"0\": no}\n")[0];
    assert_eq!(m.label_config.labels, ["no", "yes"]);
    let m = &parse_ok("- name: a\n  label_config:\n    label2id: {b: 1, a: 0}\n")[0];
    assert_eq!(m.label_config.labels, ["a", "b"]);

    let err = parse_err(
        "- name: a\n  label_config:\n    label2id: {a: 0, b: 1}\n    id2label: {0: b, 1: a}\n",
    );
    assert!(
        err.contains("models[0].label_config.id2label: label_config.label2id orders the labels [\"a\", \"b\"] but label_config.id2label orders them [\"b\", \"a\"]"),
        "{err}"
    );
    let err =
        parse_err("- name: a\n  label_config:\n    labels: [a, b]\n    label2id: {a: 1, b: 0}\n");
    assert!(
        err.contains("label_config.labels lists [\"a\", \"b\"] but label_config.label2id orders them [\"b\", \"a\"]"),
        "{err}"
    );
    let err = parse_err("- name: a\n  label_config:\n    label2id: {a: 0, b: 2}\n");
    assert!(err.contains("1 is missing"), "{err}");
    let err = parse_err("- name: a\n  label_config:\n    id2label: {x: a}\n");
    assert!(err.contains("is not a whole number"), "{err}");
}

#[test]
fn both_spellings_of_one_key_are_an_error() {
    let err = parse_err("- name: a\n  output_dir: one\n  model_config: {output_dir: two}\n");
    assert!(
        err.contains("models[0].model_config.output_dir: model_config.output_dir (two) and output_dir (one) are both set and differ"),
        "{err}"
    );
    // The same folder twice is fine.
    let m = &parse_ok("- name: a\n  output_dir: one\n  model_config: {output_dir: one}\n")[0];
    assert_eq!(m.output_dir, Some(PathBuf::from("one")));

    let err = parse_err("- name: a\n  data_config: {question_field: q, text_field_1: question}\n");
    assert!(
        err.contains("models[0].data_config.text_field_1: text_field_1 is another name for question_field, and both are set"),
        "{err}"
    );
    let err = parse_err(
        "- name: a\n  type: lora\n  model_config: {prompt_template: \"{question} {context}\"}\n  prompt_config: {template: \"{question} {context} {label}\"}\n",
    );
    assert!(err.contains("are both set; keep one"), "{err}");
}

#[test]
fn prompt_templates_are_checked() {
    assert_eq!(
        prompt_from_template("Q {question} C {context} {{x}} L: {label} tail").unwrap(),
        "Q {question} C {context} {x} L: "
    );
    let err = prompt_from_template("{question} {context} {answer} {label}").unwrap_err();
    assert!(err.contains("unknown placeholder(s) {answer}"), "{err}");
    let err = prompt_from_template("{question} {label}").unwrap_err();
    assert!(err.contains("{context} exactly once (found 0)"), "{err}");
    let err = prompt_from_template("{question} {label} {context}").unwrap_err();
    assert!(err.contains("after {label}"), "{err}");
    let err = parse_err(
        "- name: a\n  type: lora\n  prompt_config:\n    template: \"{question} {label}\"\n",
    );
    assert!(
        err.starts_with("models.yaml:4:15: models[0].prompt_config.template: "),
        "{err}"
    );
}

#[test]
fn unsupported_values_name_what_is_supported() {
    let err = parse_err("- name: a\n  training_config:\n    metric_for_best_model: bleu\n");
    assert!(
        err.starts_with("models.yaml:3:28: models[0].training_config.metric_for_best_model: metric_for_best_model \"bleu\" is not supported; use one of \"eval_loss\", \"accuracy\", \"f1\", \"macro_f1\""),
        "{err}"
    );
    let err = parse_err("- name: a\n  training_config:\n    optimizer: sgd\n");
    assert!(
        err.contains("optimizer \"sgd\" is not supported; use one of adamw_torch, adamw_hf, adamw, adamw_torch_fused"),
        "{err}"
    );
    let err = parse_err("- name: a\n  training_config:\n    save_total_limit: 0\n");
    assert!(err.contains("save_total_limit must be at least 1"), "{err}");
    let err =
        parse_err("- name: a\n  type: lora\n  lora_config: {bias: all, task_type: TOKEN_CLS}\n");
    assert!(
        err.contains("bias \"all\" is not supported: only \"none\""),
        "{err}"
    );
    assert!(
        err.contains("task_type \"TOKEN_CLS\" is not supported; use CAUSAL_LM or SEQ_CLS"),
        "{err}"
    );
    for metric in ["loss", "eval_loss", "accuracy", "eval_f1", "macro_f1"] {
        parse_ok(&format!(
            "- name: a\n  training_config: {{metric_for_best_model: {metric}}}\n"
        ));
    }
}
