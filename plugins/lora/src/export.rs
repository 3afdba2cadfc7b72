//! The trained decoder as an ONNX graph: adapters merged into the base weights, then the
//! forward pass of [`crate::model::DecoderModel::logits`] op for op in opset-17 operators
//! (RMSNorm or LayerNormalization, rotary from precomputed tables or a learned position
//! table, grouped-query attention through `Expand`, causal and padding masks, SwiGLU or
//! ReLU/GELU MLPs, the head on the last real token), dynamic batch and sequence.

use crate::arch::Activation;
use crate::lora::LoraLinear;
use crate::model::{Block, DecoderModel, Norm, MASK_BIAS};
use candle_core::Tensor;
use clarity_runtime::onnx::{self, Dim, ElemType, GraphBuilder};
use std::path::Path;

/// Why a graph could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading a weight out of candle failed.
    #[error("export: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Writing the file failed.
    #[error("export: {0}")]
    Write(String),
}

/// Token ids input.
pub const INPUT_IDS: &str = "input_ids";
/// Attention mask input (1 real, 0 padding; rows right-padded).
pub const ATTENTION_MASK: &str = "attention_mask";
/// The output.
pub const LOGITS: &str = "logits";

/// How to write the graph.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Longest sequence (the rotary tables' length).
    pub max_length: usize,
    /// Store the (merged) linear weights and the embedding as int8 with per-channel scales,
    /// dequantized at run time, so serving holds them in 8 bits too.
    pub int8: bool,
}

/// Write `model` to `path`.
pub fn export(
    model: &DecoderModel,
    options: ExportOptions,
    path: &Path,
) -> Result<(), ExportError> {
    let graph = build(model, options)?;
    onnx::save(graph.finish(onnx::OPSET), path).map_err(|e| ExportError::Write(e.to_string()))
}

/// The graph, before it is serialised.
pub fn build(model: &DecoderModel, options: ExportOptions) -> Result<GraphBuilder, ExportError> {
    let max_length = options.max_length;
    let mut g = GraphBuilder::new("clarity_decoder");
    let dims = [
        Dim::Symbolic("batch".into()),
        Dim::Symbolic("sequence".into()),
    ];
    let ids = g.input(INPUT_IDS, ElemType::Int64, &dims);
    let mask = g.input(ATTENTION_MASK, ElemType::Int64, &dims);
    let mut w = Writer {
        g: &mut g,
        n: 0,
        int8: options.int8,
    };
    let logits = w.graph(model, max_length, &ids, &mask)?;
    g.output(
        &logits,
        LOGITS,
        ElemType::Float,
        &[
            Dim::Symbolic("batch".into()),
            Dim::Fixed(model.num_labels() as i64),
        ],
    );
    Ok(g)
}

/// Emits the graph piece by piece, naming initializers uniquely.
struct Writer<'a> {
    g: &'a mut GraphBuilder,
    n: usize,
    int8: bool,
}

