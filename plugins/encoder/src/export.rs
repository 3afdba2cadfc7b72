//! The trained encoder as an ONNX graph, written by the project (no Python, no torch.onnx).
//!
//! The graph mirrors [`crate::model::EncoderModel::logits`], with the weights as initializers
//! and dynamic batch and sequence axes, in one of two forms ([`GraphOps`]):
//!
//! - **standard** (the default): opset-17 operators only. ONNX Runtime's load-time optimizer
//!   fuses its LayerNorm, GELU and Q·Kᵀ patterns (`BiasGelu`, `FusedMatMul`); it runs on every
//!   execution provider, CoreML included.
//! - **fused**: each layer as ONNX Runtime's transformer optimizer would leave it, in its
//!   contrib ops: one `Attention` (Q, K and V as one packed `[h, 3h]` matmul, the padding mask
//!   applied inside), `SkipLayerNormalization` (residual + bias + LayerNorm) and `BiasGelu`;
//!   int8 quantization turns `Attention` into `QAttention`. The load-time optimizer does not
//!   find the attention in the standard graph (nor in `torch.onnx.export`'s), so this is
//!   the form for execution providers with fused attention kernels (CUDA). On CPU it
//!   measured no faster (`bench/onnx_graph_vs_torch.py`, README "Our ONNX graph").

use crate::arch::{Activation, Family, Pooling};
use crate::model::{Attention, EncoderModel, FeedForward, Layer, Norm, MASK_BIAS};
use candle_core::Tensor;
use candle_nn::Linear;
use clarity_runtime::onnx::{self, Attr, Dim, ElemType, GraphBuilder};
use std::collections::BTreeMap;
use std::path::Path;

/// Which operators the graph is written with (`model_config.options.onnx_ops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphOps {
    /// Standard opset-17 operators only.
    #[default]
    Standard,
    /// ONNX Runtime's contrib ops (`Attention`, `SkipLayerNormalization`, `BiasGelu`).
    Fused,
}

impl GraphOps {
    /// The entry's `model_config.options.onnx_ops`, as a config error when wrong.
    pub fn of(init: &clarity_sdk::PluginInit) -> Result<Self, clarity_sdk::Error> {
        Self::from_options(&init.spec.model_config.options).map_err(clarity_sdk::Error::config)
    }

    /// The `onnx_ops` option (`standard` or `fused`; unset: standard).
    pub fn from_options(options: &BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        match options.get("onnx_ops") {
            None => Ok(Self::default()),
            Some(v) => match v.as_str() {
                Some("fused") => Ok(Self::Fused),
                Some("standard") => Ok(Self::Standard),
                _ => Err(format!(
                    "model_config.options.onnx_ops must be `standard` (opset-17 operators, the \
                     default) or `fused` (ONNX Runtime's contrib ops), not {v}"
                )),
            },
        }
    }
}

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

/// Graph input and output names (also what models exported by optimum use).
pub const INPUT_IDS: &str = "input_ids";
/// Attention mask input.
pub const ATTENTION_MASK: &str = "attention_mask";
/// Segment ids input (only for models with segment embeddings).
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
/// The output.
pub const LOGITS: &str = "logits";

/// Write `model` to `path` as ONNX.
pub fn export(model: &EncoderModel, ops: GraphOps, path: &Path) -> Result<(), ExportError> {
    let graph = build(model, ops)?;
    onnx::save(graph.finish(onnx::OPSET), path).map_err(|e| ExportError::Write(e.to_string()))
}

/// A linear layer's bias, or zeros of its output size (`Attention` always takes one).
fn bias_or_zeros(l: &Linear) -> Result<Tensor, ExportError> {
    match l.bias() {
        Some(b) => Ok(b.clone()),
        None => Ok(Tensor::zeros(
            l.weight().dim(0)?,
            l.weight().dtype(),
            l.weight().device(),
        )?),
    }
}

