use super::sample::shuffle;
use super::*;
use clarity_sdk::config::DataConfig;
use std::fs;

fn cfg() -> DataConfig {
    DataConfig::default()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn spec(yaml_extra: &str) -> ModelSpec {
    let text = format!("name: m\ntype: classic\n{yaml_extra}");
    serde_yaml::from_str(&text).unwrap()
}

fn config_in(dir: &Path, spec: &ModelSpec) -> Config {
    Config {
        path: dir.join("models.yaml"),
        dir: dir.to_path_buf(),
        models: vec![spec.clone()],
    }
}

/// `n` records per label, JSON list.
fn dataset(labels: &[(&str, usize)]) -> String {
    let mut items = Vec::new();
    for (label, n) in labels {
        for i in 0..*n {
            items.push(serde_json::json!({
                "question": format!("q {label} {i}"),
                "context": format!("c {label} {i}"),
                "clarity_label": label,
            }));
        }
    }
    serde_json::to_string_pretty(&items).unwrap()
}

#[test]
fn json_list_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.json",
        "[\n  {\"question\": \"q1\", \"context\": \"c1\", \"clarity_label\": \"A\"},\n  {\n    \"question\": \"q2 [with] {brackets} \\\"quoted\\\"\",\n    \"context\": \"c2\",\n    \"clarity_label\": 3\n  },\n  {\"question\": \"q3\", \"context\": \"c3\"}\n]\n",
    );
    let records = read_records(&path, &cfg()).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].label.as_deref(), Some("A"));
    assert_eq!(records[1].question, "q2 [with] {brackets} \"quoted\"");
    assert_eq!(records[1].label.as_deref(), Some("3"));
    assert_eq!(records[2].label, None);
    assert!(
        records[0].location.ends_with("t.json:2"),
        "{}",
        records[0].location
    );
    assert!(records[1].location.ends_with("t.json:3"));
    assert!(records[2].location.ends_with("t.json:8"));
    assert_eq!(records[2].number, 3);
}

#[test]
fn json_lines_and_sniffing() {
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"question\": \"q1\", \"context\": \"c1\", \"clarity_label\": true}\n\n{\"question\": \"q2\", \"context\": \"c2\", \"clarity_label\": \"B\"}\r\n";
    for name in ["t.jsonl", "t.ndjson", "t.json", "t.data"] {
        let path = write(dir.path(), name, text);
        let records = read_records(&path, &cfg()).unwrap();
        assert_eq!(records.len(), 2, "{name}");
        assert_eq!(records[0].label.as_deref(), Some("true"));
        assert!(
            records[1].location.ends_with(&format!("{name}:3")),
            "{}",
            records[1].location
        );
        assert_eq!(records[1].number, 2);
    }
    let path = write(
        dir.path(),
        "list.data",
        "[{\"question\": \"q\", \"context\": \"c\"}]",
    );
    assert_eq!(read_records(&path, &cfg()).unwrap().len(), 1);
    let path = write(dir.path(), "t.txt", "question,context\nq,c\n");
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(err.contains("unknown data format"), "{err}");
    let path = write(dir.path(), "empty.json", " \n");
    assert!(read_records(&path, &cfg()).unwrap().is_empty());
}

#[test]
fn csv_with_quoted_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let text = "question,context,clarity_label,extra\n\"q1, really?\",\"Q: a\nA: \"\"b\"\"\",A,x\nq2,c2,,y\nq3,c3,B,z\n";
    let path = write(dir.path(), "t.csv", text);
    let records = read_records(&path, &cfg()).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].question, "q1, really?");
    assert_eq!(records[0].context, "Q: a\nA: \"b\"");
    assert_eq!(records[1].label, None);
    assert!(records[0].location.ends_with("t.csv:2"));
    assert!(
        records[1].location.ends_with("t.csv:4"),
        "{}",
        records[1].location
    );
    assert!(records[2].location.ends_with("t.csv:5"));

    let path = write(
        dir.path(),
        "t.tsv",
        "question\tcontext\tclarity_label\nq\tc\tA\n",
    );
    assert_eq!(
        read_records(&path, &cfg()).unwrap()[0].label.as_deref(),
        Some("A")
    );
}

