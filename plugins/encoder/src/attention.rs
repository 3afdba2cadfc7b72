//! Multi-head self-attention as one CPU op with its own backward pass.
//!
//! Composed from candle ops, attention copies Q, K and V into head-major order, runs each
//! batched product as `batch × heads` separate gemm calls that each fan out over the thread
//! pool (3456 small dispatches per MiniLM training step), and makes a full pass over the
//! `[batch, heads, seq, seq]` scores for the scale, the mask, softmax and dropout, each with
//! its own backward pass. Here one rayon task handles one (sequence, head) pair: it reads its
//! head's columns of Q, K and V in place through gemm's strides, keeps the scores in its own
//! block, and writes its columns of the output. The probabilities are kept for the backward
//! pass; the dropout mask is recomputed from its seed ([`clarity_runtime::kernels::dropout`]).
//!
//! The queries may be fewer than the keys: a classifier that reads only the first token needs
//! the last layer's output at that position alone ([`crate::model::Layer::forward_first`]).

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use clarity_runtime::cpu_values::values;
use clarity_runtime::kernels::dropout::{self, Mask};
use clarity_runtime::kernels::f32_slice;
use clarity_runtime::kernels::fastmath::{self, softmax_backward_in_place, sum};
use clarity_runtime::kernels::par_filled_with;
use clarity_runtime::kernels::strided::{matmul, Mat, Shared};
use multiversion::multiversion;
use rayon::prelude::*;
use std::sync::Mutex;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    /// Query positions per sequence (the rows of Q and of the output).
    queries: usize,
    /// Key positions per sequence (the rows of K and V).
    seq: usize,
    heads: usize,
    head_dim: usize,
}

impl Dims {
    fn hidden(self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of one (sequence, head) score block.
    fn block(self) -> usize {
        self.queries * self.seq
    }

    /// Head `task % heads` of sequence `task / heads` in a `[batch, rows, hidden]` buffer: a
    /// `rows × head_dim` matrix with row stride `hidden`.
    fn head(self, base: *const f32, rows: usize, task: usize) -> Mat {
        let (b, h) = (task / self.heads, task % self.heads);
        let sequence = base.wrapping_add(b * rows * self.hidden());
        Mat::columns(
            sequence,
            rows,
            self.hidden(),
            h * self.head_dim,
            self.head_dim,
        )
    }

    /// A head of Q, the output, or their gradients (`[batch, queries, hidden]`).
    fn query_head(self, base: *const f32, task: usize) -> Mat {
        self.head(base, self.queries, task)
    }

    /// A head of K, V, or their gradients (`[batch, seq, hidden]`).
    fn key_head(self, base: *const f32, task: usize) -> Mat {
        self.head(base, self.seq, task)
    }

    /// One `queries × seq` score block, row-major.
    fn scores(self, base: *const f32) -> Mat {
        Mat::row_major(base, self.queries, self.seq)
    }
}

/// A softmax row in place, after adding the padding bias.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn softmax_biased(row: &mut [f32], bias: &[f32]) {
    for (v, b) in row.iter_mut().zip(bias) {
        *v += b;
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in row.iter_mut() {
        *v = fastmath::exp(*v - max);
    }
    let inv = 1.0 / sum(row);
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Attention of `q` (`[batch, queries, hidden]`) over `k`, `v` (`[batch, seq, hidden]`), the
/// projections' outputs: `softmax(q kᵀ · scale + bias) v` per head, with `bias`
/// (`[batch, 1, 1, seq]`) added to every row of scores and dropout `p` on the probabilities
/// when `dropout` is given as `(p, seed)`. Returns `[batch, queries, hidden]`.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    heads: usize,
    dropout: Option<(f32, u64)>,
) -> Result<Tensor> {
    let (batch, queries, hidden) = q.dims3()?;
    let (_, seq, _) = k.dims3()?;
    if heads == 0 || hidden % heads != 0 {
        candle_core::bail!("attention: hidden size {hidden} is not a multiple of {heads} heads");
    }
    if k.dims() != [batch, seq, hidden] || v.dims() != k.dims() {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let dims = Dims {
        batch,
        queries,
        seq,
        heads,
        head_dim: hidden / heads,
    };
    let dropout = dropout.filter(|(p, _)| *p > 0.0);
    if clarity_runtime::kernels::use_fused(q) {
        let op = Attention {
            dims,
            scale: 1.0 / (dims.head_dim as f32).sqrt(),
            bias: bias.flatten_all()?.to_vec1::<f32>()?,
            dropout: dropout.map(|(p, seed)| Mask::new(p, seed)).transpose()?,
            probs: Mutex::new(Vec::new()),
        };
        if op.bias.len() != batch * seq {
            candle_core::bail!("attention: bias {:?} for {batch}x{seq}", bias.dims());
        }
        q.contiguous()?
            .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
    } else {
        composed(q, k, v, bias, dims, dropout)
    }
}

/// The same computation from candle ops (other devices and dtypes, and the reference in
/// the tests).
fn composed(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: &Tensor,
    dims: Dims,
    dropout: Option<(f32, u64)>,
) -> Result<Tensor> {
    let Dims {
        batch: b,
        queries: n,
        seq: s,
        heads: nh,
        head_dim: hd,
    } = dims;
    let heads = |t: &Tensor, rows| t.reshape((b, rows, nh, hd))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (heads(q, n)?, heads(k, s)?, heads(v, s)?);
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
    let mut probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    if let Some((p, seed)) = dropout {
        probs = dropout::dropout(&probs, p, seed)?;
    }
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, n, dims.hidden()))
}

