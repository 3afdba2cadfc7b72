//! `clarity_lora::gguf` on the real SmolLM2-135M GGUF (installed by scripts/setup.sh) and on
//! small GGUF files written here with candle's writer.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use clarity_lora::gguf::{read_gguf, read_gguf_tokenizer, unpermute, GgufError, GgufModel};
use clarity_lora::lora::Frozen;
use clarity_lora::model::DecoderModel;
use clarity_lora::weights::load_base;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::tokenize::Encoded;
use clarity_runtime::train::loss;
use common::smollm2;
use std::path::{Path, PathBuf};

mod common;

fn row(t: &Tensor, i: usize, n: usize) -> Vec<f32> {
    t.get(i)
        .unwrap()
        .narrow(0, 0, n)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Tensor `name` of `model` in f32, whether the file stored it as floats or quantized.
fn f32_of(model: &GgufModel, name: &str) -> Tensor {
    match model.quantized.get(name) {
        Some(q) => q.dequantize(&Device::Cpu).unwrap(),
        None => model.tensors[name].clone(),
    }
}

/// `want` as f64: the Python values are exact binary fractions, longer than f32 literals.
fn assert_close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((f64::from(*g) - w).abs() < 1e-6, "{got:?} != {want:?}");
    }
}

#[test]
fn smollm2_config_tensors_and_dtypes() {
    let started = std::time::Instant::now();
    let model = read_gguf(&smollm2(), &Device::Cpu).unwrap();
    eprintln!("read in {:?}", started.elapsed());

    let c = &model.config;
    for (key, want) in [
        ("num_hidden_layers", 30),
        ("hidden_size", 576),
        ("intermediate_size", 1536),
        ("num_attention_heads", 9),
        ("num_key_value_heads", 3),
        ("vocab_size", 49152),
        ("head_dim", 64),
        ("max_position_embeddings", 8192),
        ("bos_token_id", 1),
        ("eos_token_id", 2),
        ("pad_token_id", 2),
    ] {
        assert_eq!(c[key], want, "{key} in {c}");
    }
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["attention_bias"], false);

    // 272 GGUF tensors: embedding, final norm, 30 x 9; no lm_head (tied). The norms are
    // F32 in the file; the matrices stay quantized as stored.
    assert_eq!(model.tensors.len() + model.quantized.len(), 272);
    assert_eq!(model.tensors.len(), 61, "the norms");
    assert!(!model.tensors.contains_key("lm_head.weight"));
    assert!(!model.quantized.contains_key("lm_head.weight"));
    let dims = |name: &str| match model.quantized.get(name) {
        Some(q) => q.shape().dims().to_vec(),
        None => model.tensors[name].dims().to_vec(),
    };
    assert_eq!(dims("model.embed_tokens.weight"), [49152, 576]);
    assert_eq!(dims("model.layers.0.self_attn.q_proj.weight"), [576, 576]);
    assert_eq!(dims("model.layers.29.self_attn.k_proj.weight"), [192, 576]);
    assert_eq!(dims("model.layers.7.self_attn.v_proj.weight"), [192, 576]);
    assert_eq!(dims("model.layers.7.self_attn.o_proj.weight"), [576, 576]);
    assert_eq!(dims("model.layers.3.mlp.gate_proj.weight"), [1536, 576]);
    assert_eq!(dims("model.layers.3.mlp.down_proj.weight"), [576, 1536]);
    assert_eq!(
        dims("model.layers.3.post_attention_layernorm.weight"),
        [576]
    );
    assert_eq!(dims("model.norm.weight"), [576]);
    assert!(model
        .tensors
        .values()
        .all(|t| t.dtype() == candle_core::DType::F32));

    assert_eq!(model.dtypes.len(), 272);
    assert_eq!(model.dtypes["model.embed_tokens.weight"], "Q8_0");
    assert_eq!(
        model.dtypes["model.layers.0.self_attn.q_proj.weight"],
        "Q4_1"
    );
    assert_eq!(model.dtypes["model.layers.0.mlp.down_proj.weight"], "Q4_1");
    assert_eq!(model.dtypes["model.layers.0.input_layernorm.weight"], "F32");
    assert_eq!(model.tokenizer.get_vocab_size(true), 49152);

    // Values from the Python `gguf` package (gguf.quants.dequantize) with numpy's inverse of
    // convert_hf_to_gguf's permute (reshape(nh, hd/2, 2, in).swapaxes(1, 2)): rows 1 and 32
    // of head 0 sit at GGUF rows 2 and 1, so a missing or wrong un-permute shows here.
    // The quantized q/k rows were un-permuted as bytes (`unpermute_rows`).
    let k = &f32_of(&model, "model.layers.0.self_attn.k_proj.weight");
    assert_close(
        &row(k, 1, 3),
        &[0.203369140625, 0.09136962890625, 0.203369140625],
    );
    assert_close(&row(k, 32, 3), &[0.056640625, 0.056640625, -0.126953125]);
    assert_close(
        &row(k, 100, 3),
        &[0.2972412109375, -0.07501220703125, 0.54541015625],
    );
    let q = &f32_of(&model, "model.layers.0.self_attn.q_proj.weight");
    assert_close(
        &row(q, 1, 3),
        &[-0.1591796875, 0.39794921875, -0.0198974609375],
    );
    assert_close(
        &row(q, 32, 3),
        &[-0.1173095703125, -0.1173095703125, -0.19281005859375],
    );
    let embed = &f32_of(&model, "model.embed_tokens.weight");
    assert_close(
        &row(embed, 1, 3),
        &[-0.0238037109375, -0.015869140625, -0.0396728515625],
    );
}