#[test]
fn field_renaming_and_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.question_field = "text".into();
    c.context_field = "ctx".into();
    c.label_field = "sentiment".into();
    c.label_mapping.insert("1".into(), "positive".into());
    c.label_mapping.insert("neg".into(), "negative".into());
    let path = write(
        dir.path(),
        "t.jsonl",
        "{\"text\": \"a\", \"ctx\": \"b\", \"sentiment\": 1}\n{\"text\": \"c\", \"ctx\": \"d\", \"sentiment\": \"neg\"}\n{\"text\": \"e\", \"ctx\": \"f\", \"sentiment\": \"other\"}\n",
    );
    let labels: Vec<_> = read_records(&path, &c)
        .unwrap()
        .into_iter()
        .map(|r| r.label.unwrap())
        .collect();
    assert_eq!(labels, ["positive", "negative", "other"]);

    let path = write(dir.path(), "t.csv", "text,ctx,sentiment\na,b,neg\n");
    assert_eq!(
        read_records(&path, &c).unwrap()[0].label.as_deref(),
        Some("negative")
    );
    let path = write(dir.path(), "bad.csv", "question,ctx,sentiment\na,b,neg\n");
    let err = read_records(&path, &c).unwrap_err().to_string();
    assert!(
        err.ends_with("bad.csv:1: the header row has no column \"text\" (data_config.question_field); its columns are: question, ctx, sentiment"),
        "{err}"
    );
}

#[test]
fn missing_and_wrong_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.jsonl",
        "{\"question\": \"q\", \"context\": \"c\"}\n{\"context\": \"c\", \"label\": \"A\"}\n",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t.jsonl:2: record 2 has no field \"question\" (data_config.question_field); its fields are: context, label"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "t.json",
        "[\n{\"question\": \"q\", \"context\": \"c\"},\n{\"question\": \"q\", \"context\": 5}\n]",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t.json:3: record 2: field \"context\" (data_config.context_field) is a number, expected a string"),
        "{err}"
    );
    let path = write(dir.path(), "t2.json", "[1]");
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t2.json:1: record 1 is a number, expected an object"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "t3.json",
        "{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": [1]}",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.contains("t3.json:1: record 1: field \"clarity_label\""),
        "{err}"
    );
}

#[test]
fn malformed_files_have_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "t.json",
        "[\n  {\"question\": \"q\",\n   \"context\": }\n]",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t.json:3:15: invalid JSON: expected value"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "t.jsonl",
        "{\"question\": \"q\", \"context\": \"c\"}\n\n{\"question\": \"q\" \"context\": \"c\"}\n",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t.jsonl:3:18: invalid JSON: expected `,` or `}`"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "t.csv",
        "question,context,clarity_label\nq,c,A\nq,c\n",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(
        err.ends_with("t.csv:3: invalid CSV: this record has 2 fields but the header row has 3"),
        "{err}"
    );
    let path = write(
        dir.path(),
        "obj.json",
        "[{\"question\": \"q\", \"context\": \"c\"}",
    );
    let err = read_records(&path, &cfg()).unwrap_err().to_string();
    assert!(err.contains("obj.json:1:"), "{err}");
    let missing = dir.path().join("nope.json");
    let err = read_records(&missing, &cfg()).unwrap_err().to_string();
    assert!(
        err.contains("nope.json: cannot read the data file"),
        "{err}"
    );
}

#[test]
fn unknown_labels_are_reported_with_location() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.jsonl",
        "{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"A\"}\n{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"Z\"}\n{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"Y\"}\n",
    );
    let s = spec("label_config: {labels: [A, B]}\ndata_config: {train_file: train.jsonl}\n");
    let config = config_in(dir.path(), &s);
    let err = prepare_training(&config, &s).unwrap_err().to_string();
    assert!(
        err.ends_with("train.jsonl:2: record 2 has label \"Z\", which is not one of label_config.labels (\"A\", \"B\"); 2 records in this file have such labels: \"Y\", \"Z\"; add it there or map it with data_config.label_mapping"),
        "{err}"
    );

    let s = spec("label_config: {labels: [A, B]}\ndata_config: {train_file: train.jsonl, label_mapping: {Z: B, Y: A}}\n");
    let data = prepare_training(&config_in(dir.path(), &s), &s).unwrap();
    assert_eq!(data.labels, ["A", "B"]);
    assert!(!data.labels_derived);
}

