//! candle and ONNX Runtime agree on the same weights: for every supported family (tiny random
//! Llama, Qwen2, OPT and GPT-2 checkpoints in their own tensor layouts, adapters given
//! non-zero updates so the merge is exercised) and for SmolLM2-135M, logits match to 1e-4 on
//! a right-padded batch of different lengths.

use candle_core::Device;
use clarity_lora::arch::Family;
use clarity_lora::export;
use clarity_lora::lora::LoraSettings;
use clarity_lora::model::{BaseWeights, DecoderModel};
use clarity_lora::tiny;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::resolve;
use clarity_runtime::serve::{self, OrtClassifier};
use clarity_runtime::tokenize::Encoded;
use clarity_sdk::config::Device as DeviceChoice;
use std::path::{Path, PathBuf};

mod common;

const TOLERANCE: f32 = 1e-4;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn start_ort() {
    let library = resolve::ort_library(&workspace())
        .unwrap_or_else(|e| panic!("{e} (run ./scripts/setup.sh)"));
    serve::init_ort(&library).expect("init ONNX Runtime");
}

/// Three right-padded rows of lengths 9, 5 and 7.
fn batch() -> Encoded {
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
        token_type_ids: vec![0; 3 * seq],
    };
    for row in rows {
        for i in 0..seq {
            e.input_ids.push(row.get(i).copied().unwrap_or(0));
            e.attention_mask.push(i64::from(i < row.len()));
        }
    }
    e
}

fn lora() -> LoraSettings {
    LoraSettings {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec![
            "q_proj".into(),
            "v_proj".into(),
            "o_proj".into(),
            "down_proj".into(),
        ],
    }
}

/// Give every fresh B matrix seeded random values (standard deviation `spread`), so the
/// merge is part of what is compared, and every run compares the same model.
fn perturb_adapters(model: &DecoderModel, spread: f32) {
    let data = model.varmap_ref().data().lock().expect("vars");
    // Seeds by name order: the map's own order changes from run to run.
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let b_matrices = names.into_iter().filter(|n| n.ends_with("lora_B.weight"));
    for (seed, name) in (1..).zip(b_matrices) {
        let var = &data[name];
        // Uniform in ±√3 σ has standard deviation σ.
        let t = tiny::uniform(var.dims(), 0.0, spread * 3f32.sqrt(), seed).expect("values");
        var.set(&t).expect("set");
    }
}

/// A tiny model whose adapters are not zero (fresh B matrices are, which would hide a wrong
/// merge).
fn tiny_model(family: Family) -> DecoderModel {
    let arch = tiny::arch(family, 120);
    let base =
        BaseWeights::new(&arch, tiny::base_weights(&arch, 7).expect("weights")).expect("names");
    let settings = lora();
    let trainable = common::trainable(&settings, false);
    let (model, fresh) =
        DecoderModel::new(arch, base, &trainable, &Device::Cpu).expect("tiny model");
    assert!(fresh.iter().any(|n| n.ends_with("lora_B.weight")));
    perturb_adapters(&model, 0.5);
    model
}

fn compare(model: &DecoderModel, what: &str) {
    compare_with(model, what, false, TOLERANCE);
}

/// The ONNX file's size; logits of candle and ORT within `tolerance`.
fn compare_with(model: &DecoderModel, what: &str, int8: bool, tolerance: f32) -> u64 {
    let encoded = batch();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("model.onnx");
    let options = export::ExportOptions {
        max_length: 64,
        int8,
    };
    export::export(model, options, &path).expect("export");
    let session = OrtClassifier::load(&path, DeviceChoice::Cpu, Some(2)).expect("load ONNX");
    assert!(!session.wants_token_type_ids());
    let ort = session.logits(&encoded).expect("ORT logits");
    let tensors = TensorBatch::from_encoded(&encoded, &Device::Cpu).expect("batch");
    let candle = model
        .logits(&tensors, false)
        .expect("candle logits")
        .to_vec2::<f32>()
        .expect("logits");
    let mut worst = 0f32;
    for (a, b) in ort.iter().zip(&candle) {
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
        }
    }
    eprintln!("{what}: max |ORT - candle| = {worst:.2e}");
    assert!(
        worst < tolerance,
        "{what}: max |ORT - candle| = {worst}\nORT {ort:?}\ncandle {candle:?}"
    );
    // Padding must not leak: row 2 alone gives the same logits as in the batch.
    let alone = Encoded {
        batch: 1,
        seq: 5,
        input_ids: encoded.input_ids[9..14].to_vec(),
        attention_mask: vec![1; 5],
        token_type_ids: vec![0; 5],
    };
    let single = session.logits(&alone).expect("ORT logits");
    for (x, y) in single[0].iter().zip(&ort[1]) {
        assert!((x - y).abs() < TOLERANCE, "{what}: padding changed row 2");
    }
    std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn llama_logits_match_between_candle_and_onnx_runtime() {
    start_ort();
    compare(&tiny_model(Family::Llama), "llama");
}

