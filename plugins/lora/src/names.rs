//! Tensor names: each family's transformers checkpoint layout to one canonical, Llama-style
//! layout the model is built from (and back, for the tiny test models).
//!
//! Canonical names (no `model.` prefix; weights `[out, in]`):
//! `embed_tokens.weight`, `embed_positions.weight` (learned positions, row p = position p),
//! `layers.N.input_layernorm.{weight,bias}`, `layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}`,
//! `layers.N.post_attention_layernorm.{weight,bias}`,
//! `layers.N.mlp.{gate,up,down}_proj.{weight,bias}`, `norm.{weight,bias}`.
//!
//! OPT's position table starts 2 rows in (its `offset`); GPT-2 stores `Conv1D` weights
//! `[in, out]` and q, k, v fused in one `c_attn`.

use crate::arch::{DecoderArch, Family};
use candle_core::{Result, Tensor};
use std::collections::HashMap;

/// Rows OPT's learned position table keeps before position 0.
pub const OPT_POSITION_OFFSET: usize = 2;

/// `(checkpoint suffix, canonical suffix)` of the per-layer tensors that are renamed only.
const OPT_LAYER: &[(&str, &str)] = &[
    ("self_attn_layer_norm", "input_layernorm"),
    ("self_attn.q_proj", "self_attn.q_proj"),
    ("self_attn.k_proj", "self_attn.k_proj"),
    ("self_attn.v_proj", "self_attn.v_proj"),
    ("self_attn.out_proj", "self_attn.o_proj"),
    ("final_layer_norm", "post_attention_layernorm"),
    ("fc1", "mlp.up_proj"),
    ("fc2", "mlp.down_proj"),
];

/// The checkpoint's prefix before the family's own names, if it has one of the usual ones.
fn strip<'a>(name: &'a str, prefixes: &[&str]) -> &'a str {
    prefixes
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name)
}

/// Rename `tensors` (a checkpoint of `arch.family`) to canonical names.
pub fn canonical(
    arch: &DecoderArch,
    tensors: HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    match arch.family {
        Family::Llama | Family::Qwen2 => Ok(tensors
            .into_iter()
            .map(|(k, v)| (strip(&k, &["model."]).to_string(), v))
            .collect()),
        Family::Opt => opt(tensors),
        Family::Gpt2 => gpt2(arch, tensors),
    }
}

/// Rename a GGUF file's quantized tensors (under HF llama names) to canonical names. GGUF
/// bases are llama-family, whose canonical names only drop `model.`.
pub fn canonical_quantized<T>(
    arch: &DecoderArch,
    tensors: HashMap<String, T>,
) -> Result<HashMap<String, T>> {
    if tensors.is_empty() {
        return Ok(tensors);
    }
    match arch.family {
        Family::Llama | Family::Qwen2 => Ok(tensors
            .into_iter()
            .map(|(k, v)| (strip(&k, &["model."]).to_string(), v))
            .collect()),
        family => candle_core::bail!(
            "quantized base weights are read for llama-family models only, not {family:?}"
        ),
    }
}

fn opt(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let n = strip(&name, &["model.decoder.", "decoder."]);
        let renamed = if n == "embed_positions.weight" {
            let rows = t.dim(0)?.saturating_sub(OPT_POSITION_OFFSET);
            out.insert(n.to_string(), t.narrow(0, OPT_POSITION_OFFSET, rows)?);
            continue;
        } else if let Some(rest) = n.strip_prefix("final_layer_norm.") {
            format!("norm.{rest}")
        } else if let Some(rest) = n.strip_prefix("layers.") {
            let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let mapped = OPT_LAYER.iter().find_map(|(from, to)| {
                tail.strip_prefix(from)
                    .and_then(|param| param.strip_prefix('.'))
                    .map(|param| format!("layers.{index}.{to}.{param}"))
            });
            mapped.unwrap_or_else(|| n.to_string())
        } else {
            n.to_string()
        };
        out.insert(renamed, t);
    }
    Ok(out)
}

