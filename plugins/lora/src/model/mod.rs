//! The decoder in candle: pre-norm blocks (RMSNorm or LayerNorm; rotary or learned positions;
//! grouped-query attention with causal and padding masks; SwiGLU or a plain MLP), LoRA
//! adapters on the target modules, and a classification head on the hidden state of the last
//! real token. Llama and Qwen2 use RMSNorm, rotary and SwiGLU; OPT and GPT-2 LayerNorm,
//! learned positions and up → ReLU/GELU → down.
//!
//! Only the adapters and the head are variables (in the [`VarMap`] the training loop and the
//! checkpoints see); the base weights are plain tensors. Every op used here has a backward
//! pass: on the CPU, attention, RMSNorm, SwiGLU, rotary positions and the LoRA layers are
//! our own fused ops (`attention_op`, `fused`, `crate::lora_op`: they keep far less for the
//! backward pass); elsewhere the same formulas from candle's differentiable ops. candle's own fused `rms_norm`, `rope` and
//! `softmax_last_dim` have no backward pass and would cut the gradient silently.

mod attention_op;
mod block;
mod checkpoint;
mod fused;

pub use block::{activate, Attention, Block, Mlp};
pub use fused::{rms_norm, rotary, swiglu};

use crate::arch::DecoderArch;
use crate::lora::{Adapter, Frozen, LoraLinear, LoraSettings};
use candle_core::backprop::GradStore;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Result, Tensor, Var, D};
use candle_nn::VarMap;
use checkpoint::{checkpointed, GradSink};
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::kernels::dropout::{Dropout, DropoutSeeds};
use clarity_runtime::kernels::use_fused;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::Arc;

/// Added to the attention scores of masked positions (the exporter uses the same value).
pub const MASK_BIAS: f32 = -1.0e9;

/// Name of the classification head's weight (`[labels, hidden]`, as transformers'
/// `*ForSequenceClassification.score`).
pub const HEAD: &str = "score.weight";

/// RMSNorm (no bias) or LayerNorm (with one) over the last axis.
#[derive(Debug, Clone)]
pub struct Norm {
    /// Scale.
    pub weight: Tensor,
    /// Shift: `Some` for LayerNorm.
    pub bias: Option<Tensor>,
    /// Epsilon.
    pub eps: f64,
}

impl Norm {
    /// Normalise `x`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.bias {
            None => rms_norm(x, &self.weight, self.eps),
            Some(bias) => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let centered = x.broadcast_sub(&mean)?;
                let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
                centered
                    .broadcast_div(&(var + self.eps)?.sqrt()?)?
                    .broadcast_mul(&self.weight)?
                    .broadcast_add(bias)
            }
        }
    }
}

/// A decoder LM with adapters and a classification head.
pub struct DecoderModel {
    /// Shape.
    pub arch: DecoderArch,
    /// Token embedding `[vocab, hidden]`.
    pub embed: Frozen,
    /// Learned positions `[max_positions, hidden]` (OPT, GPT-2; row p is position p).
    pub positions: Option<Tensor>,
    /// Blocks.
    pub blocks: Vec<Block>,
    /// Final norm.
    pub norm: Norm,
    /// Head `[labels, hidden]` (a variable).
    pub head: Tensor,
    varmap: VarMap,
    device: Device,
    /// Seeds of the adapters' dropout masks (from the training seed, restarted per
    /// micro-batch, so a seeded run repeats).
    dropout_seeds: DropoutSeeds,
    /// Checkpoint every block while training (see [`checkpoint`]).
    checkpointing: bool,
    /// Adapter gradients from checkpointed blocks' backward passes.
    grad_sink: Arc<GradSink>,
}

/// Base weights under canonical names (see [`crate::names`]). Building a model takes each
/// tensor out as it converts it, so a checkpoint is never held twice (in its own dtype and
/// as the model's f32 or 8-bit copy); clone it (cheap: the tensors are shared) to build more
/// than one model from it.
#[derive(Clone)]
pub struct BaseWeights {
    tensors: HashMap<String, Tensor>,
    /// A GGUF file's quantized tensors (on the CPU): kept as they are under `use_8bit`,
    /// dequantized one at a time otherwise.
    quantized: HashMap<String, Arc<QTensor>>,
}