struct Attention {
    dims: Dims,
    scale: f32,
    /// `[batch, seq]`: added to each sequence's scores, column by column.
    bias: Vec<f32>,
    dropout: Option<Mask>,
    /// `[batch, heads, queries, seq]` probabilities from the forward pass, for the backward.
    probs: Mutex<Vec<f32>>,
}

impl Attention {
    /// Probabilities with dropout applied, for block `task` (a copy in `scratch`), or the
    /// probabilities themselves without dropout.
    fn dropped<'a>(&self, probs: &'a [f32], task: usize, scratch: &'a mut [f32]) -> &'a [f32] {
        match self.dropout {
            Some(mask) => {
                let first = (task * self.dims.block()) as u32;
                dropout::apply_mask(mask, first, probs, scratch);
                scratch
            }
            None => probs,
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "clarity-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims;
        let (q, k, v) = (
            f32_slice(s1, l1, self.name())?,
            f32_slice(s2, l2, self.name())?,
            f32_slice(s3, l3, self.name())?,
        );
        let (q_size, kv_size) = (
            d.batch * d.queries * d.hidden(),
            d.batch * d.seq * d.hidden(),
        );
        if [q.len(), k.len(), v.len()] != [q_size, kv_size, kv_size] {
            candle_core::bail!(
                "{}: q {:?}, k {:?}, v {:?}",
                self.name(),
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        // Written only through `out_ptr`, by gemm: every head of every sequence, each once.
        let mut out: Vec<f32> = Vec::with_capacity(q_size);
        let out_ptr = Shared(out.as_mut_ptr());
        let probs = par_filled_with(
            d.batch * d.heads * d.block(),
            d.block(),
            || vec![0f32; d.block()],
            |scratch, task, block| {
                let bias = &self.bias[(task / d.heads) * d.seq..][..d.seq];
                let (qh, kh, vh) = (
                    d.query_head(q.as_ptr(), task),
                    d.key_head(k.as_ptr(), task),
                    d.key_head(v.as_ptr(), task),
                );
                // SAFETY: q, k, v hold their sizes (checked above); `block` is this task's
                // own queries × seq slice.
                unsafe {
                    matmul(
                        d.scores(block.as_mut_ptr().cast_const()),
                        qh,
                        kh.t(),
                        self.scale,
                    )
                };
                for row in block.chunks_mut(d.seq) {
                    softmax_biased(row, bias);
                }
                let p = self.dropped(block, task, scratch);
                let oh = d.query_head(out_ptr.get(), task);
                // SAFETY: `oh` is this task's head in `out`, written by no other task.
                unsafe { matmul(oh, d.scores(p.as_ptr()), vh, 1.0) };
            },
        );
        // SAFETY: the batch · heads tasks above wrote every element of `out` (each head's
        // columns of its sequence's rows; gemm without accumulation writes its whole output).
        unsafe { out.set_len(q_size) };
        *self.probs.lock().map_err(|_| {
            candle_core::Error::Msg("attention: probabilities lock poisoned".into())
        })? = probs;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = self.dims;
        let probs = self.probs.lock().map_err(|_| {
            candle_core::Error::Msg("attention: probabilities lock poisoned".into())
        })?;
        if probs.len() != d.batch * d.heads * d.block() {
            candle_core::bail!("attention: backward pass without a forward pass");
        }
        let (qv, kv, vv, g) = (values(q)?, values(k)?, values(v)?, values(grad)?);
        let (q_size, kv_size) = (
            d.batch * d.queries * d.hidden(),
            d.batch * d.seq * d.hidden(),
        );
        if [qv.len(), kv.len(), vv.len(), g.len()] != [q_size, kv_size, kv_size, q_size] {
            candle_core::bail!("attention: backward shapes differ from the forward pass");
        }
        // Written only through the pointers below, by gemm: every head once each.
        let (mut dq, mut dk, mut dv): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            Vec::with_capacity(q_size),
            Vec::with_capacity(kv_size),
            Vec::with_capacity(kv_size),
        );
        let (dq_ptr, dk_ptr, dv_ptr) = (
            Shared(dq.as_mut_ptr()),
            Shared(dk.as_mut_ptr()),
            Shared(dv.as_mut_ptr()),
        );
        probs.par_chunks(d.block()).enumerate().for_each_init(
            || (vec![0f32; d.block()], vec![0f32; d.block()]),
            |(dropped, dp), (task, p)| {
                let (qh, kh, vh, gh) = (
                    d.query_head(qv.as_ptr(), task),
                    d.key_head(kv.as_ptr(), task),
                    d.key_head(vv.as_ptr(), task),
                    d.query_head(g.as_ptr(), task),
                );
                let pd = self.dropped(p, task, dropped);
                // SAFETY (all four products): inputs hold their sizes (checked above) or
                // are this task's blocks; each output is this task's own head of dq, dk,
                // dv, or its own `dp` scratch block.
                // dV = P_dropᵀ dO
                unsafe {
                    matmul(
                        d.key_head(dv_ptr.get(), task),
                        d.scores(pd.as_ptr()).t(),
                        gh,
                        1.0,
                    )
                };
                // dP = (dO Vᵀ) ∘ mask, then through the softmax.
                unsafe { matmul(d.scores(dp.as_ptr()), gh, vh.t(), 1.0) };
                if let Some(mask) = self.dropout {
                    dropout::apply_mask_in_place(mask, (task * d.block()) as u32, dp);
                }
                for (dp, p) in dp.chunks_mut(d.seq).zip(p.chunks(d.seq)) {
                    softmax_backward_in_place(p, dp);
                }
                // dQ = dS K · scale, dK = dSᵀ Q · scale.
                let ds = d.scores(dp.as_ptr());
                unsafe { matmul(d.query_head(dq_ptr.get(), task), ds, kh, self.scale) };
                unsafe { matmul(d.key_head(dk_ptr.get(), task), ds.t(), qh, self.scale) };
            },
        );
        // SAFETY: the tasks above wrote every element of dq, dk and dv (each head of each
        // sequence once, by gemm without accumulation).
        unsafe {
            dq.set_len(q_size);
            dk.set_len(kv_size);
            dv.set_len(kv_size);
        }
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{assert_matches_composed, seeded};
    use candle_core::{Device, Var};

    /// Forward and the gradients of q, k and v, fused against the composed candle form, with
    /// padding in the second sequence and optional dropout; `queries` query positions
    /// attend over `s` keys.
    fn compare(
        shape: (usize, usize, usize, usize),
        queries: usize,
        dropout: Option<(f32, u64)>,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let (b, s, heads, hd) = shape;
        let var = |rows, seed| Var::from_tensor(&seeded((b, rows, heads * hd), 0.0, 1.0, seed)?);
        let (q, k, v) = (var(queries, 1)?, var(s, 2)?, var(s, 3)?);
        // The second sequence's last three positions are padding.
        let mask: Vec<f32> = (0..b * s)
            .map(|i| {
                if i / s == 1 && i % s >= s - 3 {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (b, s), &dev)?;
        let bias = ((mask.ones_like()? - mask)? * -10000.0)?.reshape((b, 1, 1, s))?;
        let dims = Dims {
            batch: b,
            queries,
            seq: s,
            heads,
            head_dim: hd,
        };
        let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
        let fused = attention(qt, kt, vt, &bias, heads, dropout)?;
        let reference = composed(qt, kt, vt, &bias, dims, dropout)?;
        assert_matches_composed(&fused, &reference, &[("q", &q), ("k", &k), ("v", &v)])
    }

    /// A padded key's probability is exactly 0, and no probability is subnormal: subnormals
    /// in P slowed every product they fed ~25x on Intel CPUs.
    #[test]
    fn padded_keys_get_a_probability_of_exactly_zero() {
        let mut row: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin() * 4.0).collect();
        let bias: Vec<f32> = (0..16)
            .map(|i| if i >= 11 { -10000.0 } else { 0.0 })
            .collect();
        softmax_biased(&mut row, &bias);
        assert!(row[11..].iter().all(|&p| p == 0.0), "{row:?}");
        assert!(row[..11].iter().all(|p| p.is_normal()), "{row:?}");
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn matches_the_composed_form_forward_and_backward() -> Result<()> {
        compare((2, 7, 3, 4), 7, None)
    }

    #[test]
    fn matches_the_composed_form_with_the_same_dropout_mask() -> Result<()> {
        compare((2, 7, 3, 4), 7, Some((0.3, 17)))
    }

    #[test]
    fn matches_the_composed_form_at_minilm_size() -> Result<()> {
        compare((2, 128, 12, 32), 128, Some((0.1, 5)))
    }

    #[test]
    fn matches_the_composed_form_with_fewer_queries_than_keys() -> Result<()> {
        compare((2, 7, 3, 4), 1, None)?;
        compare((2, 7, 3, 4), 3, Some((0.3, 17)))?;
        compare((2, 128, 12, 32), 1, Some((0.1, 5)))
    }

    /// The first query alone gets exactly the first row of full self-attention (the
    /// scores of one query do not depend on the others).
    #[test]
    fn one_query_gives_the_first_row_of_full_attention() -> Result<()> {
        let (b, s, heads, hd) = (2, 9, 3, 4);
        let x = |seed| seeded((b, s, heads * hd), 0.0, 1.0, seed);
        let (q, k, v) = (x(1)?, x(2)?, x(3)?);
        let bias = Tensor::zeros((b, 1, 1, s), candle_core::DType::F32, &Device::Cpu)?;
        let full = attention(&q, &k, &v, &bias, heads, None)?.narrow(1, 0, 1)?;
        let first = attention(&q.narrow(1, 0, 1)?, &k, &v, &bias, heads, None)?;
        let error = crate::tests::relative_error(&first, &full)?;
        assert!(error < 1e-6, "{error}");
        Ok(())
    }

    #[test]
    fn keys_and_values_of_another_shape_are_an_error() -> Result<()> {
        let q = Tensor::zeros((1, 2, 8), candle_core::DType::F32, &Device::Cpu)?;
        let k = Tensor::zeros((1, 3, 8), candle_core::DType::F32, &Device::Cpu)?;
        let v = Tensor::zeros((1, 4, 8), candle_core::DType::F32, &Device::Cpu)?;
        let bias = Tensor::zeros((1, 1, 1, 3), candle_core::DType::F32, &Device::Cpu)?;
        let err = attention(&q, &k, &v, &bias, 2, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("k [1, 3, 8], v [1, 4, 8]"), "{err}");
        Ok(())
    }

    #[test]
    fn a_hidden_size_that_heads_do_not_divide_is_an_error() -> Result<()> {
        let x = Tensor::zeros((1, 2, 10), candle_core::DType::F32, &Device::Cpu)?;
        let bias = Tensor::zeros((1, 1, 1, 2), candle_core::DType::F32, &Device::Cpu)?;
        let err = attention(&x, &x, &x, &bias, 3, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a multiple of 3 heads"), "{err}");
        Ok(())
    }
}