fn gpt2(arch: &DecoderArch, tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
    let h = arch.hidden_size;
    let mut out = HashMap::new();
    for (name, t) in tensors {
        let n = strip(&name, &["transformer."]);
        // Conv1D weights are [in, out]: transpose to [out, in].
        let conv = |t: &Tensor| -> Result<Tensor> { t.t()?.contiguous() };
        match n {
            "wte.weight" => {
                out.insert("embed_tokens.weight".into(), t);
            }
            "wpe.weight" => {
                out.insert("embed_positions.weight".into(), t);
            }
            "ln_f.weight" | "ln_f.bias" => {
                out.insert(n.replace("ln_f", "norm"), t);
            }
            _ => {
                let Some(rest) = n.strip_prefix("h.") else {
                    out.insert(n.to_string(), t);
                    continue;
                };
                let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let p = format!("layers.{index}");
                match tail {
                    "attn.c_attn.weight" | "attn.c_attn.bias" => {
                        let fused = if tail.ends_with("weight") {
                            conv(&t)?
                        } else {
                            t
                        };
                        let param = if tail.ends_with("weight") {
                            "weight"
                        } else {
                            "bias"
                        };
                        for (i, m) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                            let part = fused.narrow(0, i * h, h)?.contiguous()?;
                            out.insert(format!("{p}.self_attn.{m}.{param}"), part);
                        }
                    }
                    "attn.c_proj.weight" => {
                        out.insert(format!("{p}.self_attn.o_proj.weight"), conv(&t)?);
                    }
                    "attn.c_proj.bias" => {
                        out.insert(format!("{p}.self_attn.o_proj.bias"), t);
                    }
                    "mlp.c_fc.weight" => {
                        out.insert(format!("{p}.mlp.up_proj.weight"), conv(&t)?);
                    }
                    "mlp.c_fc.bias" => {
                        out.insert(format!("{p}.mlp.up_proj.bias"), t);
                    }
                    "mlp.c_proj.weight" => {
                        out.insert(format!("{p}.mlp.down_proj.weight"), conv(&t)?);
                    }
                    "mlp.c_proj.bias" => {
                        out.insert(format!("{p}.mlp.down_proj.bias"), t);
                    }
                    _ => {
                        let tail = tail
                            .replace("ln_1.", "input_layernorm.")
                            .replace("ln_2.", "post_attention_layernorm.");
                        out.insert(format!("{p}.{tail}"), t);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The inverse of [`canonical`]: canonical tensors in the family's checkpoint layout (with the
/// usual `model.` / `model.decoder.` / `transformer.` prefix). OPT's first position rows are
/// zeros.
pub fn to_checkpoint(
    arch: &DecoderArch,
    tensors: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    match arch.family {
        Family::Llama | Family::Qwen2 => {
            for (k, v) in tensors {
                out.insert(format!("model.{k}"), v.clone());
            }
        }
        Family::Opt => {
            for (k, v) in tensors {
                let name = if k == "embed_positions.weight" {
                    let pad =
                        Tensor::zeros((OPT_POSITION_OFFSET, v.dim(1)?), v.dtype(), v.device())?;
                    out.insert(
                        "model.decoder.embed_positions.weight".into(),
                        Tensor::cat(&[&pad, v], 0)?,
                    );
                    continue;
                } else if let Some(rest) = k.strip_prefix("norm.") {
                    format!("final_layer_norm.{rest}")
                } else if let Some(rest) = k.strip_prefix("layers.") {
                    let (index, tail) = rest.split_once('.').unwrap_or((rest, ""));
                    OPT_LAYER
                        .iter()
                        .find_map(|(from, to)| {
                            tail.strip_prefix(to)
                                .and_then(|param| param.strip_prefix('.'))
                                .map(|param| format!("layers.{index}.{from}.{param}"))
                        })
                        .unwrap_or_else(|| k.clone())
                } else {
                    k.clone()
                };
                out.insert(format!("model.decoder.{name}"), v.clone());
            }
        }
        Family::Gpt2 => {
            let get = |k: String| -> Result<&Tensor> {
                tensors
                    .get(&k)
                    .ok_or_else(|| candle_core::Error::Msg(format!("no canonical tensor {k}")))
            };
            out.insert(
                "transformer.wte.weight".into(),
                get("embed_tokens.weight".into())?.clone(),
            );
            out.insert(
                "transformer.wpe.weight".into(),
                get("embed_positions.weight".into())?.clone(),
            );
            for param in ["weight", "bias"] {
                out.insert(
                    format!("transformer.ln_f.{param}"),
                    get(format!("norm.{param}"))?.clone(),
                );
            }
            for i in 0..arch.num_layers {
                let (c, h) = (format!("layers.{i}"), format!("transformer.h.{i}"));
                for param in ["weight", "bias"] {
                    let parts: Vec<&Tensor> = ["q_proj", "k_proj", "v_proj"]
                        .iter()
                        .map(|m| get(format!("{c}.self_attn.{m}.{param}")))
                        .collect::<Result<_>>()?;
                    let fused = Tensor::cat(&parts, 0)?;
                    let conv = |t: Tensor| -> Result<Tensor> {
                        if param == "weight" {
                            t.t()?.contiguous()
                        } else {
                            Ok(t)
                        }
                    };
                    out.insert(format!("{h}.attn.c_attn.{param}"), conv(fused)?);
                    for (from, to) in [
                        ("self_attn.o_proj", "attn.c_proj"),
                        ("mlp.up_proj", "mlp.c_fc"),
                        ("mlp.down_proj", "mlp.c_proj"),
                    ] {
                        let t = get(format!("{c}.{from}.{param}"))?.clone();
                        out.insert(format!("{h}.{to}.{param}"), conv(t)?);
                    }
                    for (from, to) in [
                        ("input_layernorm", "ln_1"),
                        ("post_attention_layernorm", "ln_2"),
                    ] {
                        out.insert(
                            format!("{h}.{to}.{param}"),
                            get(format!("{c}.{from}.{param}"))?.clone(),
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}