#[test]
fn missing_labels_and_train_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.json",
        "[{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"A\"},\n {\"question\": \"q\", \"context\": \"c\"}]",
    );
    let s = spec("data_config: {train_file: train.json}\n");
    let err = prepare_training(&config_in(dir.path(), &s), &s)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("train.json:2: record 2 has no label: field \"clarity_label\" (data_config.label_field) is missing or empty"),
        "{err}"
    );
    let s = spec("");
    let err = prepare_training(&config_in(dir.path(), &s), &s)
        .unwrap_err()
        .to_string();
    // No train_file: the original's default candidates are searched, and every path tried
    // is named.
    assert!(
        err.starts_with(
            "model \"m\" has no training data: none of these files exists: /app/data/cleaned/train.json, "
        ),
        "{err}"
    );
    assert!(err.contains("../../data/cleaned/train.json"), "{err}");
    assert!(
        err.contains("Set `train_file: <path>` under `data_config:`"),
        "{err}"
    );
}

#[test]
fn derived_labels_are_sorted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.json",
        &dataset(&[("b", 5), ("c", 5), ("a", 5)]),
    );
    let s = spec("data_config: {train_file: train.json, valid_split: 0}\n");
    let data = prepare_training(&config_in(dir.path(), &s), &s).unwrap();
    assert_eq!(data.labels, ["a", "b", "c"]);
    assert!(data.labels_derived);
    assert_eq!(data.train.len(), 15);
    assert!(data.valid.is_empty());
    assert_eq!(data.train[0].label, 1);
    assert!(data.valid_source.starts_with("none"));

    let s = spec("model_config: {num_labels: 2}\ndata_config: {train_file: train.json}\n");
    let err = prepare_training(&config_in(dir.path(), &s), &s)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("num_labels is 2 but the training data has 3 labels"),
        "{err}"
    );

    write(dir.path(), "one.json", &dataset(&[("a", 5)]));
    let s = spec("data_config: {train_file: one.json}\n");
    let err = prepare_training(&config_in(dir.path(), &s), &s)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has only the label \"a\""), "{err}");
}

#[test]
fn stratified_split() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "train.json",
        &dataset(&[("a", 60), ("b", 30), ("c", 10), ("d", 1)]),
    );
    let s = spec("data_config: {train_file: train.json, valid_split: 0.2}\n");
    let config = config_in(dir.path(), &s);
    let data = prepare_training(&config, &s).unwrap();
    let valid = label_counts(&data.valid, &data.labels);
    let train = label_counts(&data.train, &data.labels);
    assert_eq!(valid.values().copied().collect::<Vec<_>>(), [12, 6, 2, 0]);
    assert_eq!(train.values().copied().collect::<Vec<_>>(), [48, 24, 8, 1]);
    assert!(
        data.valid_source.starts_with("20% of "),
        "{}",
        data.valid_source
    );
    assert!(data.valid_source.contains("train.json"));
    assert_eq!((data.train_available, data.valid_available), (81, 20));
    // No overlap, nothing lost.
    let mut all: Vec<_> = data
        .train
        .iter()
        .chain(&data.valid)
        .map(|e| e.question.clone())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 101);
    // Deterministic.
    assert_eq!(prepare_training(&config, &s).unwrap(), data);
    // Another seed holds out other records.
    let s2 = spec("data_config: {train_file: train.json, valid_split: 0.2, seed: 7}\n");
    assert_ne!(prepare_training(&config, &s2).unwrap().valid, data.valid);
}