impl Writer<'_> {
    fn weight(&mut self, what: &str, t: &Tensor) -> Result<String, ExportError> {
        self.n += 1;
        let name = format!("w{}_{what}", self.n);
        let data = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.g.weight(&name, t.dims(), &data))
    }

    /// `x Wᵀ + b` with the adapter folded into W, stored transposed (no Transpose node);
    /// in int8 with one scale per output channel when asked.
    fn linear(&mut self, what: &str, l: &LoraLinear, x: &str) -> Result<String, ExportError> {
        let merged = l.merged_weight()?.t()?.contiguous()?;
        let wt = if self.int8 {
            let (rows, cols) = merged.dims2()?;
            self.n += 1;
            let data = merged.flatten_all()?.to_vec1::<f32>()?;
            let (q, scale) =
                self.g
                    .weight_int8(&format!("w{}_{what}", self.n), [rows, cols], &data, 1);
            self.g.dequantize_linear(&q, &scale, 1)
        } else {
            self.weight(what, &merged)?
        };
        let y = self.g.matmul(x, &wt);
        match &l.bias {
            Some(b) => {
                let b = self.weight(&format!("{what}_bias"), b)?;
                Ok(self.g.add(&y, &b))
            }
            None => Ok(y),
        }
    }

    fn norm(&mut self, what: &str, n: &Norm, x: &str) -> Result<String, ExportError> {
        let scale = self.weight(what, &n.weight)?;
        match &n.bias {
            None => Ok(self.g.rms_norm(x, &scale, n.eps as f32)),
            Some(bias) => {
                let shift = self.weight(&format!("{what}_bias"), bias)?;
                Ok(self.g.layer_norm(x, &scale, &shift, n.eps as f32, -1))
            }
        }
    }

    /// The activation, written as [`crate::model::activate`] computes it.
    fn activate(&mut self, x: &str, activation: Activation) -> String {
        match activation {
            Activation::Silu => {
                let sig = self.g.sigmoid(x);
                self.g.mul(x, &sig)
            }
            Activation::Relu => self.g.relu(x),
            Activation::GeluTanh => {
                let sq = self.g.mul(x, x);
                let cube = self.g.mul(&sq, x);
                let c = self.g.scalar_f32(0.044715);
                let scaled = self.g.mul(&cube, &c);
                let sum = self.g.add(x, &scaled);
                let k = self
                    .g
                    .scalar_f32((2.0 / std::f64::consts::PI).sqrt() as f32);
                let inner = self.g.mul(&sum, &k);
                let t = self.g.tanh(&inner);
                let one = self.g.scalar_f32(1.0);
                let shifted = self.g.add(&t, &one);
                let prod = self.g.mul(&shifted, x);
                let half = self.g.scalar_f32(0.5);
                self.g.mul(&prod, &half)
            }
        }
    }

    fn graph(
        &mut self,
        model: &DecoderModel,
        max_length: usize,
        ids: &str,
        mask: &str,
    ) -> Result<String, ExportError> {
        let a = &model.arch;
        let table = model.embed.to_f32()?;
        let mut x = if self.int8 {
            // Gather int8 rows, then scale them: only the rows used are dequantized.
            let (rows, cols) = table.dims2()?;
            let data = table.flatten_all()?.to_vec1::<f32>()?;
            let (q, scale) = self.g.weight_int8("embed_tokens", [rows, cols], &data, 0);
            let picked = self.g.gather(&q, ids, 0);
            let picked = self.g.cast(&picked, ElemType::Float);
            let scales = self.g.gather(&scale, ids, 0);
            let scales = self.g.unsqueeze(&scales, &[-1]);
            self.g.mul(&picked, &scales)
        } else {
            let embed = self.weight("embed_tokens", &table)?;
            self.g.gather(&embed, ids, 0)
        };

        // Positions 0..seq: rows of the rotary tables, and the causal mask.
        let shape = self.g.shape(ids);
        let one = self.g.scalar_i64(1);
        let zero = self.g.scalar_i64(0);
        let seq = self.g.gather(&shape, &one, 0);
        let positions = self.g.range(&zero, &seq, &one);
        let rotary = match &model.positions {
            Some(table) => {
                let rows = max_length.min(table.dim(0)?);
                let table = self.weight("embed_positions", &table.narrow(0, 0, rows)?)?;
                let rows = self.g.gather(&table, &positions, 0);
                x = self.g.add(&x, &rows);
                None
            }
            None => {
                let (cos, sin) = DecoderModel::rotary_tables(a, max_length);
                let cos = self.g.weight("rope_cos", &[max_length, a.head_dim], &cos);
                let sin = self.g.weight("rope_sin", &[max_length, a.head_dim], &sin);
                Some((
                    self.g.gather(&cos, &positions, 0),
                    self.g.gather(&sin, &positions, 0),
                ))
            }
        };
        let bias = self.attention_bias(mask, &positions);

        for (i, block) in model.blocks.iter().enumerate() {
            x = self.block(model, i, block, &x, rotary.as_ref(), &bias)?;
        }
        let x = self.norm("norm", &model.norm, &x)?;

        // One-hot of each row's last real token (sum(mask) - 1), times the hidden states.
        let lengths = self.g.reduce_sum(mask, &[1], false);
        let last = self.g.sub(&lengths, &one);
        let last = self.g.unsqueeze(&last, &[1]);
        let cols = self.g.unsqueeze(&positions, &[0]);
        let pick = self.g.equal(&cols, &last);
        let pick = self.g.cast(&pick, ElemType::Float);
        let pick = self.g.unsqueeze(&pick, &[1]);
        let hidden = self.g.matmul(&pick, &x);
        let hidden = self.g.squeeze(&hidden, &[1]);
        let head = self.weight("score", &model.head.t()?.contiguous()?)?;
        Ok(self.g.matmul(&hidden, &head))
    }

    /// `[b, 1, s, s]`: [`MASK_BIAS`] above the diagonal and on padding keys, else 0.
    fn attention_bias(&mut self, mask: &str, positions: &str) -> String {
        let rows = self.g.unsqueeze(positions, &[1]);
        let cols = self.g.unsqueeze(positions, &[0]);
        let future = self.g.greater(&cols, &rows);
        let future = self.g.cast(&future, ElemType::Float);
        let big = self.g.scalar_f32(MASK_BIAS);
        let causal = self.g.mul(&future, &big);
        let m = self.g.cast(mask, ElemType::Float);
        let one = self.g.scalar_f32(1.0);
        let pad = self.g.sub(&one, &m);
        let pad = self.g.mul(&pad, &big);
        let pad = self.g.unsqueeze(&pad, &[1, 2]);
        self.g.add(&pad, &causal)
    }

    fn block(
        &mut self,
        model: &DecoderModel,
        i: usize,
        block: &Block,
        x: &str,
        rotary: Option<&(String, String)>,
        bias: &str,
    ) -> Result<String, ExportError> {
        let a = &model.arch;
        let (nh, kv, hd) = (a.num_heads as i64, a.num_kv_heads as i64, a.head_dim as i64);
        let h = self.norm(&format!("l{i}_attn_norm"), &block.attn_norm, x)?;
        let q = self.linear(&format!("l{i}_q"), &block.attention.q, &h)?;
        let k = self.linear(&format!("l{i}_k"), &block.attention.k, &h)?;
        let v = self.linear(&format!("l{i}_v"), &block.attention.v, &h)?;
        // [b, s, n·hd] -> [b, n, s, hd]
        let heads = |w: &mut Self, t: &str, n: i64| -> String {
            let t = w.g.reshape(t, &[0, 0, n, hd]);
            w.g.transpose(&t, &[0, 2, 1, 3])
        };
        let q = heads(self, &q, nh);
        let k = heads(self, &k, kv);
        let v = heads(self, &v, kv);
        let (q, k) = match rotary {
            Some((cos, sin)) => (self.rotate(&q, cos, sin, hd), self.rotate(&k, cos, sin, hd)),
            None => (q, k),
        };
        let k = self.repeat_kv(&k, a.group_size() as i64, nh, hd);
        let v = self.repeat_kv(&v, a.group_size() as i64, nh, hd);
        let kt = self.g.transpose(&k, &[0, 1, 3, 2]);
        let scores = self.g.matmul(&q, &kt);
        let scale = self.g.scalar_f32(1.0 / (hd as f32).sqrt());
        let scores = self.g.mul(&scores, &scale);
        let scores = self.g.add(&scores, bias);
        let probs = self.g.softmax(&scores, -1);
        let attn = self.g.matmul(&probs, &v);
        let attn = self.g.transpose(&attn, &[0, 2, 1, 3]);
        let attn = self.g.reshape(&attn, &[0, 0, nh * hd]);
        let out = self.linear(&format!("l{i}_o"), &block.attention.o, &attn)?;
        let x = self.g.add(x, &out);

        let h = self.norm(&format!("l{i}_mlp_norm"), &block.mlp_norm, &x)?;
        let up = self.linear(&format!("l{i}_up"), &block.mlp.up, &h)?;
        let hidden = match &block.mlp.gate {
            Some(gate) => {
                let gate = self.linear(&format!("l{i}_gate"), gate, &h)?;
                let act = self.activate(&gate, a.activation);
                self.g.mul(&act, &up)
            }
            None => self.activate(&up, a.activation),
        };
        let down = self.linear(&format!("l{i}_down"), &block.mlp.down, &hidden)?;
        Ok(self.g.add(&x, &down))
    }

    /// `x·cos + [-x₂, x₁]·sin` on `[b, n, s, hd]` with `[s, hd]` tables.
    fn rotate(&mut self, x: &str, cos: &str, sin: &str, hd: i64) -> String {
        let halves = self.g.split(x, &[hd / 2, hd / 2], -1);
        let (x1, x2) = (&halves[0], &halves[1]);
        let neg = self.g.neg(x2);
        let rotated = self.g.concat(&[&neg, x1], -1);
        let a = self.g.mul(x, cos);
        let b = self.g.mul(&rotated, sin);
        self.g.add(&a, &b)
    }

    /// `[b, kv, s, hd]` → `[b, kv·g, s, hd]` by broadcasting a new group axis.
    fn repeat_kv(&mut self, x: &str, g: i64, nh: i64, hd: i64) -> String {
        if g == 1 {
            return x.to_string();
        }
        let x = self.g.unsqueeze(x, &[2]);
        let groups = self.g.const_i64(&[1, 1, g, 1, 1]);
        let x = self.g.expand(&x, &groups);
        self.g.reshape(&x, &[0, nh, -1, hd])
    }
}