impl BaseWeights {
    /// Rename a checkpoint of `arch`'s family to canonical names (converted to f32 on use).
    pub fn new(arch: &DecoderArch, tensors: HashMap<String, Tensor>) -> Result<Self> {
        Self::with_quantized(arch, tensors, HashMap::new())
    }

    /// [`Self::new`] with quantized tensors too (a GGUF file's, under HF llama names).
    pub fn with_quantized(
        arch: &DecoderArch,
        tensors: HashMap<String, Tensor>,
        quantized: HashMap<String, QTensor>,
    ) -> Result<Self> {
        let quantized = quantized
            .into_iter()
            .map(|(name, q)| (name, Arc::new(q)))
            .collect();
        Ok(Self {
            tensors: crate::names::canonical(arch, tensors)?,
            quantized: crate::names::canonical_quantized(arch, quantized)?,
        })
    }

    /// Take out the tensor with canonical `name`, as f32 on `device`.
    pub fn take(&mut self, name: &str, device: &Device) -> Result<Tensor> {
        if let Some(q) = self.quantized.remove(name) {
            return q.dequantize(device);
        }
        let t = self.tensors.remove(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "the base weights have no tensor `{name}` (canonical name; see names.rs)"
            ))
        })?;
        t.to_dtype(DType::F32)?.to_device(device)
    }

    /// Take out the frozen matrix `name`: with `use_8bit`, a quantized tensor as it is (on
    /// the CPU) when candle has SIMD kernels for its blocks, and anything else quantized to
    /// Q8_0 (one matrix at a time); otherwise in f32.
    fn take_frozen(&mut self, name: &str, use_8bit: bool, device: &Device) -> Result<Frozen> {
        if use_8bit && device.is_cpu() {
            if let Some(q) = self.quantized.remove(name) {
                if crate::lora::fast_blocks(q.dtype()) {
                    return Ok(match Arc::try_unwrap(q) {
                        Ok(q) => Frozen::quantized(q),
                        Err(shared) => Frozen::Quantized(shared),
                    });
                }
                return Frozen::new(q.dequantize(device)?, true);
            }
        }
        Frozen::new(self.take(name, device)?, use_8bit)
    }

    fn take_optional(&mut self, name: &str, device: &Device) -> Result<Option<Tensor>> {
        match self.tensors.contains_key(name) || self.quantized.contains_key(name) {
            true => self.take(name, device).map(Some),
            false => Ok(None),
        }
    }

    fn norm(&mut self, name: &str, layer_norm: bool, eps: f64, device: &Device) -> Result<Norm> {
        Ok(Norm {
            weight: self.take(&format!("{name}.weight"), device)?,
            bias: match layer_norm {
                true => Some(self.take(&format!("{name}.bias"), device)?),
                false => None,
            },
            eps,
        })
    }
}

/// The trainable part: what to initialise, and how.
pub struct Trainable<'a> {
    /// Adapter settings.
    pub lora: &'a LoraSettings,
    /// Labels of the head.
    pub num_labels: usize,
    /// Seed of the adapters' and head's initial values.
    pub seed: u64,
    /// Keep the frozen linear weights in 8 bits (Q8_0).
    pub use_8bit: bool,
    /// Recompute each block's forward pass in the backward pass instead of keeping its
    /// activations (`lora_config.gradient_checkpointing`).
    pub gradient_checkpointing: bool,
}

