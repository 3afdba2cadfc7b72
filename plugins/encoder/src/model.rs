//! The encoder in candle, built from ops that all have a backward pass, so every parameter
//! trains.
//!
//! candle's own BERT takes fused LayerNorm/softmax paths that have no backward pass (see
//! RECIPES): only the head would learn. Here attention ([`attention`]), LayerNorm, GELU and
//! the bias additions ([`fused`]) are our own CPU ops with their backward passes, and
//! dropout is real, seeded from the training seed ([`crate::dropout`]).

use crate::arch::{Activation, Arch, Family};
use crate::attention;
use crate::dropout::{self, DropoutSeeds};
use crate::fused;
use crate::names;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Linear, VarMap};
use clarity_runtime::batch::{TensorBatch, TrainableModel};

/// A linear layer through [`fused::linear`].
fn project(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    fused::linear(x, layer.weight(), layer.bias())
}

/// Added to attention scores of padding positions (the exporter uses the same value).
pub const MASK_BIAS: f32 = -10000.0;

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
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Token, position and segment embeddings.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// `[vocab, hidden]`.
    pub word: Tensor,
    /// `[max_positions, hidden]`.
    pub position: Tensor,
    /// `[type_vocab, hidden]`, when the model has segments.
    pub segment: Option<Tensor>,
    /// LayerNorm after the sum.
    pub norm: Norm,
}

/// One post-norm transformer layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Query projection.
    pub query: Linear,
    /// Key projection.
    pub key: Linear,
    /// Value projection.
    pub value: Linear,
    /// Attention output projection.
    pub attn_out: Linear,
    /// Norm after attention.
    pub attn_norm: Norm,
    /// Feed-forward up projection.
    pub ffn_in: Linear,
    /// Feed-forward down projection.
    pub ffn_out: Linear,
    /// Norm after the feed-forward block.
    pub ffn_norm: Norm,
}

