use super::locate::key;
use super::*;

const README: &str = r#"- name: "roberta-large"
  type: "encoder"
  enabled: true
  route: "/classify/roberta-large"
  model_config:
    model_name: "roberta-large"
    num_labels: 3
  training_config:
    max_length: 256
    batch_size: 8
    learning_rate: 1e-5
    num_epochs: 5
    eval_strategy: "epoch"
    save_strategy: "epoch"
    early_stopping_patience: 2
  label_config:
    labels:
      - "Clear Reply"
      - "Clear Non-Reply"
      - "Ambivalent"
- name: "opt-1.3b"
  type: "lora"
  enabled: false
  route: "/classify/opt-1-3b"
  model_config:
    model_name: "facebook/opt-1.3b"
    use_8bit: true
  training_config:
    batch_size: 2
    gradient_accumulation_steps: 8
    learning_rate: 3e-4
    num_epochs: 5
  data_config:
    train_sample_size: 600
    valid_sample_size: 200
  tensorboard_config:
    auto_start: true
    port: 6006
- name: "tfidf"
  type: "classic"
  data_config: {label_field: "sentiment", question_field: "text", context_field: "context"}
"#;

pub(super) fn file() -> &'static Path {
    Path::new("models.yaml")
}

pub(super) fn parse_ok(text: &str) -> Vec<ModelSpec> {
    match parse(file(), text) {
        Ok(models) => models,
        Err(e) => panic!("expected the config to parse, got:\n{e}"),
    }
}

