//! The original Clarity's LoRA example is `facebook/opt-1.3b` with `use_8bit`. No model hub
//! here, so this builds a randomly initialised OPT with OPT-1.3B's exact shapes (24 layers,
//! hidden 2048, 32 heads, FFN 8192, vocabulary 50272) as a half-precision checkpoint (what
//! the hub ships) and trains it through the plugin's own path: 8-bit frozen weights made
//! tensor by tensor while the checkpoint is consumed, LoRA r8 on q/v, batch 2 × 192.
//!
//! `cargo test --release -p clarity-lora --test opt_1_3b_shape -- --ignored --nocapture`
//! (about a minute on 2 AVX-512 cores; it prints peak RSS and seconds per step). It trains
//! with gradient checkpointing, as the shipped `opt-1.3b-lora` recipe does (2.8 GB peak);
//! `CLARITY_NO_CHECKPOINTING=1` trains without (5.2 GB on 2026-12-07, AVX-512 with VNNI).
//!
//! The real `facebook/opt-1.3b` goes through the same steps when `CLARITY_OPT_1_3B` names
//! its folder (`config.json`, `*.safetensors` or `pytorch_model.bin` converted to
//! safetensors, `tokenizer.json`; e.g. a hub snapshot folder); without it that test says so
//! and passes.

use candle_core::{DType, Device, Result, Tensor, Var};
use clarity_lora::arch::DecoderArch;
use clarity_lora::arch::Family;
use clarity_lora::lora::LoraSettings;
use clarity_lora::model::{BaseWeights, DecoderModel, Trainable};
use clarity_lora::{names, tiny, weights};
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::tokenize::Encoded;
use clarity_runtime::train::loss::cross_entropy;
use clarity_runtime::train::optim::{AdamW, AdamWConfig};
use std::time::Instant;

/// Peak resident memory of this process so far, in GB.
fn peak_rss_gb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0 / 1024.0)
}

/// Two rows of 192 token ids, the second right-padded after 150.
fn batch(vocab: u64) -> Encoded {
    let (rows, seq) = (2, 192);
    let mut ids = Vec::with_capacity(rows * seq);
    let mut mask = Vec::with_capacity(rows * seq);
    for r in 0..rows {
        let len = if r == 0 { seq } else { 150 };
        for i in 0..seq {
            let real = i < len;
            let id = (i as u64 * 7919 + r as u64 * 104_729) % vocab;
            ids.push(if real { id as i64 } else { 1 });
            mask.push(i64::from(real));
        }
    }
    Encoded {
        batch: rows,
        seq,
        input_ids: ids,
        attention_mask: mask,
        token_type_ids: vec![0; rows * seq],
    }
}

#[test]
#[ignore = "builds and trains a 1.3B-parameter model: about a minute and 3-7 GB"]
fn an_opt_1_3b_shaped_model_trains_in_8_bits_under_6_gb() -> Result<()> {
    let mut arch = tiny::arch(Family::Opt, 50_272);
    (arch.hidden_size, arch.intermediate_size, arch.num_layers) = (2048, 8192, 24);
    (arch.num_heads, arch.num_kv_heads, arch.head_dim) = (32, 32, 64);
    arch.max_positions = 2048;
    let start = Instant::now();
    let checkpoint =
        names::to_checkpoint(&arch, &tiny::canonical_weights_as(&arch, 7, DType::F16)?)?;
    let base = BaseWeights::new(&arch, checkpoint)?;
    let made_s = start.elapsed().as_secs_f64();
    let peak_checkpoint = peak_rss_gb();

    let checkpointing = std::env::var_os("CLARITY_NO_CHECKPOINTING").is_none();
    let (build_s, frozen_gb, peak_built, steps) = train_in_8_bits(&arch, base, checkpointing)?;
    let peak = peak_rss_gb();
    eprintln!(
        "OPT-1.3B shapes, use_8bit, gradient checkpointing {checkpointing}, LoRA r8 q/v, \
         batch 2 x 192: checkpoint (f16) made in \
         {made_s:.0} s, peak {peak_checkpoint:.2} GB; model built in {build_s:.0} s, frozen \
         weights {frozen_gb:.2} GB, peak {peak_built:.2} GB; s/step {steps:.1?}; peak RSS \
         {peak:.2} GB"
    );
    assert!(peak < 6.0, "peak RSS {peak:.2} GB (target: under 6 GB)");
    Ok(())
}