#[test]
fn sampling_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "train.json", &dataset(&[("a", 50), ("b", 50)]));
    write(dir.path(), "valid.json", &dataset(&[("a", 20), ("b", 20)]));
    let yaml = |seed: &str| {
        spec(&format!(
            "training_config: {{seed: {seed}}}\ndata_config: {{train_file: train.json, valid_file: valid.json, train_sample_size: 10, valid_sample_size: 5}}\n"
        ))
    };
    let s = yaml("1");
    let config = config_in(dir.path(), &s);
    let a = prepare_training(&config, &s).unwrap();
    assert_eq!((a.train.len(), a.valid.len()), (10, 5));
    assert_eq!((a.train_available, a.valid_available), (100, 40));
    assert!(a.valid_source.ends_with("valid.json"));
    assert_eq!(prepare_training(&config, &s).unwrap(), a);
    let b = prepare_training(&config, &yaml("2")).unwrap();
    assert_ne!(a.train, b.train);
    assert_ne!(a.valid, b.valid);
    // The sample keeps file order.
    let numbers: Vec<usize> = a
        .train
        .iter()
        .map(|e| {
            let i: usize = e.question.rsplit(' ').next().unwrap().parse().unwrap();
            i + if e.label == 1 { 50 } else { 0 }
        })
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    // data_config.seed wins over training_config.seed.
    let c = spec("training_config: {seed: 1}\ndata_config: {seed: 2, train_file: train.json, valid_file: valid.json, train_sample_size: 10, valid_sample_size: 5}\n");
    assert_eq!(prepare_training(&config, &c).unwrap().train, b.train);
    // A sample larger than the data keeps everything.
    let d = spec(
        "data_config: {train_file: train.json, valid_file: valid.json, train_sample_size: 1000}\n",
    );
    assert_eq!(prepare_training(&config, &d).unwrap().train.len(), 100);
}

#[test]
fn sampling_values_are_stable() {
    // Pin the exact draws so a dependency update cannot silently change every sample.
    assert_eq!(
        sample_indices(100, 5, &mut rng(42, STREAM_TRAIN_SAMPLE)),
        SAMPLE_42
    );
    let mut items: Vec<usize> = (0..8).collect();
    shuffle(&mut items, &mut rng(42, STREAM_SPLIT));
    assert_eq!(items, SHUFFLE_42);
}

const SAMPLE_42: [usize; 5] = [46, 57, 63, 78, 90];
const SHUFFLE_42: [usize; 8] = [1, 2, 3, 7, 6, 5, 4, 0];

#[test]
fn load_labelled_checks_against_model_labels() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "test.csv",
        "question,context,clarity_label\nq,c,B\nq,c,A\nq,c,X\n",
    );
    let labels = vec!["A".to_string(), "B".to_string()];
    let s = spec("data_config: {label_mapping: {X: A}}\n");
    let examples = load_labelled(&path, &s, &labels).unwrap();
    assert_eq!(
        examples.iter().map(|e| e.label).collect::<Vec<_>>(),
        [1, 0, 0]
    );
    let err = load_labelled(&path, &spec(""), &labels)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.csv:4: record 3 has label \"X\", which is not one of the labels of model \"m\" (\"A\", \"B\")"),
        "{err}"
    );
}

#[test]
fn sample_dataset_files_agree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    if !root.join("valid.csv").exists() {
        return;
    }
    let c = cfg();
    let json = read_records(&root.join("valid.json"), &c).unwrap();
    let jsonl = read_records(&root.join("valid.jsonl"), &c).unwrap();
    let csv = read_records(&root.join("valid.csv"), &c).unwrap();
    assert!(!json.is_empty());
    let strip = |rs: Vec<Record>| {
        rs.into_iter()
            .map(|r| (r.question, r.context, r.label))
            .collect::<Vec<_>>()
    };
    let json = strip(json);
    assert_eq!(json, strip(jsonl));
    assert_eq!(json, strip(csv));
    assert!(json.iter().all(|r| r.2.is_some()));

    let s = spec("data_config: {train_file: train.json, valid_file: valid.csv}\n");
    let config = config_in(&root, &s);
    let data = prepare_training(&config, &s).unwrap();
    assert_eq!(
        data.labels,
        ["Ambivalent", "Clear Non-Reply", "Clear Reply"]
    );
    assert!(!data.train.is_empty() && !data.valid.is_empty());
    let test = load_labelled(&root.join("test.json"), &s, &data.labels).unwrap();
    assert!(!test.is_empty());
}