/// `use_8bit` on a quantized GGUF keeps the blocks candle multiplies fast as they are in the
/// file (SmolLM2's Q8_0 embedding, byte for byte) and turns the others (its Q4_1 matrices)
/// into Q8_0 one at a time, never holding the model in f32; the model computes what the f32
/// build of the same file computes, up to the 8-bit rounding of the activations in candle's
/// quantized products, and gradients still reach the adapters.
#[test]
fn smollm2_in_8_bits_keeps_fast_blocks_and_matches_the_f32_build() {
    let file = smollm2();
    let base = load_base(&file, &Device::Cpu).unwrap();
    let settings = common::q_v_adapters();
    let build = |use_8bit| {
        let trainable = common::trainable(&settings, use_8bit);
        DecoderModel::new(
            base.arch.clone(),
            base.weights.clone(),
            &trainable,
            &Device::Cpu,
        )
        .unwrap()
        .0
    };
    let (kept, dense) = (build(true), build(false));
    assert_eq!(kept.frozen_formats(), "Q8_0");
    assert_eq!(dense.frozen_formats(), "f32");
    assert!(dense.frozen_bytes() > 3 * kept.frozen_bytes());
    let stored = read_gguf(&file, &Device::Cpu).unwrap();
    let Frozen::Quantized(embed) = &kept.embed else {
        panic!("the embedding is not quantized");
    };
    assert_eq!(
        embed.data().unwrap(),
        stored.quantized["model.embed_tokens.weight"]
            .data()
            .unwrap(),
        "the Q8_0 embedding is not the file's own blocks"
    );

    let ids = base.tokenizer.encode("Q: Will you? A: No.", false).unwrap();
    let ids: Vec<i64> = ids.get_ids().iter().map(|&i| i64::from(i)).collect();
    let encoded = Encoded {
        batch: 1,
        seq: ids.len(),
        attention_mask: vec![1; ids.len()],
        token_type_ids: vec![0; ids.len()],
        input_ids: ids,
    };
    let batch = TensorBatch::from_encoded(&encoded, &Device::Cpu).unwrap();
    let logits = kept.logits(&batch, false).unwrap();
    let reference = dense.logits(&batch, false).unwrap();
    let error = ((&logits - &reference)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap())
    .to_scalar::<f32>()
    .unwrap()
    .sqrt()
        / reference
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
    eprintln!("relative difference of the logits, 8-bit vs f32: {error}");
    assert!(error < 0.08, "{error}");

    let targets = Tensor::new(&[1u32], &Device::Cpu).unwrap();
    let grads = loss::cross_entropy(&kept.logits(&batch, true).unwrap(), &targets, None)
        .unwrap()
        .backward()
        .unwrap();
    let data = kept.varmap_ref().data().lock().unwrap();
    let b = &data["layers.0.self_attn.q_proj.lora_B.weight"];
    let g = grads
        .get(b.as_tensor())
        .expect("a gradient for layer 0's q adapter");
    assert!(
        g.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

/// Ids from Python: the tokenizer built here, saved as JSON and loaded with `tokenizers`
/// 0.23.3, and transformers 5.24's own GGUF tokenizer converter
/// (`convert_gguf_tokenizer("llama", metadata)`, metadata read by the `gguf` package) gave
/// these same ids for all of them (17/17 strings checked, including these).
const SMOLLM2_IDS: &[(&str, &[u32])] = &[
    ("Hello, world!", &[19556, 28, 905, 17]),
    (
        "The year 2024 had 366 days.",
        &[
            504, 713, 216, 34, 32, 34, 36, 761, 216, 35, 38, 38, 2009, 30,
        ],
    ),
    (
        "  multiple   spaces\tand\ttabs  ",
        &[216, 2701, 256, 5600, 197, 397, 197, 100, 7366, 256],
    ),
    (
        "line one\nline two\n\n\nend",
        &[1311, 582, 198, 1311, 827, 1116, 198, 486],
    ),
    (
        "emoji 😀🚀 and ñ",
        &[391, 33777, 40303, 218, 10813, 244, 218, 284, 5549, 126],
    ),
    (
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        &[1, 4093, 198, 26843, 665, 2, 198, 1, 520, 9531, 198],
    ),
    (
        "def f(x):\n    return x**2  # square",
        &[
            1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222,
        ],
    ),
    (
        "I'm, you're, they've, we'll, it's",
        &[
            57, 5248, 28, 346, 2316, 28, 502, 3543, 28, 392, 3060, 28, 357, 506,
        ],
    ),
    ("<|endoftext|>after<repo_name>x", &[0, 9110, 3, 104]),
    ("<|im_start", &[44, 108, 306, 79, 3738]),
    (" leading space", &[2899, 1898]),
    (
        "Don't panic: 42 is the answer.\r\n",
        &[8084, 982, 14455, 42, 216, 36, 34, 314, 260, 2988, 30, 2738],
    ),
    ("", &[]),
];

#[test]
fn smollm2_tokenizer_matches_python_and_round_trips() {
    let tok = read_gguf_tokenizer(&smollm2()).unwrap();
    for (text, want) in SMOLLM2_IDS {
        // add_special_tokens=true: SmolLM2 adds no BOS, so nothing is added.
        let enc = tok.encode(*text, true).unwrap();
        assert_eq!(enc.get_ids(), *want, "{text:?}");
        assert_eq!(tok.decode(enc.get_ids(), false).unwrap(), *text);
    }
    let enc = tok
        .encode("Ünïcödé: café, naïve, 東京, Привет", true)
        .unwrap();
    assert_eq!(
        tok.decode(enc.get_ids(), false).unwrap(),
        "Ünïcödé: café, naïve, 東京, Привет"
    );
    // Bytes with no vocabulary entry are dropped, as by HF (no unk token in the model).
    assert_eq!(tok.encode("a\u{4}b", true).unwrap().get_ids(), [81, 82]);
    // Special tokens are whole and skipped on request.
    let chat = tok.encode("<|im_start|>user\nHi<|im_end|>", true).unwrap();
    assert_eq!(tok.decode(chat.get_ids(), true).unwrap(), "user\nHi");
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
}

// ---- small files written with candle's GGUF writer ----

const HIDDEN: usize = 8;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = 4;
const FFN: usize = 32;
const TOKENS: &[&str] = &["<|endoftext|>", "a", "b", "ab", "Ġ"];

fn metadata(arch: &str, tokenizer: &str) -> Vec<(String, Value)> {
    let strings =
        |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("llama.block_count".into(), Value::U32(1)),
        ("llama.context_length".into(), Value::U32(64)),
        ("llama.embedding_length".into(), Value::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), Value::U32(FFN as u32)),
        (
            "llama.attention.head_count".into(),
            Value::U32(HEADS as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(KV_HEADS as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-6),
        ),
        (
            "tokenizer.ggml.model".into(),
            Value::String(tokenizer.into()),
        ),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strings(TOKENS)),
        ("tokenizer.ggml.merges".into(), strings(&["a b"])),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![
                Value::I32(3),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
                Value::I32(1),
            ]),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(0)),
    ]
}