impl DecoderModel {
    /// Build the model from base weights, with fresh adapters and head (names of the fresh
    /// variables in the second value: every one is newly initialised).
    pub fn new(
        arch: DecoderArch,
        mut base: BaseWeights,
        trainable: &Trainable<'_>,
        device: &Device,
    ) -> Result<(Self, Vec<String>)> {
        let varmap = VarMap::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trainable.seed);
        let mut fresh = Vec::new();
        let mut var = |name: String, rows: usize, cols: usize, init: Init| -> Result<Tensor> {
            let values: Vec<f32> = (0..rows * cols)
                .map(|_| match init {
                    Init::Zeros => 0.0,
                    Init::Uniform(bound) => rng.random_range(-bound..bound),
                    Init::Normal(std) => {
                        // Box-Muller: rand_distr is not a dependency for one line.
                        let u: f32 = rng.random_range(f32::EPSILON..1.0);
                        let v: f32 = rng.random_range(0.0..1.0);
                        std * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
                    }
                })
                .collect();
            let v = Var::from_tensor(&Tensor::from_vec(values, (rows, cols), device)?)?;
            let t = v.as_tensor().clone();
            varmap
                .data()
                .lock()
                .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?
                .insert(name.clone(), v);
            fresh.push(name);
            Ok(t)
        };
        let lora = trainable.lora;
        let mut linear = |base: &mut BaseWeights,
                          path: String,
                          module: &str,
                          bias: bool|
         -> Result<LoraLinear> {
            let weight = base.take_frozen(&format!("{path}.weight"), trainable.use_8bit, device)?;
            let bias = match bias {
                true => Some(base.take(&format!("{path}.bias"), device)?),
                false => base.take_optional(&format!("{path}.bias"), device)?,
            };
            let adapter = match lora.targets(module) {
                false => None,
                true => {
                    let (out, inner) = match weight.dims()[..] {
                        [out, inner] => (out, inner),
                        ref dims => candle_core::bail!("{path}.weight is {dims:?}, not a matrix"),
                    };
                    // PEFT's default: A kaiming-uniform (bound 1/sqrt(in)), B zeros, so the
                    // adapted model starts as the base model.
                    let bound = 1.0 / (inner as f32).sqrt();
                    let a = var(
                        format!("{path}.lora_A.weight"),
                        lora.r,
                        inner,
                        Init::Uniform(bound),
                    )?;
                    let b = var(format!("{path}.lora_B.weight"), out, lora.r, Init::Zeros)?;
                    Some(Adapter {
                        a,
                        b,
                        scale: lora.scale(),
                        dropout: lora.dropout,
                    })
                }
            };
            Ok(LoraLinear {
                weight,
                bias,
                adapter,
            })
        };
        let qkv_bias = arch.attention_bias;
        let bias = arch.family.linear_bias();
        let layer_norm = !arch.family.rms_norm();
        let eps = arch.norm_eps;
        let mut blocks = Vec::with_capacity(arch.num_layers);
        for i in 0..arch.num_layers {
            let p = format!("layers.{i}");
            // The gate's adapter is drawn first, as it always was: the draws' order decides
            // every adapter's initial values for a seed.
            let gate = match arch.family.gated_mlp() {
                true => Some(linear(
                    &mut base,
                    format!("{p}.mlp.gate_proj"),
                    "gate_proj",
                    false,
                )?),
                false => None,
            };
            let attn_norm = base.norm(&format!("{p}.input_layernorm"), layer_norm, eps, device)?;
            let attention = Attention {
                q: linear(
                    &mut base,
                    format!("{p}.self_attn.q_proj"),
                    "q_proj",
                    qkv_bias,
                )?,
                k: linear(
                    &mut base,
                    format!("{p}.self_attn.k_proj"),
                    "k_proj",
                    qkv_bias,
                )?,
                v: linear(
                    &mut base,
                    format!("{p}.self_attn.v_proj"),
                    "v_proj",
                    qkv_bias,
                )?,
                o: linear(&mut base, format!("{p}.self_attn.o_proj"), "o_proj", bias)?,
                heads: arch.num_heads,
                kv_heads: arch.num_kv_heads,
                head_dim: arch.head_dim,
            };
            let mlp_norm = base.norm(
                &format!("{p}.post_attention_layernorm"),
                layer_norm,
                eps,
                device,
            )?;
            let mlp = Mlp {
                gate,
                up: linear(&mut base, format!("{p}.mlp.up_proj"), "up_proj", bias)?,
                down: linear(&mut base, format!("{p}.mlp.down_proj"), "down_proj", bias)?,
                activation: arch.activation,
            };
            blocks.push(Block {
                attn_norm,
                attention,
                mlp_norm,
                mlp,
            });
        }
        let head = var(
            HEAD.to_string(),
            trainable.num_labels,
            arch.hidden_size,
            Init::Normal(0.02),
        )?;
        let model = Self {
            embed: base.take_frozen("embed_tokens.weight", trainable.use_8bit, device)?,
            positions: match arch.family.rotary() {
                true => None,
                false => Some(base.take("embed_positions.weight", device)?),
            },
            norm: base.norm("norm", layer_norm, eps, device)?,
            blocks,
            head,
            arch,
            varmap,
            device: device.clone(),
            dropout_seeds: DropoutSeeds::new(trainable.seed),
            checkpointing: trainable.gradient_checkpointing,
            grad_sink: Arc::default(),
        };
        model.check_shapes()?;
        Ok((model, fresh))
    }

    fn check_shapes(&self) -> Result<()> {
        let a = &self.arch;
        let expect = |what: &str, got: &[usize], dims: &[usize]| -> Result<()> {
            if got != dims {
                candle_core::bail!("{what} has shape {got:?}, but config.json implies {dims:?}");
            }
            Ok(())
        };
        expect(
            "embed_tokens",
            &self.embed.dims(),
            &[a.vocab_size, a.hidden_size],
        )?;
        for (i, b) in self.blocks.iter().enumerate() {
            expect(
                &format!("layer {i} q_proj"),
                &b.attention.q.weight.dims(),
                &[a.q_width(), a.hidden_size],
            )?;
            expect(
                &format!("layer {i} k_proj"),
                &b.attention.k.weight.dims(),
                &[a.kv_width(), a.hidden_size],
            )?;
            expect(
                &format!("layer {i} v_proj"),
                &b.attention.v.weight.dims(),
                &[a.kv_width(), a.hidden_size],
            )?;
            expect(
                &format!("layer {i} up_proj"),
                &b.mlp.up.weight.dims(),
                &[a.intermediate_size, a.hidden_size],
            )?;
        }
        Ok(())
    }

    /// Labels the head scores.
    pub fn num_labels(&self) -> usize {
        self.head.dims().first().copied().unwrap_or(0)
    }

    /// Bytes held by the frozen matrices (8-bit ones as stored).
    pub fn frozen_bytes(&self) -> usize {
        let linear: usize = self
            .blocks
            .iter()
            .flat_map(Block::linears)
            .map(|l| l.weight.bytes())
            .sum();
        linear + self.embed.bytes()
    }

    /// The frozen matrices' formats, e.g. `Q4_1, Q8_0` or `f32`.
    pub fn frozen_formats(&self) -> String {
        let mut formats: Vec<&str> = self
            .blocks
            .iter()
            .flat_map(Block::linears)
            .map(|l| l.weight.format())
            .chain([self.embed.format()])
            .collect();
        formats.sort();
        formats.dedup();
        formats.join(", ")
    }

    /// The variables (adapters and head).
    pub fn varmap_ref(&self) -> &VarMap {
        &self.varmap
    }

    /// Rotary tables `(cos, sin)`, each `[seq, head_dim]` (the half-width angles repeated, as
    /// transformers' `rotate_half` layout wants).
    pub fn rotary_tables(arch: &DecoderArch, seq: usize) -> (Vec<f32>, Vec<f32>) {
        let half = arch.head_dim / 2;
        let mut cos = Vec::with_capacity(seq * arch.head_dim);
        let mut sin = Vec::with_capacity(seq * arch.head_dim);
        for p in 0..seq {
            let row: Vec<f64> = (0..half)
                .map(|j| {
                    let inv = arch
                        .rope_theta
                        .powf(-(2.0 * j as f64) / arch.head_dim as f64);
                    p as f64 * inv
                })
                .collect();
            for _ in 0..2 {
                cos.extend(row.iter().map(|a| a.cos() as f32));
                sin.extend(row.iter().map(|a| a.sin() as f32));
            }
        }
        (cos, sin)
    }

    /// Logits `[batch, labels]` from the hidden state of each row's last real token. Rows must
    /// be right-padded (real tokens first).
    pub fn logits(&self, batch: &TensorBatch, train: bool) -> Result<Tensor> {
        let (mut x, rotary) = self.embed(&batch.input_ids)?;
        let key_bias = key_bias(&batch.attention_mask)?;
        let checkpoint = train && self.checkpointing && use_fused(&x);
        if checkpoint {
            self.grad_sink.clear()?;
            if !x.track_op() {
                // The frozen embedding's output is outside the graph; the first block's
                // checkpoint op needs a tracked input to be recorded at all.
                x = Var::from_tensor(&x)?.as_tensor().clone();
            }
        }
        for block in &self.blocks {
            // Each block's dropout masks come from a seed of its own, so a checkpointed
            // block's second pass can draw them again, and both ways train alike.
            let seed = self.dropout_seeds.next();
            x = match checkpoint {
                true => checkpointed(block, &x, rotary.as_ref(), &key_bias, seed, &self.grad_sink)?,
                false => {
                    let seeds = DropoutSeeds::new(seed);
                    block.forward(&x, rotary.as_ref(), &key_bias, Dropout::new(train, &seeds))?
                }
            };
        }
        let x = self.norm.forward(&x)?;
        self.last_tokens(&x, &batch.attention_mask)?
            .matmul(&self.head.t()?)
    }

    /// Token embeddings `[b, s, hidden]` of `ids` (`[b, s]`), with learned positions added,
    /// or the rotary tables `(cos, sin)` the attention layers apply instead.
    fn embed(&self, ids: &Tensor) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let (b, s) = ids.dims2()?;
        let a = &self.arch;
        let ids = ids.flatten_all()?;
        let rows = match &self.embed {
            Frozen::F32(table) => table.index_select(&ids, 0)?,
            Frozen::Quantized(table) => table.embedding(&ids)?,
        };
        let x = rows.reshape((b, s, a.hidden_size))?;
        match &self.positions {
            // Rows are right-padded, so real tokens sit at positions 0..len.
            Some(table) => {
                if s > table.dim(0)? {
                    candle_core::bail!("{s} tokens but the model has {} positions", table.dim(0)?);
                }
                Ok((x.broadcast_add(&table.narrow(0, 0, s)?)?, None))
            }
            None => {
                let (cos, sin) = Self::rotary_tables(a, s);
                let rotary = (
                    Tensor::from_vec(cos, (s, a.head_dim), &self.device)?,
                    Tensor::from_vec(sin, (s, a.head_dim), &self.device)?,
                );
                Ok((x, Some(rotary)))
            }
        }
    }

    /// `[b, hidden]`: each row's hidden state at its last real token (rows right-padded).
    fn last_tokens(&self, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s, hidden) = x.dims3()?;
        // The last real token of row i sits at sum(mask_i) - 1.
        let lengths = mask.sum(1)?.to_vec1::<f32>()?;
        let rows: Vec<u32> = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| (i * s) as u32 + (n.max(1.0) as u32 - 1))
            .collect();
        let rows = Tensor::from_vec(rows, b, &self.device)?;
        x.reshape((b * s, hidden))?.index_select(&rows, 0)
    }
}

/// Padding bias `[batch, seq]` of each key: 0 for real tokens, [`MASK_BIAS`] for padding
/// (the attention adds the causal mask itself).
fn key_bias(mask: &Tensor) -> Result<Tensor> {
    (1.0 - mask.to_dtype(DType::F32)?)? * f64::from(MASK_BIAS)
}

enum Init {
    Zeros,
    Uniform(f32),
    Normal(f32),
}

impl TrainableModel for DecoderModel {
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

    fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        self.grad_sink.drain_into(&mut grads)?;
        Ok(grads)
    }
}