pub(super) fn parse_err(text: &str) -> String {
    match parse(file(), text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(file(), text) {
        Err(ConfigError::Invalid(p)) => p,
        Err(e) => panic!("expected semantic problems, got: {e}"),
        Ok(_) => panic!("expected semantic problems for:\n{text}"),
    }
}

#[test]
fn readme_entries_parse() {
    let models = parse_ok(README);
    assert_eq!(models.len(), 3);
    let r = &models[0];
    assert_eq!(r.name, "roberta-large");
    assert_eq!(r.kind, "encoder");
    assert!(r.enabled);
    assert_eq!(r.route(), "/classify/roberta-large");
    assert_eq!(r.model_config.num_labels, Some(3));
    assert_eq!(r.training_config.max_length, Some(256));
    assert_eq!(r.training_config.learning_rate, 1e-5);
    assert_eq!(r.training_config.early_stopping_patience, Some(2));
    assert_eq!(r.label_config.labels.len(), 3);
    let o = &models[1];
    assert!(!o.enabled);
    assert!(o.model_config.use_8bit);
    assert_eq!(o.training_config.learning_rate, 3e-4);
    assert_eq!(o.training_config.gradient_accumulation_steps, 8);
    assert_eq!(o.data_config.train_sample_size, Some(600));
    assert_eq!(o.data_config.valid_sample_size, Some(200));
    assert!(o.tensorboard_config.auto_start);
    // Secure defaults: TensorBoard (no authentication) on loopback unless configured, and
    // request limits on for an entry that sets none.
    assert_eq!(o.tensorboard_config.host, "127.0.0.1");
    assert_eq!(r.tensorboard_config.host, "127.0.0.1");
    assert_eq!(r.serving_config.max_request_pairs, 256);
    assert_eq!(r.serving_config.max_text_chars, 100_000);
    let t = &models[2];
    assert_eq!(t.data_config.label_field, "sentiment");
    assert_eq!(t.data_config.question_field, "text");
    assert_eq!(t.route(), "/classify/tfidf");
}

#[test]
fn float_forms_parse() {
    for (text, want) in [
        ("1e-5", 1e-5),
        ("2e-5", 2e-5),
        ("1.0e-5", 1e-5),
        ("1E-5", 1e-5),
        ("+3e-4", 3e-4),
        ("0.001", 0.001),
        ("1", 1.0),
    ] {
        let yaml =
            format!("- name: a\n  type: classic\n  training_config:\n    learning_rate: {text}\n");
        assert_eq!(
            parse_ok(&yaml)[0].training_config.learning_rate,
            want,
            "{text}"
        );
    }
}

#[test]
fn mapping_shape_parses() {
    let indented: String = README.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!("# comment\nmodels:\n{indented}");
    assert_eq!(parse_ok(&text), parse_ok(README));
}

#[test]
fn unknown_field_names_line_and_path() {
    let text = "- name: a\n  type: classic\n- name: b\n  type: classic\n  training_config:\n    batch_size: 2\n    learnin_rate: 1e-5\n";
    let err = parse_err(text);
    assert_eq!(
        err,
        "models.yaml:7:5: models[1].training_config: unknown field `learnin_rate`, did you mean `learning_rate`?"
    );
    // Nothing close: serde's list of valid keys stays.
    let text = "- name: a\n  training_config:\n    colour: blue\n";
    let err = parse_err(text);
    assert!(
        err.starts_with("models.yaml:3:5: models[0].training_config: unknown field `colour`, expected one of `max_length`, `batch_size`"),
        "{err}"
    );
}

#[test]
fn unknown_field_in_mapping_shape() {
    let text = "models:\n  - name: a\n    type: classic\n    modle_config: {}\n";
    let err = parse_err(text);
    assert!(
        err.starts_with("models.yaml:4:5: models[0]: unknown field `modle_config`"),
        "{err}"
    );
    let err = parse_err("models: []\nextra: 1\n");
    assert!(
        err.starts_with("models.yaml:2:1: unknown field `extra`"),
        "{err}"
    );
}

#[test]
fn wrong_type_names_line_and_path() {
    let text = "- name: a\n  type: classic\n  training_config:\n    batch_size: \"eight\"\n";
    assert_eq!(
        parse_err(text),
        "models.yaml:4:17: models[0].training_config.batch_size: invalid type: string \"eight\", expected usize"
    );
    let text = "- name: a\n  type: classic\n  enabled: yes\n";
    assert_eq!(
        parse_err(text),
        "models.yaml:3:12: models[0].enabled: invalid type: string \"yes\", expected a boolean"
    );
    let text = "- name: a\n  type: classic\n  training_config:\n    class_weights: heavy\n";
    let err = parse_err(text);
    assert!(err.starts_with("models.yaml:4:"), "{err}");
    assert!(
        err.contains("models[0].training_config.class_weights: expected \"balanced\""),
        "{err}"
    );
}

#[test]
fn missing_field_names_entry() {
    let err = parse_err("- name: a\n  type: classic\n- type: classic\n");
    assert_eq!(err, "models.yaml:3:3: models[1]: missing field `name`");
}

#[test]
fn syntax_errors_have_locations() {
    let err = parse_err("- name: a\n  type: [classic\n- name: b\n");
    assert!(err.starts_with("models.yaml:3:"), "{err}");
    let err = parse_err("- name: a\n   type: classic\n");
    assert!(err.starts_with("models.yaml:2:"), "{err}");
    assert!(!err.contains(" at line "), "{err}");
    let err = parse_err("- name: a\n  name: b\n  type: classic\n");
    assert_eq!(err, "models.yaml:2:9: models[0]: duplicate field `name`");
    let err = parse_err(
        "models:\n- name: a\n  type: classic\n  training_config:\n    seed: 1\n    seed: 2\n",
    );
    assert_eq!(
        err,
        "models.yaml:6:11: models[0].training_config: duplicate field `seed`"
    );
}

#[test]
fn empty_and_odd_files() {
    for text in ["", "   \n", "# only a comment\n"] {
        let err = parse_err(text);
        assert!(
            err.starts_with("models.yaml:1:1: the file is empty"),
            "{err}"
        );
    }
    assert!(parse_err("[]").contains("no models are declared"));
    assert!(parse_err("models: []").starts_with("models.yaml:1:1: models: no models"));
    assert!(parse_err("hello").contains("found a string"));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.yaml");
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("models.yaml: cannot read"), "{err}");
}

#[test]
fn duplicate_names_name_both_lines() {
    let text = "- name: a\n  type: classic\n  route: /x\n- name: b\n  type: classic\n- name: a\n  type: classic\n  route: /y\n";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(p[0].line, Some(1));
    assert_eq!(p[0].field, "models[0].name");
    assert_eq!(p[1].line, Some(6));
    assert!(p[1].message.contains("duplicate name \"a\""));
}

