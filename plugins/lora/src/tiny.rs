//! Tiny random decoders for tests and examples: a config and base weights in the family's own
//! checkpoint layout, so they go through the same loading code as real checkpoints.

use crate::arch::{Activation, DecoderArch, Family};
use candle_core::{DType, Device, Result, Shape, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A two-layer model of `family`: 4 query heads of 8, grouped-query attention (2 kv heads)
/// where the family has it.
pub fn arch(family: Family, vocab_size: usize) -> DecoderArch {
    let rotary = family.rotary();
    DecoderArch {
        family,
        vocab_size,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: if rotary { 2 } else { 4 },
        head_dim: 8,
        norm_eps: 1e-5,
        activation: match family {
            Family::Llama | Family::Qwen2 => Activation::Silu,
            Family::Opt => Activation::Relu,
            Family::Gpt2 => Activation::GeluTanh,
        },
        rope_theta: if rotary { 10000.0 } else { 0.0 },
        max_positions: 512,
        attention_bias: family != Family::Llama,
        pad_token_id: Some(0),
        eos_token_id: Some(0),
    }
}

/// Random base weights for `arch` in its family's checkpoint layout, seeded.
pub fn base_weights(arch: &DecoderArch, seed: u64) -> Result<HashMap<String, Tensor>> {
    crate::names::to_checkpoint(arch, &canonical_weights(arch, seed)?)
}

/// Random base weights under canonical names (see [`crate::names`]).
pub fn canonical_weights(arch: &DecoderArch, seed: u64) -> Result<HashMap<String, Tensor>> {
    canonical_weights_as(arch, seed, DType::F32)
}

/// [`canonical_weights`] stored as `dtype` (each tensor converted as it is drawn, so a large
/// model in f16 never exists in f32 at once: a stand-in for a half-precision checkpoint).
pub fn canonical_weights_as(
    arch: &DecoderArch,
    seed: u64,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    // (name, shape, centre, spread), then filled in this order from one seeded stream.
    let mut specs: Vec<(String, Vec<usize>, f32, f32)> = Vec::new();
    let (h, q, kv, f) = (
        arch.hidden_size,
        arch.q_width(),
        arch.kv_width(),
        arch.intermediate_size,
    );
    let family = arch.family;
    let norm = |specs: &mut Vec<_>, name: String| {
        specs.push((format!("{name}.weight"), vec![h], 1.0, 0.2));
        if !family.rms_norm() {
            specs.push((format!("{name}.bias"), vec![h], 0.0, 0.1));
        }
    };
    specs.push((
        "embed_tokens.weight".into(),
        vec![arch.vocab_size, h],
        0.0,
        1.0,
    ));
    if !family.rotary() {
        specs.push((
            "embed_positions.weight".into(),
            vec![arch.max_positions, h],
            0.0,
            0.5,
        ));
    }
    norm(&mut specs, "norm".into());
    for i in 0..arch.num_layers {
        let p = format!("layers.{i}");
        norm(&mut specs, format!("{p}.input_layernorm"));
        norm(&mut specs, format!("{p}.post_attention_layernorm"));
        let mut linears = vec![
            ("self_attn.q_proj", q, h, arch.attention_bias),
            ("self_attn.k_proj", kv, h, arch.attention_bias),
            ("self_attn.v_proj", kv, h, arch.attention_bias),
            ("self_attn.o_proj", h, q, family.linear_bias()),
            ("mlp.up_proj", f, h, family.linear_bias()),
            ("mlp.down_proj", h, f, family.linear_bias()),
        ];
        if family.gated_mlp() {
            linears.push(("mlp.gate_proj", f, h, false));
        }
        for (name, rows, cols, bias) in linears {
            specs.push((format!("{p}.{name}.weight"), vec![rows, cols], 0.0, 0.3));
            if bias {
                specs.push((format!("{p}.{name}.bias"), vec![rows], 0.0, 0.1));
            }
        }
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    specs
        .into_iter()
        .map(|(name, dims, around, spread)| {
            let values = uniform_values(&mut rng, dims.iter().product(), around, spread);
            Ok((
                name,
                Tensor::from_vec(values, dims, &Device::Cpu)?.to_dtype(dtype)?,
            ))
        })
        .collect()
}

/// A tensor of values uniform in `around ± spread`, from a generator seeded with `seed`.
/// Test inputs should be these rather than `Tensor::randn`'s, which come from an unseeded
/// thread RNG: the same on every run and every machine, so a failure replays.
pub fn uniform(dims: impl Into<Shape>, around: f32, spread: f32, seed: u64) -> Result<Tensor> {
    let shape = dims.into();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values = uniform_values(&mut rng, shape.elem_count(), around, spread);
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// `n` draws from `around ± spread`.
fn uniform_values(rng: &mut impl Rng, n: usize, around: f32, spread: f32) -> Vec<f32> {
    (0..n)
        .map(|_| around + rng.random_range(-spread..spread))
        .collect()
}