/// The real OPT-1.3B from the folder `CLARITY_OPT_1_3B` names, through the plugin's loader.
#[test]
#[ignore = "reads facebook/opt-1.3b from the folder CLARITY_OPT_1_3B names: minutes and about 4 GB"]
fn the_real_opt_1_3b_trains_in_8_bits_under_6_gb() -> Result<()> {
    let Some(folder) = std::env::var_os("CLARITY_OPT_1_3B").map(std::path::PathBuf::from) else {
        eprintln!(
            "skipped: set CLARITY_OPT_1_3B to a facebook/opt-1.3b folder (config.json, \
             *.safetensors, tokenizer.json) to train the real model"
        );
        return Ok(());
    };
    let start = Instant::now();
    let base = weights::load_base(&folder, &Device::Cpu)
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", folder.display())))?;
    let (arch, load_s, peak_loaded) = (base.arch, start.elapsed().as_secs_f64(), peak_rss_gb());
    assert_eq!(
        (arch.num_layers, arch.hidden_size, arch.num_heads),
        (24, 2048, 32),
        "{} is not OPT-1.3B",
        folder.display()
    );
    let (build_s, frozen_gb, peak_built, steps) = train_in_8_bits(&arch, base.weights, true)?;
    let peak = peak_rss_gb();
    eprintln!(
        "facebook/opt-1.3b ({}), use_8bit, LoRA r8 q/v, batch 2 x 192: read in {load_s:.0} s, \
         peak {peak_loaded:.2} GB; model built in {build_s:.0} s, frozen weights \
         {frozen_gb:.2} GB, peak {peak_built:.2} GB; s/step {steps:.1?}; peak RSS {peak:.2} GB",
        base.format
    );
    assert!(peak < 6.0, "peak RSS {peak:.2} GB (target: under 6 GB)");
    Ok(())
}

/// Build `arch` from `base` with 8-bit frozen weights and LoRA r8 on q/v, and train 3 steps
/// at batch 2 x 192: (build seconds, frozen GB, peak GB after building, seconds per step).
fn train_in_8_bits(
    arch: &DecoderArch,
    base: BaseWeights,
    gradient_checkpointing: bool,
) -> Result<(f64, f64, f64, Vec<f64>)> {
    let lora = LoraSettings {
        r: 8,
        alpha: 16.0,
        dropout: 0.05,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    };
    let trainable = Trainable {
        lora: &lora,
        num_labels: 3,
        seed: 42,
        use_8bit: true,
        gradient_checkpointing,
    };
    let start = Instant::now();
    let (model, _) = DecoderModel::new(arch.clone(), base, &trainable, &Device::Cpu)?;
    // As the plugin's `train` does once the model is built.
    clarity_runtime::kernels::retain_freed_memory();
    let build_s = start.elapsed().as_secs_f64();
    let frozen_gb = model.frozen_bytes() as f64 / 1e9;
    let peak_built = peak_rss_gb();

    let mut vars: Vec<(String, Var)> = match model.varmap_ref().data().lock() {
        Ok(data) => data.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
        Err(_) => candle_core::bail!("variable map lock poisoned"),
    };
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = AdamW::new(vars, AdamWConfig::default())?;
    let encoded = batch(arch.vocab_size as u64);
    let tensors = TensorBatch::from_encoded(&encoded, &Device::Cpu)?;
    let labels = Tensor::new(&[0u32, 2], &Device::Cpu)?;
    let mut steps = Vec::new();
    for step in 0..3u64 {
        let start = Instant::now();
        model.begin_micro_batch(step);
        let logits = model.forward(&tensors, true)?;
        let loss = cross_entropy(&logits, &labels, None)?;
        let value = loss.to_scalar::<f32>()?;
        assert!(value.is_finite(), "step {step}: loss {value}");
        let grads = optimizer.collect(model.backward(&loss)?);
        assert!(
            optimizer.missing_gradients(&grads).is_empty(),
            "every adapter gets a gradient"
        );
        optimizer.step(&grads, 2e-4, 1.0, Some(1.0))?;
        steps.push(start.elapsed().as_secs_f64());
        eprintln!(
            "step {step}: {:.1} s, loss {value:.4}",
            steps[steps.len() - 1]
        );
    }
    Ok((build_s, frozen_gb, peak_built, steps))
}
