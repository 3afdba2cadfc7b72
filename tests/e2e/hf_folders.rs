//! Classifiers fine-tuned by the Python Clarity (Hugging Face Trainer folders) serve as they
//! are: `clarity-host serve` loads their weights into candle, exports them with our ONNX
//! writer and answers through ONNX Runtime, with the scores candle computes for the same
//! weights, pairs fed as (context, question) as the original trained them.

use clarity_runtime::tokenize::read_tokenizer;
use clarity_tests::encoder::minilm_dir;
use clarity_tests::hf_classifier::{tiny_classifier, TinyClassifier, WeightFormat};
use clarity_tests::{plugin_lib, Project};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const LABELS: [&str; 3] = ["Clear Reply", "Ambivalent", "Clear Non-Reply"];
const QUESTION: &str = "Is it open?";
const CONTEXT: &str = "Q: Is the cafe open? A: It is open on Sundays.";

/// The RoBERTa's byte-level vocabulary (`Ġ` is the space byte), and its merges.
const ROBERTA_VOCAB: &str = r#"{"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4,
    "i": 5, "s": 6, "t": 7, "Ġ": 8, "is": 9, "Ġis": 10, "Ġit": 11, "it": 12, "?": 13,
    "Ġt": 14, "Ġi": 15}"#;
const ROBERTA_MERGES: &str = "#version: 0.2\nĠ i\nĠi s\ni s\nĠi t\ni t\n";
/// `<s> it Ġis </s></s> is Ġit ? </s>`: context "it is", question "is it?".
const ROBERTA_PAIR: [u32; 9] = [0, 12, 10, 2, 2, 9, 11, 13, 2];

fn entry(name: &str, keys: &str) -> String {
    format!(
        "- name: {name}\n  type: encoder\n  plugin: {}\n  route: /classify/{name}\n{keys}",
        plugin_lib("clarity-encoder").display()
    )
}

/// MiniLM's vocabulary files without its tokenizer.json (a slow-tokenizer save).
fn copy_bert_vocab(dir: &Path) {
    for file in [
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(minilm_dir().join(file), dir.join(file)).expect("copy vocab file");
    }
}

fn write_roberta_vocab(dir: &Path) {
    std::fs::write(dir.join("vocab.json"), ROBERTA_VOCAB).expect("vocab.json");
    std::fs::write(dir.join("merges.txt"), ROBERTA_MERGES).expect("merges.txt");
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"add_prefix_space": false, "tokenizer_class": "RobertaTokenizer"}"#,
    )
    .expect("tokenizer_config.json");
}

/// Candle's scores for the pair (`first`, `second`) tokenized by MiniLM's tokenizer.json.
fn bert_reference(model: &TinyClassifier, first: &str, second: &str) -> Vec<f32> {
    let mut tokenizer = read_tokenizer(&minilm_dir().join("tokenizer.json")).expect("tokenizer");
    // The file pads to 128; one unpadded pair is what the reference scores.
    tokenizer.with_padding(None);
    let e = tokenizer.encode((first, second), true).expect("encode");
    model.scores(e.get_ids(), e.get_type_ids())
}

/// The served scores, in label order, after checking they sum to one.
fn served_scores(body: &serde_json::Value) -> Vec<f32> {
    let scores = body["scores"].as_object().expect("scores");
    let row: Vec<f32> = LABELS
        .iter()
        .map(|l| scores[*l].as_f64().expect("score") as f32)
        .collect();
    assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{body}");
    row
}

fn assert_close(route: &str, served: &[f32], expected: &[f32]) {
    let worst = served
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-4,
        "{route}: served {served:?}, candle {expected:?}"
    );
}

/// The reference must tell inputs apart, or matching it would prove nothing.
fn assert_discriminating(a: &[f32], b: &[f32]) {
    let spread = a.iter().cloned().fold(f32::MIN, f32::max) - a.iter().cloned().fold(1.0, f32::min);
    let moved = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(spread > 0.05 && moved > 1e-3, "{a:?} vs {b:?}");
}