fn tensors(with_output: bool) -> Vec<(String, QTensor)> {
    let dev = Device::Cpu;
    let vocab = TOKENS.len();
    let (q, kv) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("token_embd.weight".into(), vec![vocab, HIDDEN]),
        ("output_norm.weight".into(), vec![HIDDEN]),
        ("blk.0.attn_q.weight".into(), vec![q, HIDDEN]),
        ("blk.0.attn_k.weight".into(), vec![kv, HIDDEN]),
        ("blk.0.attn_v.weight".into(), vec![kv, HIDDEN]),
        ("blk.0.attn_output.weight".into(), vec![HIDDEN, q]),
        ("blk.0.ffn_gate.weight".into(), vec![FFN, HIDDEN]),
        ("blk.0.ffn_up.weight".into(), vec![FFN, HIDDEN]),
        ("blk.0.ffn_down.weight".into(), vec![HIDDEN, FFN]),
        ("blk.0.attn_norm.weight".into(), vec![HIDDEN]),
        ("blk.0.ffn_norm.weight".into(), vec![HIDDEN]),
    ];
    if with_output {
        shapes.push(("output.weight".into(), vec![vocab, HIDDEN]));
    }
    shapes
        .into_iter()
        .map(|(name, dims)| {
            let n: usize = dims.iter().product();
            let t = Tensor::arange(0f32, n as f32, &dev)
                .unwrap()
                .reshape(dims)
                .unwrap();
            // Rows of 32 can be Q8_0 (its block size).
            let dtype = if name == "blk.0.ffn_down.weight" {
                GgmlDType::Q8_0
            } else {
                GgmlDType::F32
            };
            (name, QTensor::quantize(&t, dtype).unwrap())
        })
        .collect()
}