fn values(t: &Tensor) -> Result<Vec<f32>, ExportError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The graph, before it is serialised.
pub fn build(model: &EncoderModel, ops: GraphOps) -> Result<GraphBuilder, ExportError> {
    let arch = &model.arch;
    let mut g = GraphBuilder::new("clarity_encoder");
    let dims = [
        Dim::Symbolic("batch".into()),
        Dim::Symbolic("sequence".into()),
    ];
    let ids = g.input(INPUT_IDS, ElemType::Int64, &dims);
    let mask = g.input(ATTENTION_MASK, ElemType::Int64, &dims);
    let segments = arch
        .uses_token_type_ids()
        .then(|| g.input(TOKEN_TYPE_IDS, ElemType::Int64, &dims));

    let mut w = Weights { g: &mut g, n: 0 };
    let mut x = w.embeddings(model, &ids, &mask, segments.as_deref())?;
    // The masks each kind of layer reads, written once, before their first reader.
    let (mut bias, mut int_mask) = (None::<String>, None::<String>);
    for (i, layer) in model.layers.iter().enumerate() {
        // As in the candle model, a head that reads the first position alone needs the last
        // layer at that position only.
        let first_only = arch.pooling == Pooling::Cls && i + 1 == model.layers.len();
        x = if first_only || ops == GraphOps::Standard {
            let bias = bias.get_or_insert_with(|| w.mask_bias(&mask)).clone();
            w.layer(model, layer, &x, &bias, first_only)?
        } else {
            let mask = int_mask
                .get_or_insert_with(|| w.g.cast(&mask, ElemType::Int32))
                .clone();
            w.fused_layer(model, layer, &x, &mask)?
        };
    }
    let logits = w.head(model, &x, &mask)?;
    let labels = model.num_labels() as i64;
    g.output(
        &logits,
        LOGITS,
        ElemType::Float,
        &[Dim::Symbolic("batch".into()), Dim::Fixed(labels)],
    );
    Ok(g)
}

/// Emits the graph piece by piece, naming initializers uniquely.
struct Weights<'a> {
    g: &'a mut GraphBuilder,
    n: usize,
}