#[test]
fn classifiers_fine_tuned_by_the_original_serve_with_candles_scores() {
    let project = Project::new("");
    let hf = project.path().join("hf");
    let bert = tiny_classifier("bert", 30522, &LABELS, 11);
    // BERT: safetensors + tokenizer.json; the same weights as pytorch_model.bin + vocab.txt.
    bert.write(&hf.join("bert-st"), WeightFormat::Safetensors);
    std::fs::copy(
        minilm_dir().join("tokenizer.json"),
        hf.join("bert-st/tokenizer.json"),
    )
    .expect("copy tokenizer.json");
    bert.write(&hf.join("bert-bin"), WeightFormat::Pytorch);
    copy_bert_vocab(&hf.join("bert-bin"));
    // RoBERTa: pytorch_model.bin + vocab.json/merges.txt through model_name; safetensors in
    // the model's own output_dir (the original's output_dir is the Trainer folder).
    let roberta = tiny_classifier("roberta", 16, &LABELS, 23);
    roberta.write(&hf.join("roberta-bin"), WeightFormat::Pytorch);
    write_roberta_vocab(&hf.join("roberta-bin"));
    roberta.write(&hf.join("roberta-own"), WeightFormat::Safetensors);
    write_roberta_vocab(&hf.join("roberta-own"));
    // DistilBERT: pre_classifier + classifier, pytorch_model.bin + vocab.txt.
    let distil = tiny_classifier("distilbert", 30522, &LABELS, 41);
    distil.write(&hf.join("distil-bin"), WeightFormat::Pytorch);
    copy_bert_vocab(&hf.join("distil-bin"));
    let max = "  model_config: {model_name: MODEL, max_length: 64}\n";
    let yaml = [
        entry("bert_st", &max.replace("MODEL", "hf/bert-st")),
        entry("bert_bin", &max.replace("MODEL", "hf/bert-bin")),
        entry("roberta_bin", &max.replace("MODEL", "hf/roberta-bin")),
        entry("distil_bin", &max.replace("MODEL", "hf/distil-bin")),
        entry(
            "roberta_own",
            "  output_dir: hf/roberta-own\n  model_config: {max_length: 64}\n",
        ),
    ]
    .concat();
    std::fs::write(project.config(), yaml).expect("write models.yaml");

    let bert_expected = bert_reference(&bert, CONTEXT, QUESTION);
    assert_discriminating(&bert_expected, &bert_reference(&bert, QUESTION, CONTEXT));
    let distil_expected = bert_reference(&distil, CONTEXT, QUESTION);
    assert_discriminating(
        &distil_expected,
        &bert_reference(&distil, QUESTION, CONTEXT),
    );
    let roberta_expected = roberta.scores(&ROBERTA_PAIR, &[0; 9]);
    assert_discriminating(&roberta_expected, &roberta.scores(&[0, 12, 2], &[0; 3]));

    let pair = json!({"question": QUESTION, "context": CONTEXT});
    let roberta_pair = json!({"question": "is it?", "context": "it is"});
    let check_all = |server: &clarity_tests::Server, bert_expected: &[f32]| {
        for route in ["bert_st", "bert_bin"] {
            let (status, body) = server.post_json(&format!("/classify/{route}"), &pair);
            assert_eq!(status, 200, "{route}: {body}");
            assert_close(route, &served_scores(&body), bert_expected);
        }
        let (status, body) = server.post_json("/classify/distil_bin", &pair);
        assert_eq!(status, 200, "distil_bin: {body}");
        assert_close("distil_bin", &served_scores(&body), &distil_expected);
        for route in ["roberta_bin", "roberta_own"] {
            let (status, body) = server.post_json(&format!("/classify/{route}"), &roberta_pair);
            assert_eq!(status, 200, "{route}: {body}");
            assert_close(route, &served_scores(&body), &roberta_expected);
        }
    };

    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    check_all(&server, &bert_expected);
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
    let log = server.log();
    assert_eq!(
        log.matches("importing the fine-tuned classifier").count(),
        5,
        "{log}"
    );

    // Each entry's artifact folder now serves on its own: ONNX graph, a tokenizer.json (built
    // from vocab.txt for bert_bin), the pair order recorded; the sources are untouched, except
    // the one that is its own artifact folder.
    let artifacts = project.path().join("artifacts");
    for name in ["bert_st", "bert_bin", "roberta_bin", "distil_bin"] {
        let dir = artifacts.join(name);
        for file in [
            "model.onnx",
            "tokenizer.json",
            "model.safetensors",
            "encoder_meta.json",
        ] {
            assert!(
                dir.join(file).is_file(),
                "{file} missing in {}",
                dir.display()
            );
        }
    }
    assert!(!hf.join("bert-bin/tokenizer.json").exists());
    let own = hf.join("roberta-own");
    assert!(own.join("model.onnx").is_file() && own.join("tokenizer.json").is_file());
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(own.join("encoder_meta.json")).expect("meta"),
    )
    .expect("meta json");
    assert_eq!(meta["pair_order"], "context_question", "{meta}");
    assert_eq!(meta["labels"], json!(LABELS), "{meta}");

    // Served again: the export is cached, unless its source was retrained (new weights).
    let retrained = tiny_classifier("bert", 30522, &LABELS, 99);
    retrained.write(&hf.join("bert-st"), WeightFormat::Safetensors);
    let retrained_expected = bert_reference(&retrained, CONTEXT, QUESTION);
    assert_discriminating(&retrained_expected, &bert_expected);
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let (status, body) = server.post_json("/classify/bert_st", &pair);
    assert_eq!(status, 200, "{body}");
    assert_close(
        "bert_st (retrained)",
        &served_scores(&body),
        &retrained_expected,
    );
    let (status, body) = server.post_json("/classify/bert_bin", &pair);
    assert_eq!(status, 200, "{body}");
    assert_close("bert_bin", &served_scores(&body), &bert_expected);
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
    let log = server.log();
    let imports: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("importing the fine-tuned classifier"))
        .collect();
    assert!(
        imports.len() == 1 && imports[0].contains("bert-st"),
        "{log}"
    );

    // `export` rebuilds model.onnx from the imported weights (in the model's own artifact
    // folder, and in the fine-tuned folder that is its own), and the result still answers.
    let expected_label = LABELS[roberta_expected
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)];
    for name in ["roberta_bin", "roberta_own"] {
        let out = project.host(&["export", "--model", name]);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {log}");
        assert!(!log.contains("importing"), "{name}: {log}");
        let stdout = project.host_ok(&[
            "test",
            "--model",
            name,
            "--question",
            "is it?",
            "--context",
            "it is",
            "--json",
        ]);
        let answer: serde_json::Value = serde_json::from_str(&stdout).expect("test json");
        assert_eq!(answer["clarity_label"], expected_label, "{name}: {answer}");
    }
}