fn write(dir: &Path, name: &str, md: &[(String, Value)], ts: &[(String, QTensor)]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    let md: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = ts.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut file, &md, &ts).unwrap();
    path
}

#[test]
fn a_small_llama_maps_names_unpermutes_q_and_k_and_keeps_an_untied_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "tiny.gguf",
        &metadata("llama", "gpt2"),
        &tensors(true),
    );
    let model = read_gguf(&path, &Device::Cpu).unwrap();

    assert_eq!(model.config["tie_word_embeddings"], false);
    assert_eq!(model.config["pad_token_id"], 0, "falls back to eos");
    assert_eq!(model.config["rope_theta"], 10000.0, "llama default");
    assert_eq!(model.config["rms_norm_eps"], 1e-6);
    assert_eq!(model.config["vocab_size"], TOKENS.len());
    assert_eq!(model.tensors.len(), 11);
    assert_eq!(model.quantized.len(), 1, "down_proj is stored in Q8_0");
    assert!(model.tensors.contains_key("lm_head.weight"));
    assert_eq!(model.dtypes["model.layers.0.mlp.down_proj.weight"], "Q8_0");

    let stored = |dims: (usize, usize)| {
        Tensor::arange(0f32, (dims.0 * dims.1) as f32, &Device::Cpu)
            .unwrap()
            .reshape(dims)
            .unwrap()
    };
    let same = |a: &Tensor, b: &Tensor| {
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let q = &model.tensors["model.layers.0.self_attn.q_proj.weight"];
    let k = &model.tensors["model.layers.0.self_attn.k_proj.weight"];
    let v = &model.tensors["model.layers.0.self_attn.v_proj.weight"];
    assert!(same(q, &unpermute(&stored((8, 8)), HEADS).unwrap()));
    assert!(same(k, &unpermute(&stored((4, 8)), KV_HEADS).unwrap()));
    assert!(!same(q, &stored((8, 8))), "q must not be used as stored");
    assert!(same(v, &stored((4, 8))), "v is not permuted");
    // Head 0's HF rows are GGUF rows 0, 2, 1, 3.
    assert_eq!(row(q, 1, 1), [16.0]);
    assert_eq!(
        model.quantized["model.layers.0.mlp.down_proj.weight"]
            .shape()
            .dims(),
        [8, 32]
    );

    let ids = model.tokenizer.encode("ab a<|endoftext|>", true).unwrap();
    assert_eq!(ids.get_ids(), [3, 4, 1, 0]);
}

