//! LoRA training on a CUDA GPU (`--features cuda`): a tiny Llama-style model trained for a
//! few AdamW steps on GPU 0 and on the CPU, from the same weights and batch, gives the same
//! losses (the GPU runs candle's composed ops where the CPU runs the fused ones). Skips with
//! a message when the build has no CUDA or no GPU answers:
//! `CUDA_COMPUTE_CAP=80 cargo test -p clarity-lora --features cuda --test cuda -- --nocapture`.

use candle_core::{Device, Tensor, Var};
use clarity_lora::arch::Family;
use clarity_lora::model::{BaseWeights, DecoderModel};
use clarity_lora::tiny;
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::train::loss;
use clarity_runtime::train::optim::{AdamW, AdamWConfig};

mod common;

/// Losses of `steps` AdamW steps on one fixed batch, on `device`.
fn losses(device: &Device, steps: usize) -> candle_core::Result<Vec<f32>> {
    let arch = tiny::arch(Family::Llama, 120);
    let base = BaseWeights::new(&arch, tiny::base_weights(&arch, 3)?)?;
    let settings = common::q_v_adapters();
    let (model, _) = DecoderModel::new(arch, base, &common::trainable(&settings, false), device)?;
    let mut vars: Vec<(String, Var)> = match model.varmap_ref().data().lock() {
        Ok(data) => data.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
        Err(_) => candle_core::bail!("variable map lock poisoned"),
    };
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut optimizer = AdamW::new(vars, AdamWConfig::default())?;
    let batch = TensorBatch::from_encoded(&common::two_short_rows(), device)?;
    let targets = Tensor::new(&[2u32, 0], device)?;
    let mut losses = Vec::with_capacity(steps);
    for step in 0..steps {
        model.begin_micro_batch(step as u64);
        let loss = loss::cross_entropy(&model.forward(&batch, true)?, &targets, None)?;
        losses.push(loss.to_scalar::<f32>()?);
        let grads = optimizer.collect(model.backward(&loss)?);
        optimizer.step(&grads, 1e-2, 1.0, Some(1.0))?;
    }
    Ok(losses)
}

#[test]
fn tiny_lora_trains_on_the_gpu_as_on_the_cpu() {
    if !candle_core::utils::cuda_is_available() {
        eprintln!("skipped: this build has no CUDA (build with --features cuda)");
        return;
    }
    if let Err(why) = clarity_runtime::device::cuda_answers() {
        eprintln!("skipped: a CUDA build, but no GPU answers: {why}");
        return;
    }
    let gpu = Device::new_cuda(0).expect("GPU 0 answered a moment ago");
    let on_gpu = losses(&gpu, 4).expect("training on the GPU");
    let on_cpu = losses(&Device::Cpu, 4).expect("training on the CPU");
    eprintln!("losses on the GPU {on_gpu:?}, on the CPU {on_cpu:?}");
    for (g, c) in on_gpu.iter().zip(&on_cpu) {
        assert!(
            (g - c).abs() <= 1e-3 * c.abs().max(1.0),
            "{on_gpu:?} vs {on_cpu:?}"
        );
    }
    assert!(
        on_gpu[3] < on_gpu[0],
        "the GPU run did not learn: {on_gpu:?}"
    );
}
