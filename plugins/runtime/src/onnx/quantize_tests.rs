//! The int8 pass: what it rewrites (shapes, per-channel scales, weights that dequantize back
//! to the originals), what it keeps, and each operator form run by the real ONNX Runtime
//! against the fp32 graph.

use super::*;
use crate::onnx::{Dim, ElemType, GraphBuilder, OPSET};
use crate::serve::{init_ort, OrtClassifier};
use crate::tokenize::Encoded;
use clarity_sdk::config::Device;

const VOCAB: usize = 40;
const HIDDEN: usize = 32;
const INNER: usize = 24;
const LABELS: usize = 3;

/// Deterministic values in [-1, 1), with one large column so per-channel scales differ.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|k| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let x = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if k % INNER == 5 {
                x * 4.0
            } else {
                x
            }
        })
        .collect()
}

/// ids → embedding → mean over the sequence → `W1 + b1` → ReLU → `W2 + b2` (3 labels).
/// `w1_as` picks how W1 is stored: `f32`, `f16` (Cast) or `int8` (DequantizeLinear).
fn model(w1_as: &str) -> ModelProto {
    let mut g = GraphBuilder::new("quantize_me");
    let dims: [Dim; 2] = ["batch".into(), "seq".into()];
    let ids = g.input("input_ids", ElemType::Int64, &dims);
    g.input("attention_mask", ElemType::Int64, &dims);
    let emb = g.weight("emb", &[VOCAB, HIDDEN], &values(VOCAB * HIDDEN, 1));
    let x = g.gather(&emb, &ids, 0);
    let pooled = g.reduce_mean(&x, &[1], false);
    let w1_values = values(HIDDEN * INNER, 2);
    let w1 = match w1_as {
        "f16" => g.weight_f16("w1", &[HIDDEN, INNER], &w1_values),
        "int8" => {
            let (q, s) = g.weight_int8("w1", [HIDDEN, INNER], &w1_values, 1);
            g.dequantize_linear(&q, &s, 1)
        }
        _ => g.weight("w1", &[HIDDEN, INNER], &w1_values),
    };
    let b1 = g.weight("b1", &[INNER], &values(INNER, 3));
    let h = g.linear(&pooled, &w1, Some(&b1));
    let h = g.relu(&h);
    let w2 = g.weight("w2", &[INNER, LABELS], &values(INNER * LABELS, 4));
    let b2 = g.weight("b2", &[LABELS], &values(LABELS, 5));
    let y = g.linear(&h, &w2, Some(&b2));
    g.output(
        &y,
        "logits",
        ElemType::Float,
        &["batch".into(), (LABELS as i64).into()],
    );
    g.finish(OPSET)
}

fn tensor<'a>(model: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    model
        .graph
        .as_ref()?
        .initializer
        .iter()
        .find(|t| t.name.as_deref() == Some(name))
}

