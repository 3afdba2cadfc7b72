//! One pre-norm decoder block, as transformers' `LlamaDecoderLayer` reads:
//! `x + attention(norm(x))`, then `x + mlp(norm(x))`.

use super::attention_op::causal_attention;
use super::Norm;
use crate::arch::Activation;
use crate::lora::LoraLinear;
use candle_core::{Result, Tensor};
use clarity_runtime::kernels::dropout::Dropout;

/// Grouped-query self-attention (rotary positions when the family has them).
#[derive(Debug, Clone)]
pub struct Attention {
    /// Query projection.
    pub q: LoraLinear,
    /// Key projection.
    pub k: LoraLinear,
    /// Value projection.
    pub v: LoraLinear,
    /// Output projection.
    pub o: LoraLinear,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (each serves `heads / kv_heads` query heads).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Attention {
    /// `[b, s, hidden]` → `[b, s, hidden]`: causal softmax(q kᵀ / √d + key_bias) v,
    /// projected. `rotary` is `(cos, sin)`, each `[s, head_dim]`; `key_bias` is `[b, s]`
    /// (0 for real tokens, [`super::MASK_BIAS`] for padding).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
        key_bias: &Tensor,
        dropout: Dropout<'_>,
    ) -> Result<Tensor> {
        let q = self.q.forward(x, dropout)?;
        let k = self.k.forward(x, dropout)?;
        let v = self.v.forward(x, dropout)?;
        let (q, k) = match rotary {
            Some((cos, sin)) => (
                super::rotary(&q, self.heads, cos, sin)?,
                super::rotary(&k, self.kv_heads, cos, sin)?,
            ),
            None => (q, k),
        };
        let attn = causal_attention(&q, &k, &v, key_bias, self.heads, self.kv_heads)?;
        self.o.forward(&attn, dropout)
    }
}

/// The feed-forward block: SwiGLU (`down(act(gate(x)) · up(x))`) or `down(act(up(x)))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// SwiGLU gate (Llama, Qwen2).
    pub gate: Option<LoraLinear>,
    /// Up projection (OPT's `fc1`, GPT-2's `c_fc`).
    pub up: LoraLinear,
    /// Down projection (OPT's `fc2`, GPT-2's `mlp.c_proj`).
    pub down: LoraLinear,
    /// The activation.
    pub activation: Activation,
}

impl Mlp {
    /// `[b, s, hidden]` → `[b, s, hidden]`.
    pub fn forward(&self, x: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let up = self.up.forward(x, dropout)?;
        let hidden = match &self.gate {
            Some(gate) => match self.activation {
                Activation::Silu => super::swiglu(&gate.forward(x, dropout)?, &up)?,
                other => (activate(&gate.forward(x, dropout)?, other)? * up)?,
            },
            None => activate(&up, self.activation)?,
        };
        self.down.forward(&hidden, dropout)
    }
}

/// One decoder block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Norm before attention.
    pub attn_norm: Norm,
    /// Self-attention.
    pub attention: Attention,
    /// Norm before the feed-forward block.
    pub mlp_norm: Norm,
    /// Feed-forward block.
    pub mlp: Mlp,
}

impl Block {
    /// `[b, s, hidden]` → `[b, s, hidden]` (see [`Attention::forward`] for `rotary` and
    /// `key_bias`).
    pub fn forward(
        &self,
        x: &Tensor,
        rotary: Option<&(Tensor, Tensor)>,
        key_bias: &Tensor,
        dropout: Dropout<'_>,
    ) -> Result<Tensor> {
        let h = self.attn_norm.forward(x)?;
        let x = (x + self.attention.forward(&h, rotary, key_bias, dropout)?)?;
        let h = self.mlp_norm.forward(&x)?;
        x + self.mlp.forward(&h, dropout)?
    }

    /// A copy whose adapters are detached from the graph: its forward pass records nothing
    /// (the first pass of a checkpointed block).
    pub fn detached(&self) -> Block {
        let mut block = self.clone();
        for linear in block.linears_mut() {
            if let Some(adapter) = &mut linear.adapter {
                adapter.a = adapter.a.detach();
                adapter.b = adapter.b.detach();
            }
        }
        block
    }

    /// The adapters' `A` and `B` (the block's variables).
    pub fn adapter_variables(&self) -> impl Iterator<Item = &Tensor> {
        self.linears()
            .filter_map(|l| l.adapter.as_ref())
            .flat_map(|a| [&a.a, &a.b])
    }

    fn linears_mut(&mut self) -> impl Iterator<Item = &mut LoraLinear> {
        let a = &mut self.attention;
        let m = &mut self.mlp;
        [
            Some(&mut a.q),
            Some(&mut a.k),
            Some(&mut a.v),
            Some(&mut a.o),
            m.gate.as_mut(),
            Some(&mut m.up),
            Some(&mut m.down),
        ]
        .into_iter()
        .flatten()
    }

    /// The linear layers, attention's then the MLP's.
    pub fn linears(&self) -> impl Iterator<Item = &LoraLinear> {
        let a = &self.attention;
        let m = &self.mlp;
        [
            Some(&a.q),
            Some(&a.k),
            Some(&a.v),
            Some(&a.o),
            m.gate.as_ref(),
            Some(&m.up),
            Some(&m.down),
        ]
        .into_iter()
        .flatten()
    }
}

/// The MLP activation, from differentiable ops (the exporter writes the same formulas).
pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Silu => candle_nn::ops::sigmoid(x)? * x,
        Activation::Relu => x.relu(),
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        Activation::GeluTanh => {
            let cube = (x.sqr()? * x)?;
            let inner = ((x + (cube * 0.044715)?)? * (2.0 / std::f64::consts::PI).sqrt())?;
            ((inner.tanh()? + 1.0)? * x)? * 0.5
        }
    }
}
