//! Tiny random decoders for tests and examples: a config and base weights under the names
//! transformers uses, so they go through the same loading code as real checkpoints.

use crate::arch::{DecoderArch, Family};
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;

/// A two-layer model of `family` with grouped-query attention (4 query heads, 2 kv heads).
pub fn arch(family: Family, vocab_size: usize) -> DecoderArch {
    DecoderArch {
        family,
        vocab_size,
        hidden_size: 32,
        intermediate_size: 48,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        max_positions: 512,
        attention_bias: family == Family::Qwen2,
        pad_token_id: Some(0),
        eos_token_id: Some(0),
    }
}

/// Random base weights for `arch` (`model.`-prefixed transformers names), seeded.
pub fn base_weights(arch: &DecoderArch, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dev = Device::Cpu;
    let mut out = HashMap::new();
    let mut put = |name: String, dims: &[usize], around: f32, spread: f32| -> Result<()> {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| around + rng.random_range(-spread..spread))
            .collect();
        out.insert(name, Tensor::from_vec(values, dims, &dev)?);
        Ok(())
    };
    let (h, q, kv, f) = (
        arch.hidden_size,
        arch.q_width(),
        arch.kv_width(),
        arch.intermediate_size,
    );
    put(
        "model.embed_tokens.weight".into(),
        &[arch.vocab_size, h],
        0.0,
        1.0,
    )?;
    put("model.norm.weight".into(), &[h], 1.0, 0.2)?;
    for i in 0..arch.num_layers {
        let p = format!("model.layers.{i}");
        let s = 0.3;
        put(format!("{p}.input_layernorm.weight"), &[h], 1.0, 0.2)?;
        put(
            format!("{p}.post_attention_layernorm.weight"),
            &[h],
            1.0,
            0.2,
        )?;
        put(format!("{p}.self_attn.q_proj.weight"), &[q, h], 0.0, s)?;
        put(format!("{p}.self_attn.k_proj.weight"), &[kv, h], 0.0, s)?;
        put(format!("{p}.self_attn.v_proj.weight"), &[kv, h], 0.0, s)?;
        put(format!("{p}.self_attn.o_proj.weight"), &[h, q], 0.0, s)?;
        put(format!("{p}.mlp.gate_proj.weight"), &[f, h], 0.0, s)?;
        put(format!("{p}.mlp.up_proj.weight"), &[f, h], 0.0, s)?;
        put(format!("{p}.mlp.down_proj.weight"), &[h, f], 0.0, s)?;
        if arch.attention_bias {
            put(format!("{p}.self_attn.q_proj.bias"), &[q], 0.0, 0.1)?;
            put(format!("{p}.self_attn.k_proj.bias"), &[kv], 0.0, 0.1)?;
            put(format!("{p}.self_attn.v_proj.bias"), &[kv], 0.0, 0.1)?;
        }
    }
    Ok(out)
}