fn f32s(t: &TensorProto) -> Vec<f32> {
    t.raw_data
        .as_ref()
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ops(model: &ModelProto) -> Vec<String> {
    let graph = model.graph.as_ref().unwrap();
    graph
        .node
        .iter()
        .map(|n| n.op_type.clone().unwrap())
        .collect()
}

#[test]
fn matmul_weights_get_one_scale_per_output_channel_and_dequantize_to_the_originals() {
    let (q, summary) = quantize_dynamic(model("f32"), &QuantizeOptions::default()).unwrap();
    assert_eq!(
        summary,
        QuantizeSummary {
            matmuls: 1,
            gathers: 1,
            kept_f32: 1
        }
    );
    let w1 = values(HIDDEN * INNER, 2);
    let stored = tensor(&q, "w1_quantized").expect("int8 W1");
    assert_eq!(stored.dims, [HIDDEN as i64, INNER as i64]);
    assert_eq!(stored.data_type, Some(DataType::Int8 as i32));
    let scales = f32s(tensor(&q, "w1_scale").expect("W1 scales"));
    assert_eq!(scales.len(), INNER);
    let raw = stored.raw_data.as_ref().unwrap();
    for n in 0..INNER {
        let max = (0..HIDDEN)
            .map(|k| w1[k * INNER + n].abs())
            .fold(0f32, f32::max);
        let qmax = QuantizeOptions::default().weights.qmax();
        assert!(
            (scales[n] - max / qmax).abs() < 1e-7,
            "column {n}: {} vs {}",
            scales[n],
            max / qmax
        );
        for k in 0..HIDDEN {
            let back = raw[k * INNER + n] as i8 as f32 * scales[n];
            let err = (back - w1[k * INNER + n]).abs();
            assert!(err <= scales[n] / 2.0 + 1e-6, "w1[{k},{n}] off by {err}");
        }
    }
    // The large column got its own, larger scale.
    assert!(scales[5] > 2.0 * scales[4], "{scales:?}");
    // The f32 originals are gone; the 3-label head and the biases stay f32.
    assert!(tensor(&q, "w1").is_none() && tensor(&q, "emb").is_none());
    assert_eq!(
        tensor(&q, "w2").unwrap().data_type,
        Some(DataType::Float as i32)
    );
    assert!(tensor(&q, "b1").is_some());
    // The embedding: int8 rows, one scale per row.
    let emb = tensor(&q, "emb_quantized").expect("int8 table");
    assert_eq!(emb.dims, [VOCAB as i64, HIDDEN as i64]);
    assert_eq!(f32s(tensor(&q, "emb_scale").unwrap()).len(), VOCAB);
    let ops = ops(&q);
    for op in [
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "Cast",
        "Mul",
        "MatMul",
    ] {
        assert!(ops.iter().any(|o| o == op), "{op} missing from {ops:?}");
    }
    assert!(q
        .metadata_props
        .iter()
        .any(|p| p.key.as_deref() == Some(QUANTIZATION_KEY)));
}

#[test]
fn f16_and_int8_stored_weights_are_read_back_and_requantized() {
    for how in ["f16", "int8"] {
        let (q, summary) = quantize_dynamic(model(how), &QuantizeOptions::default()).unwrap();
        assert_eq!(summary.matmuls, 1, "{how}");
        let ops = ops(&q);
        assert!(
            !ops.iter().any(|o| o == "DequantizeLinear"),
            "{how}: the weight's DequantizeLinear should be pruned: {ops:?}"
        );
        assert!(
            tensor(&q, "w1_f16").is_none() && tensor(&q, "w1_int8").is_none(),
            "{how}: the stored weight should be replaced"
        );
    }
}

#[test]
fn a_graph_without_constant_weights_is_left_alone() {
    let mut g = GraphBuilder::new("plain");
    let a = g.input("a", ElemType::Float, &[Dim::Fixed(2), Dim::Fixed(32)]);
    let b = g.input("b", ElemType::Float, &[Dim::Fixed(32), Dim::Fixed(32)]);
    let y = g.matmul(&a, &b);
    g.output(&y, "y", ElemType::Float, &[Dim::Fixed(2), Dim::Fixed(32)]);
    let (q, summary) = quantize_dynamic(g.finish(OPSET), &QuantizeOptions::default()).unwrap();
    assert_eq!(summary, QuantizeSummary::default());
    assert_eq!(ops(&q), ["MatMul", "Identity"]);
}

fn ort() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    init_ort(&crate::resolve::ort_library(&root).unwrap()).unwrap();
}

fn logits(path: &std::path::Path, batch: &Encoded) -> Vec<Vec<f32>> {
    OrtClassifier::load(path, Device::Cpu, Some(1))
        .unwrap()
        .logits(batch)
        .unwrap()
}

/// Every form and weight range loads in ONNX Runtime and scores within 3% of the largest
/// fp32 logit: the activations are quantized per tensor, so each matmul adds noise of about
/// half a step of its input's range (1/510 of it) times the weights' norm; over two matmuls
/// on logits up to ~8 that is ~0.15 at worst.
#[test]
fn every_form_runs_in_onnx_runtime_close_to_fp32() {
    ort();
    let dir = tempfile::tempdir().unwrap();
    let fp32 = dir.path().join("model.onnx");
    crate::onnx::save(model("f32"), &fp32).unwrap();
    let batch = Encoded {
        batch: 2,
        seq: 4,
        input_ids: vec![1, 7, 39, 3, 22, 22, 0, 15],
        attention_mask: vec![1; 8],
        token_type_ids: vec![0; 8],
    };
    let want = logits(&fp32, &batch);
    let largest = want.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    for form in [MatMulForm::Integer, MatMulForm::Fused, MatMulForm::Qdq] {
        for weights in [WeightRange::Int8, WeightRange::Int7, WeightRange::Uint8] {
            let options = QuantizeOptions {
                form,
                weights,
                ..QuantizeOptions::default()
            };
            let path = dir.path().join(format!("{form:?}-{weights:?}.onnx"));
            quantize_file(&fp32, &path, &options).unwrap();
            let got = logits(&path, &batch);
            let worst = got
                .iter()
                .flatten()
                .zip(want.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 0.03 * largest,
                "{form:?}/{weights:?}: off by {worst}: {got:?} vs {want:?}"
            );
            assert!(
                worst > 0.0,
                "{form:?}/{weights:?}: identical to fp32, so nothing was quantized"
            );
        }
    }
}