#[test]
fn route_problems() {
    let text = "\
- name: a
  type: classic
- name: b
  type: classic
  route: /classify/a
- name: c
  type: classic
  enabled: false
  route: /classify/a
- name: d
  type: classic
  route: classify/d
- name: e
  type: classic
  route: /health
- name: f
  type: classic
  route: /x/{id}
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(5), "models[1].route"),
            (Some(12), "models[3].route"),
            (Some(15), "models[4].route"),
            (Some(18), "models[5].route"),
        ]
    );
    assert!(p[0].message.contains("also used by models[0]"));
    assert!(p[1].message.contains("must start with \"/\""));
    assert!(p[2].message.contains("server's own routes"));
}

#[test]
fn routes_under_v2_and_admin_are_reserved() {
    let text = "\
- name: a
  type: classic
  route: /v2/models/a/infer
- name: b
  type: classic
  route: /admin
- name: c
  type: classic
  route: /v2x/c
";
    let p = problems(text);
    let lines: Vec<Option<usize>> = p.iter().map(|p| p.line).collect();
    assert_eq!(lines, [Some(3), Some(6)], "{p:?}");
    assert!(p[0].message.contains("under /v2/"), "{}", p[0].message);
    assert!(p[1].message.contains("under /admin/"), "{}", p[1].message);
}

#[test]
fn names_and_kinds() {
    let text = "\
- name: my model
  type: classic
- name: b
  type: bert
- name: c
  type: bert
  plugin: ./libbert.so
";
    let p = problems(text);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!((p[0].line, p[0].column), (Some(1), Some(9)));
    assert!(p[0].message.contains("folder name"));
    assert_eq!(
        (p[1].line, p[1].field.as_str()),
        (Some(4), "models[1].type")
    );
    assert!(p[1]
        .message
        .contains("expected one of classic, encoder, lora"));
}

#[test]
fn label_problems() {
    let text = "\
- name: a
  type: classic
  model_config:
    num_labels: 2
  label_config:
    labels:
      - X
      - Y
      - X
  data_config:
    label_mapping:
      x: X
      z: Z
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(9), "models[0].label_config.labels[2]"),
            (Some(4), "models[0].model_config.num_labels"),
            (Some(13), "models[0].data_config.label_mapping.z"),
        ]
    );
    assert!(p[1]
        .message
        .contains("num_labels is 2 but label_config.labels lists 3"));
}

#[test]
fn range_problems_are_collected() {
    let text = "\
- name: a
  type: classic
  training_config:
    batch_size: 0
    num_epochs: 0
    gradient_accumulation_steps: 0
  data_config:
    train_sample_size: 0
    valid_sample_size: 0
    valid_split: 1.0
- name: b
  type: classic
  data_config: {valid_split: -0.5}
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(8), "models[0].data_config.train_sample_size"),
            (Some(9), "models[0].data_config.valid_sample_size"),
            (Some(10), "models[0].data_config.valid_split"),
            (Some(4), "models[0].training_config.batch_size"),
            (Some(5), "models[0].training_config.num_epochs"),
            (
                Some(6),
                "models[0].training_config.gradient_accumulation_steps"
            ),
            (Some(13), "models[1].data_config.valid_split"),
        ]
    );
    let all = parse_err(text);
    assert_eq!(all.lines().count(), 7, "{all}");
    assert!(
        all.starts_with("models.yaml:8:24: models[0].data_config.train_sample_size: "),
        "{all}"
    );
}

#[test]
fn max_batch_tokens_must_fit_one_pair() {
    let text = "\
- name: a
  type: encoder
  model_config: {model_name: m, max_length: 128}
  serving_config:
    max_batch_tokens: 100
- name: b
  type: encoder
  model_config: {model_name: m, max_length: 128}
  serving_config: {max_batch_tokens: 0}
- name: c
  type: encoder
  model_config: {model_name: m, max_length: 128}
  serving_config: {max_batch_tokens: 128}
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(5), "models[0].serving_config.max_batch_tokens"),
            (Some(9), "models[1].serving_config.max_batch_tokens"),
        ]
    );
    assert!(
        p[0].message
            .contains("max_batch_tokens 100 is less than max_length 128"),
        "{}",
        p[0].message
    );
    assert!(p[1].message.contains("at least 1"), "{}", p[1].message);
    let defaults = parse_ok("- name: d\n  type: classic\n");
    assert_eq!(
        defaults[0].serving_config.max_batch_tokens, None,
        "chosen by device"
    );
}