/// The classification head over the first token's hidden state.
#[derive(Debug, Clone)]
pub struct Head {
    /// hidden → hidden (BERT's pooler, RoBERTa's `classifier.dense`, DistilBERT's
    /// `pre_classifier`).
    pub dense: Linear,
    /// hidden → labels.
    pub output: Linear,
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
        let get = |name: &str| -> Result<Tensor> {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
            data.get(name)
                .map(|v| v.as_tensor().clone())
                .ok_or_else(|| candle_core::Error::Msg(format!("no variable `{name}`")))
        };
        let linear = |name: &str| -> Result<Linear> {
            Ok(Linear::new(
                get(&format!("{name}.weight"))?,
                Some(get(&format!("{name}.bias"))?),
            ))
        };
        let norm = |name: &str| -> Result<Norm> {
            Ok(Norm {
                weight: get(&format!("{name}.weight"))?,
                bias: get(&format!("{name}.bias"))?,
                eps: arch.layer_norm_eps,
            })
        };
        let (word, position, segment, emb_norm) = names::embeddings(&arch);
        let embeddings = Embeddings {
            word: get(&format!("{word}.weight"))?,
            position: get(&format!("{position}.weight"))?,
            segment: segment.map(|s| get(&format!("{s}.weight"))).transpose()?,
            norm: norm(&emb_norm)?,
        };
        let layers = (0..arch.num_layers)
            .map(|i| {
                let n = names::layer(arch.family, i);
                Ok(Layer {
                    query: linear(&n.query)?,
                    key: linear(&n.key)?,
                    value: linear(&n.value)?,
                    attn_out: linear(&n.attn_out)?,
                    attn_norm: norm(&n.attn_norm)?,
                    ffn_in: linear(&n.ffn_in)?,
                    ffn_out: linear(&n.ffn_out)?,
                    ffn_norm: norm(&n.ffn_norm)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (dense, output) = names::head(arch.family);
        let head = Head {
            dense: linear(dense)?,
            output: linear(output)?,
        };
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
        let dropout = |x: Tensor, p: f32| -> Result<Tensor> {
            if train {
                dropout::dropout(&x, p, self.dropout_seeds.next())
            } else {
                Ok(x)
            }
        };
        // `dropout(y) + x`, the residual connection, in one pass.
        let residual = |y: Tensor, x: &Tensor, p: f32| -> Result<Tensor> {
            if train {
                dropout::dropout_add(&y, x, p, self.dropout_seeds.next())
            } else {
                y + x
            }
        };
        let arch = &self.arch;
        let (b, s) = batch.input_ids.dims2()?;
        let mask = &batch.attention_mask;
        let mut x = self.embed(batch)?;
        x = dropout(x, arch.hidden_dropout)?;
        // [b, 1, 1, s]: 0 for real tokens, MASK_BIAS for padding.
        let bias = ((mask.ones_like()? - mask)? * f64::from(MASK_BIAS))?.reshape((b, 1, 1, s))?;
        for layer in &self.layers {
            let q = project(&layer.query, &x)?;
            let k = project(&layer.key, &x)?;
            let v = project(&layer.value, &x)?;
            let attention_dropout = (train && arch.attention_dropout > 0.0)
                .then(|| (arch.attention_dropout, self.dropout_seeds.next()));
            let context =
                attention::attention(&q, &k, &v, &bias, arch.num_heads, attention_dropout)?;
            let attn = project(&layer.attn_out, &context)?;
            x = layer
                .attn_norm
                .forward(&residual(attn, &x, arch.hidden_dropout)?)?;
            let up = project(&layer.ffn_in, &x)?;
            let up = match arch.activation {
                Activation::Gelu => fused::gelu_erf(&up)?,
                Activation::Relu => up.relu()?,
            };
            let down = project(&layer.ffn_out, &up)?;
            x = layer
                .ffn_norm
                .forward(&residual(down, &x, arch.hidden_dropout)?)?;
        }
        let first = x.narrow(1, 0, 1)?.squeeze(1)?;
        let p = arch.classifier_dropout;
        match arch.family {
            Family::Bert => {
                let pooled = project(&self.head.dense, &first)?.tanh()?;
                project(&self.head.output, &dropout(pooled, p)?)
            }
            Family::Roberta => {
                let hidden = project(&self.head.dense, &dropout(first, p)?)?.tanh()?;
                project(&self.head.output, &dropout(hidden, p)?)
            }
            Family::DistilBert => {
                let hidden = project(&self.head.dense, &first)?.relu()?;
                project(&self.head.output, &dropout(hidden, p)?)
            }
        }
    }

    /// Summed embeddings `[b, s, hidden]`, normalised.
    fn embed(&self, batch: &TensorBatch) -> Result<Tensor> {
        let (b, s) = batch.input_ids.dims2()?;
        let hidden = self.arch.hidden_size;
        let words = self
            .embeddings
            .word
            .index_select(&batch.input_ids.flatten_all()?, 0)?
            .reshape((b, s, hidden))?;
        let positions = self.position_ids(batch)?;
        let positions = self
            .embeddings
            .position
            .index_select(&positions.flatten_all()?, 0)?
            .reshape((b, s, hidden))?;
        let mut x = (words + positions)?;
        match &self.embeddings.segment {
            // One segment row (RoBERTa): the same vector for every token.
            Some(table) if !self.arch.uses_token_type_ids() => {
                x = x.broadcast_add(&table.get(0)?)?;
            }
            Some(table) => {
                let segments = table
                    .index_select(&batch.token_type_ids.flatten_all()?, 0)?
                    .reshape((b, s, hidden))?;
                x = (x + segments)?;
            }
            None => {}
        }
        self.embeddings.norm.forward(&x)
    }

    /// `[b, s]` position ids: 0.. for BERT and DistilBERT; for RoBERTa, real tokens count
    /// from `pad + 1` and padding sits at `pad`.
    fn position_ids(&self, batch: &TensorBatch) -> Result<Tensor> {
        let (b, s) = batch.input_ids.dims2()?;
        match self.arch.family {
            Family::Roberta => {
                let mask = &batch.attention_mask;
                let counted = (mask.cumsum(1)? * mask)?;
                (counted + self.arch.pad_token_id as f64)?.to_dtype(DType::U32)
            }
            _ => Tensor::arange(0u32, s as u32, &self.device)?
                .unsqueeze(0)?
                .broadcast_as((b, s))?
                .contiguous(),
        }
    }
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
