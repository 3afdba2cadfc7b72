//! The trained encoder as an ONNX graph, written by the project (no Python, no torch.onnx).
//!
//! The graph mirrors [`crate::model::EncoderModel::logits`] op for op, in standard opset-17
//! operators, with the weights as initializers and dynamic batch and sequence axes. ONNX
//! Runtime fuses the LayerNorm/GELU/attention patterns itself at load time.

use crate::arch::{Activation, Family};
use crate::model::{Attention, EncoderModel, FeedForward, Layer, Norm, MASK_BIAS};
use candle_core::Tensor;
use candle_nn::Linear;
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

/// Graph input and output names (also what models exported by optimum use).
pub const INPUT_IDS: &str = "input_ids";
/// Attention mask input.
pub const ATTENTION_MASK: &str = "attention_mask";
/// Segment ids input (only for models with segment embeddings).
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
/// The output.
pub const LOGITS: &str = "logits";

/// Write `model` to `path` as ONNX.
pub fn export(model: &EncoderModel, path: &Path) -> Result<(), ExportError> {
    let graph = build(model)?;
    onnx::save(graph.finish(onnx::OPSET), path).map_err(|e| ExportError::Write(e.to_string()))
}

fn values(t: &Tensor) -> Result<Vec<f32>, ExportError> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// The graph, before it is serialised.
pub fn build(model: &EncoderModel) -> Result<GraphBuilder, ExportError> {
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
    let x = w.embeddings(model, &ids, &mask, segments.as_deref())?;
    let bias = w.mask_bias(&mask);
    let mut x = x;
    for layer in &model.layers {
        x = w.layer(model, layer, &x, &bias)?;
    }
    let logits = w.head(model, &x)?;
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
        let wt = self.weight(what, &l.weight().t()?.contiguous()?)?;
        let y = self.g.matmul(x, &wt);
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

    /// [`Layer::forward`] (dropout is off in inference).
    fn layer(
        &mut self,
        model: &EncoderModel,
        layer: &Layer,
        x: &str,
        bias: &str,
    ) -> Result<String, ExportError> {
        let x = self.attention(model, &layer.attention, x, bias)?;
        self.feed_forward(&layer.feed_forward, &x)
    }

    /// [`Attention::forward`].
    fn attention(
        &mut self,
        model: &EncoderModel,
        attention: &Attention,
        x: &str,
        bias: &str,
    ) -> Result<String, ExportError> {
        let arch = &model.arch;
        let (nh, hd) = (arch.num_heads as i64, arch.head_dim() as i64);
        let q = self.linear("query", &attention.query, x)?;
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
        let sum = self.g.add(&attn, x);
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

    fn head(&mut self, model: &EncoderModel, x: &str) -> Result<String, ExportError> {
        let zero = self.g.scalar_i64(0);
        let first = self.g.gather(x, &zero, 1);
        let hidden = self.linear("head_dense", &model.head.dense, &first)?;
        let hidden = match model.arch.family {
            Family::Bert | Family::Roberta => self.g.tanh(&hidden),
            Family::DistilBert => self.g.relu(&hidden),
        };
        self.linear("head_output", &model.head.output, &hidden)
    }
}
