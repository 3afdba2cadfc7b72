//! Only the adapters and the head train: the variables are exactly those, every one of them
//! receives a non-zero gradient (B and the head at once, A once B has moved, as in PEFT where B
//! starts at zero), and the frozen base weights stay bit-identical after optimizer steps.

use candle_core::{Device, Tensor};
use clarity_lora::arch::Family;
use clarity_lora::lora::{Frozen, LoraSettings};
use clarity_lora::model::{BaseWeights, DecoderModel, Trainable, HEAD};
use clarity_lora::tiny;
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::train::loss;

mod common;

fn batch() -> TensorBatch {
    TensorBatch::from_encoded(&common::two_short_rows(), &Device::Cpu).expect("batch")
}

#[test]
fn only_adapters_and_head_train_and_every_adapter_gets_a_gradient() {
    check_training(false);
}

/// With `use_8bit` the frozen matrices are Q8_0 (candle's quantized matmul has no backward:
/// ours sends the gradient on) and every adapter, in every layer, still learns.
#[test]
fn with_8bit_base_weights_every_adapter_still_gets_a_gradient() {
    check_training(true);
}

fn frozen_values(model: &DecoderModel) -> Vec<Vec<f32>> {
    model
        .blocks
        .iter()
        .flat_map(|b| {
            [
                &b.attention.q.weight,
                &b.attention.v.weight,
                &b.mlp.up.weight,
                &b.mlp.down.weight,
            ]
        })
        .chain([&model.embed])
        .map(|w| {
            w.to_f32()
                .and_then(|t| t.flatten_all()?.to_vec1())
                .expect("values")
        })
        .chain(
            model
                .blocks
                .iter()
                .map(|b| b.attn_norm.weight.to_vec1().expect("norm")),
        )
        .collect()
}

fn check_training(use_8bit: bool) {
    let arch = tiny::arch(Family::Llama, 120);
    let base =
        BaseWeights::new(&arch, tiny::base_weights(&arch, 3).expect("weights")).expect("names");
    let settings = common::q_v_adapters();
    let trainable = common::trainable(&settings, use_8bit);
    let (model, _) = DecoderModel::new(arch, base, &trainable, &Device::Cpu).expect("model");
    if use_8bit {
        assert!(matches!(
            model.blocks[0].attention.q.weight,
            Frozen::Quantized(_)
        ));
        assert!(matches!(model.embed, Frozen::Quantized(_)));
        // 48-wide rows do not split into Q8_0 blocks of 32: kept in f32.
        assert!(matches!(model.blocks[0].mlp.down.weight, Frozen::F32(_)));
    }
    let frozen_before = frozen_values(&model);

    let vars: Vec<(String, candle_core::Var)> = {
        let data = model.varmap_ref().data().lock().expect("vars");
        data.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    };
    // 2 layers x (q, v) x (A, B) + the head.
    assert_eq!(
        vars.len(),
        2 * 2 * 2 + 1,
        "{:?}",
        vars.iter().map(|v| &v.0).collect::<Vec<_>>()
    );
    for (name, _) in &vars {
        assert!(
            name == HEAD || name.contains(".lora_A.") || name.contains(".lora_B."),
            "unexpected trainable variable {name}"
        );
    }

    let targets = Tensor::new(&[2u32, 0], &Device::Cpu).expect("targets");
    let mut got_gradient = std::collections::HashSet::new();
    for _step in 0..2 {
        let logits = model.logits(&batch(), true).expect("forward");
        let loss = loss::cross_entropy(&logits, &targets, None).expect("loss");
        let grads = loss.backward().expect("backward");
        for (name, var) in &vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let norm = g
                .sqr()
                .and_then(|s| s.sum_all())
                .and_then(|s| s.to_scalar::<f32>())
                .expect("norm");
            if norm > 0.0 {
                got_gradient.insert(name.clone());
            }
            // Plain SGD, large enough to move B off zero.
            let updated = (var.as_tensor() - (g * 0.5).expect("scale")).expect("step");
            var.set(&updated).expect("set");
        }
    }
    for (name, _) in &vars {
        assert!(
            got_gradient.contains(name),
            "{name} never received a gradient"
        );
    }
    let frozen_after = frozen_values(&model);
    assert_eq!(frozen_before, frozen_after, "a base weight changed");
}

/// Gradient checkpointing recomputes each block in the backward pass: the loss and every
/// variable's gradient must be what the plain pass gives, dropout included (the recomputed
/// pass draws the same masks), for both Llama-style (rotary, SwiGLU) and OPT-style blocks.
#[test]
fn checkpointed_blocks_give_the_same_loss_and_gradients() {
    for family in [Family::Llama, Family::Opt] {
        let arch = tiny::arch(family, 120);
        let base =
            BaseWeights::new(&arch, tiny::base_weights(&arch, 3).expect("weights")).expect("names");
        let settings = LoraSettings {
            r: 4,
            alpha: 8.0,
            dropout: 0.2,
            target_modules: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
        };
        let run = |gradient_checkpointing: bool| {
            let trainable = Trainable {
                lora: &settings,
                num_labels: 3,
                seed: 5,
                use_8bit: false,
                gradient_checkpointing,
            };
            let (model, _) =
                DecoderModel::new(arch.clone(), base.clone(), &trainable, &Device::Cpu)
                    .expect("model");
            // B starts at zero: give it values so A's gradient is not trivially zero.
            let vars: Vec<(String, candle_core::Var)> = {
                let data = model.varmap_ref().data().lock().expect("vars");
                let mut v: Vec<_> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            };
            for (i, (_, var)) in vars.iter().enumerate() {
                let values = tiny::uniform(var.shape(), 0.0, 0.2, 100 + i as u64).expect("init");
                var.set(&values).expect("set");
            }
            model.begin_micro_batch(9);
            let logits = model.logits(&batch(), true).expect("forward");
            let targets = Tensor::new(&[2u32, 0], &Device::Cpu).expect("targets");
            let loss = loss::cross_entropy(&logits, &targets, None).expect("loss");
            let grads = model.backward(&loss).expect("backward");
            let value = loss.to_scalar::<f32>().expect("loss value");
            let gradients: Vec<(String, Vec<f32>)> = vars
                .iter()
                .map(|(name, var)| {
                    let g = grads
                        .get(var.as_tensor())
                        .expect("every variable has a gradient");
                    (
                        name.clone(),
                        g.flatten_all().and_then(|g| g.to_vec1()).expect("values"),
                    )
                })
                .collect();
            (value, gradients)
        };
        let (plain_loss, plain) = run(false);
        let (checkpointed_loss, checkpointed) = run(true);
        assert!(
            (plain_loss - checkpointed_loss).abs() <= 1e-6 * plain_loss.abs(),
            "{family:?}: loss {plain_loss} vs {checkpointed_loss}"
        );
        for ((name, a), (_, b)) in plain.iter().zip(&checkpointed) {
            let scale = a
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
                .max(f32::MIN_POSITIVE);
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff <= 1e-5 * scale, "{family:?} {name}: {diff} of {scale}");
        }
    }
}
