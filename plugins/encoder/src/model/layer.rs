//! One post-norm transformer layer: self-attention, then the feed-forward block, each
//! followed by dropout, the residual connection and LayerNorm (candle's `BertLayer`:
//! attention → intermediate → output).

use super::vars::Vars;
use super::{project, Norm};
use crate::arch::{Activation, Arch};
use crate::attention;
use crate::fused;
use crate::names::LayerNames;
use candle_core::{Result, Tensor};
use candle_nn::Linear;
use clarity_runtime::kernels::dropout::Dropout;

/// Multi-head self-attention with its output projection and norm.
#[derive(Debug, Clone)]
pub struct Attention {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Output projection.
    pub output: Linear,
    /// Norm after the residual connection.
    pub norm: Norm,
    /// Heads.
    pub heads: usize,
    /// Dropout on the attention probabilities.
    pub probs_dropout: f32,
    /// Dropout on the output before the residual connection.
    pub hidden_dropout: f32,
}

impl Attention {
    /// `norm(x + dropout(attention(x) W_o))`, with `bias` (`[b, 1, 1, s]`) added to the
    /// scores of every query.
    pub fn forward(&self, x: &Tensor, bias: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        self.forward_at(x, x, bias, dropout)
    }

    /// As [`Self::forward`], for the positions `at` (`[b, n, hidden]`, rows of `x`) only:
    /// their queries attend over every position of `x`. `[b, n, hidden]`.
    pub fn forward_at(
        &self,
        at: &Tensor,
        x: &Tensor,
        bias: &Tensor,
        dropout: Dropout<'_>,
    ) -> Result<Tensor> {
        let q = project(&self.query, at)?;
        let k = project(&self.key, x)?;
        let v = project(&self.value, x)?;
        let probs_dropout = dropout.probabilities(self.probs_dropout);
        let context = attention::attention(&q, &k, &v, bias, self.heads, probs_dropout)?;
        let out = project(&self.output, &context)?;
        self.norm
            .forward(&dropout.add(&out, at, self.hidden_dropout)?)
    }
}

/// The position-wise feed-forward block with its norm.
#[derive(Debug, Clone)]
pub struct FeedForward {
    /// hidden → intermediate.
    pub up: Linear,
    /// intermediate → hidden.
    pub down: Linear,
    /// Norm after the residual connection.
    pub norm: Norm,
    /// Between the two projections.
    pub activation: Activation,
    /// Dropout on the output before the residual connection.
    pub dropout: f32,
}

impl FeedForward {
    /// `norm(x + dropout(act(x W_up) W_down))`.
    pub fn forward(&self, x: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let up = project(&self.up, x)?;
        let up = match self.activation {
            Activation::Gelu => fused::gelu_erf(&up)?,
            Activation::Relu => up.relu()?,
        };
        let down = project(&self.down, &up)?;
        self.norm.forward(&dropout.add(&down, x, self.dropout)?)
    }
}

/// One transformer layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Self-attention.
    pub attention: Attention,
    /// Feed-forward block.
    pub feed_forward: FeedForward,
}

impl Layer {
    /// The layer's parameters under `names`.
    pub(super) fn load(vars: &Vars, names: &LayerNames, arch: &Arch) -> Result<Self> {
        Ok(Self {
            attention: Attention {
                query: vars.linear(&names.query)?,
                key: vars.linear(&names.key)?,
                value: vars.linear(&names.value)?,
                output: vars.linear(&names.attn_out)?,
                norm: vars.norm(&names.attn_norm)?,
                heads: arch.num_heads,
                probs_dropout: arch.attention_dropout,
                hidden_dropout: arch.hidden_dropout,
            },
            feed_forward: FeedForward {
                up: vars.linear(&names.ffn_in)?,
                down: vars.linear(&names.ffn_out)?,
                norm: vars.norm(&names.ffn_norm)?,
                activation: arch.activation,
                dropout: arch.hidden_dropout,
            },
        })
    }

    /// `[b, s, hidden]` → `[b, s, hidden]`.
    pub fn forward(&self, x: &Tensor, bias: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let x = self.attention.forward(x, bias, dropout)?;
        self.feed_forward.forward(&x, dropout)
    }

    /// The first position's output alone, `[b, 1, hidden]`: what [`Self::forward`] gives
    /// there, for a fraction of the work. Every position still gives keys and values, but
    /// queries, the output projection, the feed-forward block and the norms run on one
    /// position; in MiniLM's last layer that is 2 of 12 products per position instead of 12.
    pub fn forward_first(&self, x: &Tensor, bias: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let first = x.narrow(1, 0, 1)?.contiguous()?;
        let first = self.attention.forward_at(&first, x, bias, dropout)?;
        self.feed_forward.forward(&first, dropout)
    }
}