fn err(path: &Path) -> GgufError {
    match read_gguf(path, &Device::Cpu) {
        Ok(_) => panic!("{} read without error", path.display()),
        Err(e) => e,
    }
}

#[test]
fn errors_name_the_file_and_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "this is not a GGUF file at all").unwrap();
    let e = err(&text);
    assert!(matches!(e, GgufError::NotGguf { .. }), "{e:?}");
    assert!(e.to_string().contains(&*text.to_string_lossy()), "{e}");

    let missing = dir.path().join("missing.gguf");
    let e = err(&missing);
    assert!(
        matches!(e, GgufError::Open { .. }) && e.to_string().contains("missing.gguf"),
        "{e}"
    );

    let mamba = write(
        dir.path(),
        "m.gguf",
        &metadata("mamba", "gpt2"),
        &tensors(false),
    );
    let e = err(&mamba).to_string();
    assert!(
        e.contains("`mamba`") && e.contains("supported: llama") && e.contains("m.gguf"),
        "{e}"
    );

    let spm = write(
        dir.path(),
        "s.gguf",
        &metadata("llama", "llama"),
        &tensors(false),
    );
    let e = err(&spm).to_string();
    assert!(e.contains("`llama` tokenizer") && e.contains("gpt2"), "{e}");

    let mut partial = tensors(false);
    partial.retain(|(name, _)| name != "blk.0.ffn_up.weight");
    let e = err(&write(
        dir.path(),
        "p.gguf",
        &metadata("llama", "gpt2"),
        &partial,
    ))
    .to_string();
    assert!(
        e.contains("`blk.0.ffn_up.weight`") && e.contains("model.layers.0.mlp.up_proj.weight"),
        "{e}"
    );

    let mut md = metadata("llama", "gpt2");
    md.retain(|(k, _)| k != "llama.embedding_length");
    let e = err(&write(dir.path(), "k.gguf", &md, &tensors(false))).to_string();
    assert!(
        e.contains("no metadata key `llama.embedding_length`"),
        "{e}"
    );

    let mut extra = tensors(false);
    let t = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    extra.push((
        "rope_freqs.weight".into(),
        QTensor::quantize(&t, GgmlDType::F32).unwrap(),
    ));
    let e = err(&write(
        dir.path(),
        "r.gguf",
        &metadata("llama", "gpt2"),
        &extra,
    ))
    .to_string();
    assert!(e.contains("`rope_freqs.weight`"), "{e}");
}

#[test]
fn a_type_candle_cannot_dequantize_is_named() {
    // A GGUF v3 header with one IQ4_NL (ggml type 20) tensor, which candle does not read.
    let mut bytes = Vec::new();
    bytes.extend(0x4655_4747u32.to_le_bytes()); // "GGUF"
    bytes.extend(3u32.to_le_bytes());
    bytes.extend(1u64.to_le_bytes()); // tensors
    bytes.extend(0u64.to_le_bytes()); // metadata entries
    let name = b"blk.0.attn_q.weight";
    bytes.extend((name.len() as u64).to_le_bytes());
    bytes.extend(name);
    bytes.extend(1u32.to_le_bytes()); // dims
    bytes.extend(32u64.to_le_bytes());
    bytes.extend(20u32.to_le_bytes()); // IQ4_NL
    bytes.extend(0u64.to_le_bytes()); // offset
    bytes.resize(bytes.len() + 64, 0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq.gguf");
    std::fs::write(&path, bytes).unwrap();
    let e = err(&path);
    assert!(matches!(e, GgufError::UnsupportedDtype { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.contains("IQ4_NL") && e.contains("Q4_1") && e.contains("iq.gguf"),
        "{e}"
    );
}