#[test]
fn opt_logits_match_between_candle_and_onnx_runtime() {
    start_ort();
    compare(&tiny_model(Family::Opt), "opt");
}

#[test]
fn gpt2_logits_match_between_candle_and_onnx_runtime() {
    start_ort();
    compare(&tiny_model(Family::Gpt2), "gpt2");
}

#[test]
fn qwen2_logits_match_between_candle_and_onnx_runtime() {
    start_ort();
    compare(&tiny_model(Family::Qwen2), "qwen2");
}

/// The real SmolLM2-135M (GGUF, dequantized to f32; 30 layers, 9 query / 3 kv heads) with
/// adapters on every module, through our export, against candle.
#[test]
fn smollm2_logits_match_between_candle_and_onnx_runtime() {
    start_ort();
    let base = clarity_lora::weights::load_base(&common::smollm2(), &Device::Cpu).expect("GGUF");
    let settings = LoraSettings {
        target_modules: clarity_lora::lora::MODULES
            .iter()
            .map(|m| m.to_string())
            .collect(),
        ..lora()
    };
    let trainable = common::trainable(&settings, false);
    let (model, _) = DecoderModel::new(base.arch.clone(), base.weights, &trainable, &Device::Cpu)
        .expect("SmolLM2");
    perturb_adapters(&model, 0.02);
    compare(&model, "SmolLM2-135M");
}

/// `use_8bit`: candle with Q8_0 frozen weights against ONNX Runtime with int8 per-channel
/// weights (two different 8-bit roundings of the same merged model, so a looser bound), and
/// the int8 file far smaller than the f32 one.
#[test]
fn eight_bit_models_agree_closely_and_export_in_8_bits() {
    start_ort();
    let arch = tiny::arch(Family::Llama, 120);
    let settings = lora();
    let build = |use_8bit: bool| {
        let base =
            BaseWeights::new(&arch, tiny::base_weights(&arch, 7).expect("weights")).expect("names");
        let trainable = common::trainable(&settings, use_8bit);
        let (model, _) =
            DecoderModel::new(arch.clone(), base.clone(), &trainable, &Device::Cpu).expect("model");
        perturb_adapters(&model, 0.5);
        model
    };
    let f32_size = compare_with(&build(false), "llama f32", false, TOLERANCE);
    let int8_size = compare_with(&build(true), "llama 8-bit", true, 0.1);
    assert!(
        int8_size * 2 < f32_size,
        "int8 {int8_size} B vs f32 {f32_size} B"
    );
}

/// `model_config.quantize: int8`: `onnx::quantize` on our fp32 export (and on the `use_8bit`
/// export, whose `DequantizeLinear` weights it reads back) run by ONNX Runtime against candle.
/// Bound: 0.05 on logits. Per-channel int8 weights and per-tensor uint8 activations add about
/// 0.5% noise per matmul (tests/int8.rs of the encoder derives it); measured here ~1e-2 at most.
#[test]
fn int8_quantized_graphs_match_candle() {
    use clarity_runtime::onnx::quantize::{self, QuantizeOptions};
    start_ort();
    for (family, use_8bit) in [
        (Family::Llama, false),
        (Family::Gpt2, false),
        (Family::Llama, true),
    ] {
        let model = tiny_model(family);
        let what = format!("{family:?} (use_8bit export: {use_8bit}) int8");
        let dir = tempfile::tempdir().expect("temp dir");
        let fp32 = dir.path().join("model.onnx");
        let int8 = dir.path().join("model.int8.onnx");
        let options = export::ExportOptions {
            max_length: 64,
            int8: use_8bit,
        };
        export::export(&model, options, &fp32).expect("export");
        let summary =
            quantize::quantize_file(&fp32, &int8, &QuantizeOptions::default()).expect("quantize");
        assert!(
            // The use_8bit export's embedding is int8 already.
            summary.matmuls >= 2 * 4 && (use_8bit || summary.gathers >= 1),
            "{what}: {summary:?}"
        );
        let session = OrtClassifier::load(&int8, DeviceChoice::Cpu, Some(2)).expect("load");
        let encoded = batch();
        let ort = session.logits(&encoded).expect("ORT logits");
        let tensors = TensorBatch::from_encoded(&encoded, &Device::Cpu).expect("batch");
        let candle = model
            .logits(&tensors, false)
            .expect("candle logits")
            .to_vec2::<f32>()
            .expect("logits");
        let worst = ort
            .iter()
            .flatten()
            .zip(candle.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!("{what}: max |ORT - candle| = {worst:.2e}");
        assert!(worst < 0.05, "{what}: max |ORT - candle| = {worst}");
    }
}
