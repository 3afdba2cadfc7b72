//! The encoder in candle, built from ops that all have a backward pass, so every parameter
//! trains.
//!
//! candle's own BERT takes fused LayerNorm/softmax paths that have no backward pass (see
//! RECIPES): only the head would learn. Here attention ([`crate::attention`]), LayerNorm,
//! GELU and the bias additions ([`fused`]) are our own CPU ops with their backward passes,
//! and dropout is real, seeded from the training seed ([`clarity_runtime::kernels::dropout`]).
//!
//! The parts read as in the paper (and candle's `BertModel`): [`Embeddings`], then each
//! [`Layer`] as [`Attention`] followed by [`FeedForward`], then the [`Head`] on the first
//! token (or the mean over real tokens, [`Pooling`]). Each part holds its own sizes and
//! dropout rates and has its own `forward`.

mod embeddings;
mod head;
mod layer;
mod vars;

pub use embeddings::{Embeddings, PositionIds};
pub use head::Head;
pub use layer::{Attention, FeedForward, Layer};

use crate::arch::{Arch, Pooling};
use crate::fused;
use crate::names;
use candle_core::{Device, Result, Tensor};
use candle_nn::{Linear, VarMap};
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::kernels::dropout::{Dropout, DropoutSeeds};
use vars::Vars;

/// Added to attention scores of padding positions (the exporter uses the same value).
pub const MASK_BIAS: f32 = -10000.0;

/// A linear layer through [`fused::linear`].
fn project(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    fused::linear(x, layer.weight(), layer.bias())
}

/// A LayerNorm over the last axis.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Scale.
    pub weight: Tensor,
    /// Shift.
    pub bias: Tensor,
    /// Epsilon.
    pub eps: f64,
}

impl Norm {
    /// Normalise `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// A BERT-family encoder with a classification head.
pub struct EncoderModel {
    /// Shape and family.
    pub arch: Arch,
    /// Embeddings.
    pub embeddings: Embeddings,
    /// Transformer layers.
    pub layers: Vec<Layer>,
    /// Head.
    pub head: Head,
    varmap: VarMap,
    device: Device,
    dropout_seeds: DropoutSeeds,
}

impl EncoderModel {
    /// Build the model over the variables of `varmap` (names from [`names`]).
    pub fn from_varmap(arch: Arch, varmap: VarMap, device: Device) -> Result<Self> {
        let vars = Vars::new(&varmap, arch.layer_norm_eps);
        let embeddings = Embeddings::load(&vars, &arch)?;
        let layers = (0..arch.num_layers)
            .map(|i| Layer::load(&vars, &names::layer(arch.family, i), &arch))
            .collect::<Result<Vec<_>>>()?;
        let head = Head::load(&vars, &arch)?;
        Ok(Self {
            arch,
            embeddings,
            layers,
            head,
            varmap,
            device,
            dropout_seeds: DropoutSeeds::default(),
        })
    }

    /// Draw dropout masks from `seed` (the run's training seed) instead of seed 0.
    pub fn with_dropout_seed(mut self, seed: u64) -> Self {
        self.dropout_seeds = DropoutSeeds::new(seed);
        self
    }

    /// Every variable with its name, sorted by name.
    pub fn varmap_vars(&self) -> Vec<(String, candle_core::Var)> {
        let mut vars: Vec<(String, candle_core::Var)> = match self.varmap.data().lock() {
            Ok(data) => data.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }

    /// The variables (for saving).
    pub fn varmap_ref(&self) -> &VarMap {
        &self.varmap
    }

    /// Labels the head scores.
    pub fn num_labels(&self) -> usize {
        self.head.output.weight().dims()[0]
    }

    /// Logits `[batch, num_labels]`; `train` turns dropout on.
    pub fn logits(&self, batch: &TensorBatch, train: bool) -> Result<Tensor> {
        self.run(batch, train, true)
    }

    /// [`Self::logits`] with every layer computed at every position (the reference the
    /// first-position shortcut is tested against).
    #[cfg(test)]
    pub(crate) fn logits_every_position(&self, batch: &TensorBatch, train: bool) -> Result<Tensor> {
        self.run(batch, train, false)
    }

    /// The forward pass; with `shortcut` and first-token pooling the head reads one
    /// position, so the last layer computes only that one (`[b, 1, hidden]`).
    fn run(&self, batch: &TensorBatch, train: bool, shortcut: bool) -> Result<Tensor> {
        let dropout = Dropout::new(train, &self.dropout_seeds);
        let mut x = self.embeddings.forward(batch, dropout)?;
        let bias = padding_bias(&batch.attention_mask)?;
        let first_only = shortcut && self.arch.pooling == Pooling::Cls;
        for (i, layer) in self.layers.iter().enumerate() {
            x = if first_only && i + 1 == self.layers.len() {
                layer.forward_first(&x, &bias, dropout)?
            } else {
                layer.forward(&x, &bias, dropout)?
            };
        }
        self.head.forward(&self.pool(&x, batch)?, dropout)
    }

    /// The pooled hidden state `[b, hidden]` of the last layer's output `x` (its first
    /// position, or the mean over real tokens).
    fn pool(&self, x: &Tensor, batch: &TensorBatch) -> Result<Tensor> {
        match self.arch.pooling {
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => masked_mean(x, &batch.attention_mask),
        }
    }
}

/// The mean of `x` (`[b, s, h]`) over the positions where `mask` (`[b, s]`, 1.0 or 0.0) is
/// set: `[b, h]`. A row with no real token gives zeros, not a division by zero.
fn masked_mean(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let summed = x.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
    let count = mask.sum_keepdim(1)?.clamp(1f32, f32::MAX)?;
    summed.broadcast_div(&count)
}

/// `[b, 1, 1, s]` added to the attention scores: 0 for real tokens, [`MASK_BIAS`] for
/// padding.
fn padding_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2()?;
    ((mask.ones_like()? - mask)? * f64::from(MASK_BIAS))?.reshape((b, 1, 1, s))
}

impl TrainableModel for EncoderModel {
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<Tensor> {
        self.logits(batch, train)
    }

    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn begin_micro_batch(&self, key: u64) {
        self.dropout_seeds.restart(key);
    }
}