impl Weights<'_> {
    fn weight(&mut self, what: &str, t: &Tensor) -> Result<String, ExportError> {
        self.n += 1;
        let name = format!("w{}_{what}", self.n);
        Ok(self.g.weight(&name, t.dims(), &values(t)?))
    }

    /// `x W^T + b`, with W stored transposed so MatMul needs no Transpose node.
    fn linear(&mut self, what: &str, l: &Linear, x: &str) -> Result<String, ExportError> {
        let y = self.unbiased(what, l, x)?;
        match l.bias() {
            Some(b) => {
                let b = self.weight(&format!("{what}_bias"), b)?;
                Ok(self.g.add(&y, &b))
            }
            None => Ok(y),
        }
    }

    fn norm(&mut self, what: &str, n: &Norm, x: &str) -> Result<String, ExportError> {
        let scale = self.weight(what, &n.weight)?;
        let shift = self.weight(&format!("{what}_bias"), &n.bias)?;
        Ok(self.g.layer_norm(x, &scale, &shift, n.eps as f32, -1))
    }

    fn embeddings(
        &mut self,
        model: &EncoderModel,
        ids: &str,
        mask: &str,
        segments: Option<&str>,
    ) -> Result<String, ExportError> {
        let e = &model.embeddings;
        let word = self.weight("word_embeddings", &e.word)?;
        let table = self.weight("position_embeddings", &e.position)?;
        let words = self.g.gather(&word, ids, 0);
        let positions = match model.arch.family {
            // cumsum(mask) * mask + pad: padding keeps the pad position, as in transformers.
            Family::Roberta => {
                let counted = self.g.cumsum(mask, 1);
                let counted = self.g.mul(&counted, mask);
                let pad = self.g.scalar_i64(model.arch.pad_token_id as i64);
                let ids = self.g.add(&counted, &pad);
                self.g.gather(&table, &ids, 0)
            }
            // Rows 0..seq of the table, broadcast over the batch.
            _ => {
                let shape = self.g.shape(ids);
                let one = self.g.scalar_i64(1);
                let seq = self.g.gather(&shape, &one, 0);
                let zero = self.g.scalar_i64(0);
                let range = self.g.node("Range", &[&zero, &seq, &one], vec![]);
                self.g.gather(&table, &range, 0)
            }
        };
        let mut x = self.g.add(&words, &positions);
        match (&e.segment, segments) {
            (Some(table), Some(segments)) => {
                let table = self.weight("token_type_embeddings", table)?;
                let seg = self.g.gather(&table, segments, 0);
                x = self.g.add(&x, &seg);
            }
            // One segment row (RoBERTa): a constant vector, no input needed.
            (Some(table), None) => {
                let row = self.weight("token_type_embeddings", &table.get(0)?)?;
                x = self.g.add(&x, &row);
            }
            _ => {}
        }
        self.norm("embeddings_norm", &e.norm, &x)
    }

    /// `[b, 1, 1, s]`: 0 for real tokens, [`MASK_BIAS`] for padding.
    fn mask_bias(&mut self, mask: &str) -> String {
        let m = self.g.cast(mask, ElemType::Float);
        let one = self.g.scalar_f32(1.0);
        let pad = self.g.sub(&one, &m);
        let big = self.g.scalar_f32(MASK_BIAS);
        let bias = self.g.mul(&pad, &big);
        self.g.unsqueeze(&bias, &[1, 2])
    }

    /// [`Layer::forward`] (dropout is off in inference), or with `first_only`
    /// [`Layer::forward_first`]: `[b, 1, h]`, the first position's output. The latter is
    /// written in standard operators in both graph kinds: ONNX Runtime's `Attention` op has
    /// no form with fewer queries than keys, and with one query attention is a small share.
    fn layer(
        &mut self,
        model: &EncoderModel,
        layer: &Layer,
        x: &str,
        bias: &str,
        first_only: bool,
    ) -> Result<String, ExportError> {
        let at = match first_only {
            true => self.g.slice(x, &[0], &[1], &[1]),
            false => x.to_string(),
        };
        let out = self.attention(model, &layer.attention, &at, x, bias)?;
        self.feed_forward(&layer.feed_forward, &out)
    }

    /// [`Attention::forward_at`]: the queries of the positions `at` (rows of `x`) over every
    /// position of `x`.
    fn attention(
        &mut self,
        model: &EncoderModel,
        attention: &Attention,
        at: &str,
        x: &str,
        bias: &str,
    ) -> Result<String, ExportError> {
        let arch = &model.arch;
        let (nh, hd) = (arch.num_heads as i64, arch.head_dim() as i64);
        let q = self.linear("query", &attention.query, at)?;
        let k = self.linear("key", &attention.key, x)?;
        let v = self.linear("value", &attention.value, x)?;
        // [b, s, h] -> [b, nh, s, hd] (keys as [b, nh, hd, s] for Q·K^T).
        let q = self.g.reshape(&q, &[0, 0, nh, hd]);
        let q = self.g.transpose(&q, &[0, 2, 1, 3]);
        let k = self.g.reshape(&k, &[0, 0, nh, hd]);
        let k = self.g.transpose(&k, &[0, 2, 3, 1]);
        let v = self.g.reshape(&v, &[0, 0, nh, hd]);
        let v = self.g.transpose(&v, &[0, 2, 1, 3]);
        let scores = self.g.matmul(&q, &k);
        let scale = self.g.scalar_f32(1.0 / (hd as f32).sqrt());
        let scores = self.g.mul(&scores, &scale);
        let scores = self.g.add(&scores, bias);
        let probs = self.g.softmax(&scores, -1);
        let context = self.g.matmul(&probs, &v);
        let context = self.g.transpose(&context, &[0, 2, 1, 3]);
        let context = self.g.reshape(&context, &[0, 0, arch.hidden_size as i64]);
        let attn = self.linear("attn_out", &attention.output, &context)?;
        let sum = self.g.add(&attn, at);
        self.norm("attn_norm", &attention.norm, &sum)
    }

    /// [`FeedForward::forward`].
    fn feed_forward(&mut self, ffn: &FeedForward, x: &str) -> Result<String, ExportError> {
        let up = self.linear("ffn_in", &ffn.up, x)?;
        let up = match ffn.activation {
            Activation::Gelu => self.gelu(&up),
            Activation::Relu => self.g.relu(&up),
        };
        let down = self.linear("ffn_out", &ffn.down, &up)?;
        let sum = self.g.add(&down, x);
        self.norm("ffn_norm", &ffn.norm, &sum)
    }

    /// [`Layer::forward`] in ONNX Runtime's contrib ops; `mask` is the int32 attention mask.
    fn fused_layer(
        &mut self,
        model: &EncoderModel,
        layer: &Layer,
        x: &str,
        mask: &str,
    ) -> Result<String, ExportError> {
        let a = &layer.attention;
        // Q, K, V side by side: `[h, 3h]` weights and a `[3h]` bias, as `Attention` reads them.
        let (q, k, v) = (a.query.weight(), a.key.weight(), a.value.weight());
        let packed = Tensor::cat(&[q, k, v], 0)?.t()?.contiguous()?;
        let packed = self.weight("qkv", &packed)?;
        let biases = [
            bias_or_zeros(&a.query)?,
            bias_or_zeros(&a.key)?,
            bias_or_zeros(&a.value)?,
        ];
        let packed_bias = self.weight("qkv_bias", &Tensor::cat(&biases, 0)?)?;
        let context = self.g.contrib(
            "Attention",
            &[x, &packed, &packed_bias, mask],
            vec![
                Attr::int("num_heads", model.arch.num_heads as i64),
                Attr::float("mask_filter_value", MASK_BIAS),
            ],
        );
        let x = self.skip_norm("attn", &a.output, &a.norm, &context, x)?;
        let ffn = &layer.feed_forward;
        let up = self.unbiased("ffn_in", &ffn.up, &x)?;
        let up = match (ffn.activation, ffn.up.bias()) {
            (Activation::Gelu, Some(b)) => {
                let b = self.weight("ffn_in_bias", b)?;
                self.g.contrib("BiasGelu", &[&up, &b], vec![])
            }
            (Activation::Gelu, None) => self.gelu(&up),
            (Activation::Relu, b) => {
                let up = match b {
                    Some(b) => {
                        let b = self.weight("ffn_in_bias", b)?;
                        self.g.add(&up, &b)
                    }
                    None => up,
                };
                self.g.relu(&up)
            }
        };
        self.skip_norm("ffn", &ffn.down, &ffn.norm, &up, &x)
    }

    /// `x W^T` only (the bias goes into the fused op that follows).
    fn unbiased(&mut self, what: &str, l: &Linear, x: &str) -> Result<String, ExportError> {
        let wt = self.weight(what, &l.weight().t()?.contiguous()?)?;
        Ok(self.g.matmul(x, &wt))
    }

    /// `LayerNorm(x W^T + b + residual)` as one `SkipLayerNormalization` after the matmul.
    fn skip_norm(
        &mut self,
        what: &str,
        l: &Linear,
        n: &Norm,
        x: &str,
        residual: &str,
    ) -> Result<String, ExportError> {
        let y = self.unbiased(&format!("{what}_out"), l, x)?;
        let gamma = self.weight(&format!("{what}_norm"), &n.weight)?;
        let beta = self.weight(&format!("{what}_norm_bias"), &n.bias)?;
        let mut inputs = vec![y, residual.to_string(), gamma, beta];
        if let Some(b) = l.bias() {
            inputs.push(self.weight(&format!("{what}_out_bias"), b)?);
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.g.contrib(
            "SkipLayerNormalization",
            &inputs,
            vec![Attr::float("epsilon", n.eps as f32)],
        ))
    }

    /// `sum(x * mask) / max(sum(mask), 1)` over the sequence: `[b, s, h]` -> `[b, h]`, as
    /// the candle model's `masked_mean`.
    fn masked_mean(&mut self, x: &str, mask: &str) -> String {
        let mask = self.g.cast(mask, ElemType::Float);
        let weights = self.g.unsqueeze(&mask, &[2]);
        let masked = self.g.mul(x, &weights);
        let summed = self.g.reduce_sum(&masked, &[1], false);
        let count = self.g.reduce_sum(&mask, &[1], true);
        let one = self.g.scalar_f32(1.0);
        let count = self.g.node("Max", &[&count, &one], vec![]);
        self.g.div(&summed, &count)
    }

    /// Exact GELU: `x * 0.5 * (1 + erf(x / sqrt 2))` (the pattern ORT fuses).
    fn gelu(&mut self, x: &str) -> String {
        let sqrt2 = self.g.scalar_f32(std::f32::consts::SQRT_2);
        let scaled = self.g.div(x, &sqrt2);
        let erf = self.g.erf(&scaled);
        let one = self.g.scalar_f32(1.0);
        let shifted = self.g.add(&erf, &one);
        let prod = self.g.mul(x, &shifted);
        let half = self.g.scalar_f32(0.5);
        self.g.mul(&prod, &half)
    }

    /// The head on the pooled hidden state; `mask` is the int64 attention mask input.
    fn head(&mut self, model: &EncoderModel, x: &str, mask: &str) -> Result<String, ExportError> {
        let pooled = match model.arch.pooling {
            Pooling::Cls => {
                let zero = self.g.scalar_i64(0);
                self.g.gather(x, &zero, 1)
            }
            Pooling::Mean => self.masked_mean(x, mask),
        };
        let hidden = self.linear("head_dense", &model.head.dense, &pooled)?;
        let hidden = match model.arch.family {
            Family::Bert | Family::Roberta => self.g.tanh(&hidden),
            Family::DistilBert => self.g.relu(&hidden),
        };
        self.linear("head_output", &model.head.output, &hidden)
    }
}