#[test]
fn locations_in_mapping_shape() {
    let text = "models:\n  - name: a\n    type: classic\n  - name: a\n    type: classic\n    route: /other\n";
    let p = problems(text);
    assert_eq!(p.len(), 2);
    assert_eq!((p[0].line, p[0].column), (Some(2), Some(11)));
    assert_eq!((p[1].line, p[1].column), (Some(4), Some(11)));
}

#[test]
fn load_and_helpers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("models.yaml");
    std::fs::write(&path, README).unwrap();
    let config = load(&path).unwrap();
    assert!(config.dir.is_absolute());
    assert_eq!(config.dir, dir.path());
    assert_eq!(
        config
            .enabled()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>(),
        ["roberta-large", "tfidf"]
    );
    let spec = config.model("tfidf").unwrap();
    assert_eq!(
        config.artifact_dir(spec),
        dir.path().join("artifacts").join("tfidf")
    );
    let err = config.model("nope").unwrap_err().to_string();
    assert!(
        err.ends_with(
            "no model named \"nope\"; available: roberta-large, opt-1.3b (disabled), tfidf"
        ),
        "{err}"
    );
    assert_eq!(
        config.resolve(Path::new("data/x.json")),
        dir.path().join("data/x.json")
    );
    assert_eq!(
        config.resolve(Path::new("/abs/x.json")),
        PathBuf::from("/abs/x.json")
    );

    let mut custom = spec.clone();
    custom.output_dir = Some(PathBuf::from("out/t"));
    assert_eq!(config.artifact_dir(&custom), dir.path().join("out/t"));

    let init = config.plugin_init(spec, Some(vec!["neg".into(), "pos".into()]));
    assert_eq!(init.labels(), ["neg", "pos"]);
    assert_eq!(init.config_dir, dir.path());
    assert_eq!(
        init.artifact_dir,
        dir.path().join("artifacts").join("tfidf")
    );
    let init = config.plugin_init(config.model("roberta-large").unwrap(), None);
    assert_eq!(init.labels().len(), 3);
}

#[test]
fn locator_handles_flow_style_and_anchors() {
    let text = "defaults: &d {batch_size: 4}\nmodels:\n  - {name: a, type: classic, training_config: *d}\n  - name: b\n    type: classic\n    training_config: {batch_size: 0}\n";
    // `defaults` is not a field of the mapping shape, so this is a parse error...
    assert!(parse_err(text).contains("unknown field `defaults`"));
    // ...but the locator itself copes with flow mappings.
    let locator = Locator {
        text,
        shape: Shape::Mapping,
    };
    assert_eq!(locator.nearest(0, &[key("name")]), Some((3, 12)));
    assert_eq!(
        locator.nearest(1, &[key("training_config"), key("batch_size")]),
        Some((6, 35))
    );
    assert_eq!(
        locator.nearest(1, &[key("nope"), key("deeper")]),
        Some((4, 5))
    );
}

#[test]
fn quantize_accepts_int8_and_fp32_spellings_and_names_the_choices_otherwise() {
    use clarity_sdk::config::Quantize;
    let spec = |value: &str| {
        format!("- name: a\n  type: encoder\n  model_config:\n    model_name: m\n    quantize: {value}\n")
    };
    assert_eq!(
        parse_ok(&spec("int8"))[0].model_config.quantize,
        Quantize::Int8
    );
    assert_eq!(
        parse_ok(&spec("fp32"))[0].model_config.quantize,
        Quantize::None
    );
    assert_eq!(
        parse_ok(&spec("none"))[0].model_config.quantize,
        Quantize::None
    );
    let absent = "- name: a\n  type: encoder\n  model_config:\n    model_name: m\n";
    assert_eq!(parse_ok(absent)[0].model_config.quantize, Quantize::None);
    let err = parse_err(&spec("int4"));
    assert!(
        err.starts_with("models.yaml:5:15: models[0].model_config.quantize: unknown variant `int4`, expected one of `fp32`, `none`, `int8`"),
        "{err}"
    );
}