#[test]
fn base_models_and_mismatched_heads_are_clear_errors() {
    let project = Project::new("");
    // A pretrained base model (no head, no id2label) is not served: train it first.
    clarity_tests::encoder::write_tiny_encoder(&project.path().join("base"), "bert", 32, 1);
    // A head for three labels, but id2label names two.
    let model = tiny_classifier("bert", 30522, &LABELS, 5);
    let odd = project.path().join("odd");
    model.write(&odd, WeightFormat::Pytorch);
    copy_bert_vocab(&odd);
    let mut config = model.config.clone();
    config["id2label"] = json!({"0": "yes", "1": "no"});
    std::fs::write(odd.join("config.json"), config.to_string()).expect("config.json");
    // A good classifier, but label_config names other labels than its id2label.
    let good = project.path().join("good");
    model.write(&good, WeightFormat::Safetensors);
    copy_bert_vocab(&good);
    let yaml = [
        entry("base", "  model_config: {model_name: base}\n"),
        entry("odd", "  model_config: {model_name: odd}\n"),
        entry(
            "relabelled",
            "  model_config: {model_name: good}\n  label_config: {labels: [a, b, c]}\n",
        ),
    ]
    .concat();
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    let ask = |name: &str| {
        let out = project.host(&[
            "test",
            "--model",
            name,
            "--question",
            "q?",
            "--context",
            "c",
        ]);
        assert!(!out.status.success(), "{name} served");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let base = ask("base");
    assert!(
        base.contains("pretrained base model")
            && base.contains("not a fine-tuned classifier")
            && base.contains("train --model base"),
        "{base}"
    );
    let odd = ask("odd");
    assert!(
        odd.contains("scores 3 labels") && odd.contains("id2label names 2"),
        "{odd}"
    );
    let relabelled = ask("relabelled");
    assert!(
        relabelled.contains("differs from label_config.labels")
            && relabelled.contains("Ambivalent")
            && relabelled.contains("\"c\""),
        "{relabelled}"
    );
}

#[test]
fn train_continues_from_a_fine_tuned_classifier_in_its_pair_order() {
    let project = Project::new("");
    let model = tiny_classifier("bert", 30522, &LABELS, 31);
    let dir = project.path().join("tuned");
    model.write(&dir, WeightFormat::Pytorch);
    copy_bert_vocab(&dir);
    let keys = format!(
        "  model_config: {{model_name: tuned, max_length: 64}}\n  training_config: {{batch_size: 8, num_epochs: 1, learning_rate: 1.0e-4}}\n  label_config: {{labels: {labels}}}\n  data_config:\n    train_file: \"{data}/train.json\"\n    valid_file: \"{data}/valid.json\"\n    train_sample_size: 16\n    valid_sample_size: 8\n",
        labels = json!(LABELS),
        data = clarity_tests::sample_data().display()
    );
    std::fs::write(project.config(), entry("tuned", &keys)).expect("write models.yaml");
    let out = project.host(&["train", "--model", "tuned"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed:\n{log}");
    // Same labels, same order: the head is the fine-tuned one, not a new one.
    assert!(
        log.contains("continuing from the fine-tuned classifier"),
        "{log}"
    );
    assert!(!log.contains("newly initialised"), "{log}");
    let artifact = project.path().join("artifacts/tuned");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(artifact.join("encoder_meta.json")).expect("meta"),
    )
    .expect("meta json");
    assert_eq!(meta["pair_order"], "context_question", "{meta}");
    assert!(meta.get("imported").is_none(), "{meta}");
    // The tokenizer was built from vocab.txt and saved beside the model.
    assert!(artifact.join("tokenizer.json").is_file());
    let stdout = project.host_ok(&[
        "test",
        "--model",
        "tuned",
        "--question",
        QUESTION,
        "--context",
        CONTEXT,
        "--json",
    ]);
    assert!(LABELS.iter().any(|l| stdout.contains(l)), "{stdout}");
}

/// A classifier someone fine-tuned and pushed to the hub serves by its hub id: the plugin
/// pulls it (here from a loopback server speaking the hub's file API) into `HF_HOME`, imports
/// it and answers with candle's scores, with no training.
#[test]
fn a_fine_tuned_classifier_on_the_hub_serves_by_its_id() {
    let project = Project::new("");
    let source = project.path().join("pushed");
    let bert = tiny_classifier("bert", 30522, &LABELS, 11);
    bert.write(&source, WeightFormat::Safetensors);
    std::fs::copy(
        minilm_dir().join("tokenizer.json"),
        source.join("tokenizer.json"),
    )
    .expect("copy tokenizer.json");
    let hub = clarity_fake_hub::FakeHub::start();
    hub.add_repo_from_dir("someone/clarity-bert", &source);
    std::fs::remove_dir_all(&source).expect("only the hub has it now");
    let yaml = entry(
        "pushed",
        "  model_config: {model_name: someone/clarity-bert, max_length: 64}\n",
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");

    let home = project.path().join("hf-home");
    let out = clarity_tests::host_command(
        &project.config(),
        project.path(),
        &["test", "--question", QUESTION, "--context", CONTEXT],
    )
    .env("HF_ENDPOINT", hub.endpoint())
    .env("HF_HOME", &home)
    .output()
    .expect("run clarity-host test");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("importing the fine-tuned classifier"), "{log}");
    assert!(!log.contains("Training"), "served without training: {log}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the answer is JSON");
    assert_close(
        "someone/clarity-bert",
        &served_scores(&body),
        &bert_reference(&bert, CONTEXT, QUESTION),
    );
    assert!(home
        .join("hub/models--someone--clarity-bert/snapshots")
        .is_dir());
}