#[test]
fn a_memory_limit_needs_process_isolation_and_room_to_start() {
    let thread = problems("- name: a\n  serving_config: {memory_limit_mb: 512}\n");
    assert_eq!(thread.len(), 1, "{thread:?}");
    assert_eq!(thread[0].field, "models[0].serving_config.memory_limit_mb");
    assert!(thread[0].message.contains("needs `isolation: process`"));
    let tiny = problems("- name: a\n  serving_config: {isolation: process, memory_limit_mb: 8}\n");
    assert!(tiny[0].message.contains("at least 64"), "{tiny:?}");
    let ok = parse_ok("- name: a\n  serving_config: {isolation: process, memory_limit_mb: 512}\n");
    assert_eq!(
        ok[0].serving_config.isolation,
        clarity_sdk::config::Isolation::Process
    );
    let wrong = parse_err("- name: a\n  serving_config: {isolation: container}\n");
    assert!(wrong.contains("unknown variant `container`"), "{wrong}");
}

#[test]
fn text_length_limit_must_be_positive_and_is_named_with_its_line() {
    let err = parse_err("- name: a\n  serving_config:\n    max_text_chars: 0\n");
    assert!(
        err.starts_with(
            "models.yaml:3:21: models[0].serving_config.max_text_chars: max_text_chars must be at least 1"
        ),
        "{err}"
    );
    let m = &parse_ok("- name: a\n  serving_config: {max_text_chars: 5000}\n")[0];
    assert_eq!(m.serving_config.max_text_chars, 5000);
}

#[test]
fn input_construction_problems_name_line_and_field() {
    let text = "\
- name: a
  type: encoder
  model_config: {model_name: m}
  data_config:
    input:
      answer_marker: \"\\nA:\"
      parts:
        - question
        - {text: answer, truncation: head_tail, tail: 64}
- name: b
  type: encoder
  model_config: {model_name: m}
  data_config:
    input: {parts: [question, answer]}
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(9), "models[0].data_config.input.parts[1].head"),
            (Some(14), "models[1].data_config.input.answer_marker"),
        ]
    );
    assert!(
        p[0].message.contains("both head and tail"),
        "{}",
        p[0].message
    );
    // A wrong name is a parse error naming the line.
    let err = parse_err(
        "- name: a\n  type: encoder\n  data_config:\n    input:\n      parts: [question, anser]\n",
    );
    assert!(err.starts_with("models.yaml:5:"), "{err}");
    assert!(err.contains("unknown variant `anser`"), "{err}");
    let ok = parse_ok(
        "- name: a\n  type: encoder\n  data_config:\n    input:\n      answer_marker: \"\\nA:\"\n      parts: [question, {text: answer, truncation: tail, max_tokens: 90}]\n",
    );
    let input = ok[0].data_config.input.as_ref().unwrap();
    assert_eq!(input.parts[1].max_tokens, Some(90));
}

#[test]
fn label_groups_problems_name_the_field() {
    let text = "\
- name: a
  type: classic
  label_config:
    labels: [yes, no]
    groups:
      yes: [explicit]
      no: [dodging, explicit]
- name: b
  type: classic
  data_config: {fine_label_field: evasion}
";
    let p = problems(text);
    let summary: Vec<(Option<usize>, &str)> =
        p.iter().map(|p| (p.line, p.field.as_str())).collect();
    assert_eq!(
        summary,
        vec![
            (Some(6), "models[0].label_config.groups"),
            (Some(10), "models[1].data_config.fine_label_field"),
        ]
    );
    assert!(
        p[0].message.contains("\"explicit\" is in both"),
        "{}",
        p[0].message
    );
    let ok = parse_ok(
        "- name: a\n  type: classic\n  label_config:\n    groups: {yes: [explicit], no: [dodging, declining]}\n  data_config: {fine_label_field: evasion, label_mapping: {Dodge: dodging}}\n",
    );
    let groups = crate::config::label_groups(&ok[0]).unwrap();
    assert_eq!(groups.fine, ["dodging", "declining", "explicit"]);
}
