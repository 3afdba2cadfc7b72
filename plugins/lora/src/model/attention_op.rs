//! Causal grouped-query self-attention as one CPU op with its own backward pass, keeping
//! nothing of size `seq × seq` between the passes.
//!
//! Composed from candle ops, a decoder layer's attention keeps the scores, the scaled and
//! masked scores and the softmax's intermediates (each `[batch, heads, seq, seq]`: 19 MB per
//! layer for SmolLM2 at 8 × 256) plus key/value copies repeated for every query head, all
//! alive until the backward pass reaches the layer. Here one rayon task handles one
//! (sequence, head) pair in a block of its own, reading its head's columns of Q, K and V in
//! place; only each row's log-sum-exp (`[batch, heads, seq]`) is kept, and the backward pass
//! recomputes the probabilities from it (one more `seq × seq` product per head, as
//! FlashAttention does). Query rows go in tiles of 32 that compute only the keys they can
//! see (the causal triangle and no padding keys after the last real one), about half of
//! the `seq × seq` products. Grouped-query heads read their shared key/value head directly; in
//! the backward pass one task handles all query heads of a key/value head, so their key and
//! value gradients are summed without locks.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use clarity_runtime::cpu_values::values;
use clarity_runtime::kernels::fastmath::{self, softmax_backward_in_place};
use clarity_runtime::kernels::strided::{matmul, matmul_add, Mat, Shared};
use clarity_runtime::kernels::{f32_slice, use_fused};
use multiversion::multiversion;
use rayon::prelude::*;

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Dims {
    /// Query heads per key/value head.
    fn group(self) -> usize {
        self.heads / self.kv_heads
    }

    /// Head `head` of sequence `b` in a `[batch, seq, n_heads · head_dim]` buffer: a
    /// `seq × head_dim` matrix with row stride `n_heads · head_dim`.
    fn head(self, base: *const f32, b: usize, head: usize, n_heads: usize) -> Mat {
        let width = n_heads * self.head_dim;
        let sequence = base.wrapping_add(b * self.seq * width);
        Mat::columns(
            sequence,
            self.seq,
            width,
            head * self.head_dim,
            self.head_dim,
        )
    }

    /// One `seq × seq` block, row-major.
    fn square(self, base: *const f32) -> Mat {
        Mat::square(base, self.seq)
    }
}

/// Query rows per tile: a tile of rows `r0 .. r1` reads keys `0 .. r1` only, so about half
/// of the `seq × seq` products (the causal mask's upper triangle) are never computed.
const TILE: usize = 32;

/// The tiles of `seq` rows: `(first row, rows, keys they can see)`, where keys at
/// `extent` and after are masked for every row (right padding) and are skipped too.
fn tiles(seq: usize, extent: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    (0..seq).step_by(TILE).map(move |r0| {
        let r1 = (r0 + TILE).min(seq);
        (r0, r1 - r0, r1.min(extent))
    })
}

/// Keys `extent ..` of a sequence are masked (`bias` at [`super::MASK_BIAS`]); with none
/// unmasked, every key counts (so such a row still gets the softmax the composed form gives).
fn key_extent(bias: &[f32]) -> usize {
    bias.iter()
        .rposition(|&b| b > super::MASK_BIAS / 2.0)
        .map_or(bias.len(), |last| last + 1)
}

/// Keys row `i` sees: `0 ..= i`, but none at `extent` or after.
fn visible(i: usize, extent: usize) -> usize {
    (i + 1).min(extent)
}

/// Causal softmax in place of a score row computed for its tile's keys: the first `n` keys
/// get `softmax(row + bias)`, the rest 0. Returns the log-sum-exp (of the biased scores),
/// which the backward pass recomputes the probabilities from. The keys left out (later, or
/// padding after the last real key) would get exactly 0: `exp` of the mask underflows.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn causal_softmax(row: &mut [f32], bias: &[f32], n: usize) -> f32 {
    let (seen, future) = row.split_at_mut(n);
    for (v, b) in seen.iter_mut().zip(bias) {
        *v += b;
    }
    let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in seen.iter_mut() {
        *v = fastmath::exp(*v - max);
    }
    let total = fastmath::sum(seen);
    let inv = 1.0 / total;
    seen.iter_mut().for_each(|v| *v *= inv);
    future.fill(0.0);
    max + total.ln()
}

/// Probabilities of a row again from its scores and log-sum-exp (`n` keys seen, as in
/// [`causal_softmax`]).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn recompute_row(row: &mut [f32], bias: &[f32], n: usize, lse: f32) {
    let (seen, future) = row.split_at_mut(n);
    for (v, b) in seen.iter_mut().zip(bias) {
        *v = fastmath::exp(*v + b - lse);
    }
    future.fill(0.0);
}

/// Causal self-attention: `softmax(q kᵀ / √head_dim + causal + key_bias) v` per head, with
/// `q` `[batch, seq, heads · head_dim]`, `k` and `v` `[batch, seq, kv_heads · head_dim]`
/// (query head `h` reads key/value head `h / (heads / kv_heads)`), and `key_bias`
/// `[batch, seq]` added to the scores of each key (0, or a large negative value for
/// padding). Returns `[batch, seq, heads · head_dim]`.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: &Tensor,
    heads: usize,
    kv_heads: usize,
) -> Result<Tensor> {
    let (batch, seq, width) = q.dims3()?;
    if heads == 0
        || kv_heads == 0
        || !width.is_multiple_of(heads)
        || !heads.is_multiple_of(kv_heads)
    {
        candle_core::bail!(
            "attention: width {width} with {heads} heads and {kv_heads} key/value heads"
        );
    }
    let dims = Dims {
        batch,
        seq,
        heads,
        kv_heads,
        head_dim: width / heads,
    };
    let kv_dims = [batch, seq, kv_heads * dims.head_dim];
    if k.dims() != kv_dims || v.dims() != kv_dims || key_bias.dims() != [batch, seq] {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?}, key bias {:?}",
            q.dims(),
            k.dims(),
            v.dims(),
            key_bias.dims()
        );
    }
    if !use_fused(q) {
        return composed(q, k, v, key_bias, dims);
    }
    let op = CausalAttention {
        dims,
        scale: 1.0 / (dims.head_dim as f32).sqrt(),
        key_bias: key_bias.flatten_all()?.to_vec1::<f32>()?,
        lse: std::sync::Mutex::new(Vec::new()),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

/// The same computation from candle ops (other devices and dtypes, and the reference in
/// the tests).
fn composed(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: &Tensor, dims: Dims) -> Result<Tensor> {
    let Dims {
        batch: b,
        seq: s,
        heads,
        kv_heads,
        head_dim: hd,
    } = dims;
    let split = |t: &Tensor, n: usize| t.reshape((b, s, n, hd))?.transpose(1, 2)?.contiguous();
    let (q, k, v) = (split(q, heads)?, split(k, kv_heads)?, split(v, kv_heads)?);
    let (k, v) = (repeat_kv(&k, dims.group())?, repeat_kv(&v, dims.group())?);
    let causal: Vec<f32> = (0..s)
        .flat_map(|i| (0..s).map(move |j| if j > i { super::MASK_BIAS } else { 0.0 }))
        .collect();
    let causal = Tensor::from_vec(causal, (1, 1, s, s), q.device())?;
    let bias = causal.broadcast_add(&key_bias.reshape((b, 1, 1, s))?)?;
    let scale = 1.0 / (hd as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
    let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
    probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((b, s, heads * hd))
}

/// `[b, kv, s, d]` → `[b, kv·g, s, d]`, each key/value head serving `g` query heads.
fn repeat_kv(x: &Tensor, g: usize) -> Result<Tensor> {
    if g == 1 {
        return Ok(x.clone());
    }
    let (b, kv, s, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kv, g, s, d))?
        .reshape((b, kv * g, s, d))
}

struct CausalAttention {
    dims: Dims,
    scale: f32,
    /// `[batch, seq]`: added to each sequence's scores, key by key.
    key_bias: Vec<f32>,
    /// `[batch, heads, seq]` log-sum-exp of each score row, from the forward pass.
    lse: std::sync::Mutex<Vec<f32>>,
}

impl CausalAttention {
    fn lock_lse(&self) -> Result<std::sync::MutexGuard<'_, Vec<f32>>> {
        self.lse
            .lock()
            .map_err(|_| candle_core::Error::Msg("attention: log-sum-exp lock poisoned".into()))
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "clarity-causal-attention"
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
        let q_size = d.batch * d.seq * d.heads * d.head_dim;
        let kv_size = d.batch * d.seq * d.kv_heads * d.head_dim;
        if [q.len(), k.len(), v.len()] != [q_size, kv_size, kv_size] {
            candle_core::bail!("{}: buffers do not match their shapes", self.name());
        }
        let mut lse = vec![0f32; d.batch * d.heads * d.seq];
        let mut out = vec![0f32; q_size];
        let out_ptr = Shared(out.as_mut_ptr());
        lse.par_chunks_mut(d.seq).enumerate().for_each_init(
            || vec![0f32; d.seq * d.seq],
            |block, (task, lse)| {
                let (b, h) = (task / d.heads, task % d.heads);
                let g = h / d.group();
                let bias = &self.key_bias[b * d.seq..][..d.seq];
                let extent = key_extent(bias);
                let qh = d.head(q.as_ptr(), b, h, d.heads);
                let kh = d.head(k.as_ptr(), b, g, d.kv_heads);
                let vh = d.head(v.as_ptr(), b, g, d.kv_heads);
                let oh = d.head(out_ptr.get(), b, h, d.heads);
                let scores = d.square(block.as_ptr());
                for (r0, rows, keys) in tiles(d.seq, extent) {
                    let tile = scores.block(r0, rows, 0, keys);
                    // SAFETY: q, k, v hold their shapes' elements (checked above); `block`
                    // is this task's own scratch.
                    unsafe {
                        matmul(
                            tile,
                            qh.block(r0, rows, 0, d.head_dim),
                            kh.block(0, keys, 0, d.head_dim).t(),
                            self.scale,
                        )
                    };
                    for i in r0..r0 + rows {
                        let row = &mut block[i * d.seq..][..keys];
                        lse[i] = causal_softmax(row, bias, visible(i, extent));
                    }
                    // SAFETY: `oh` is this task's head in `out`, written by no other task.
                    unsafe {
                        matmul(
                            oh.block(r0, rows, 0, d.head_dim),
                            tile,
                            vh.block(0, keys, 0, d.head_dim),
                            1.0,
                        )
                    };
                }
            },
        );
        *self.lock_lse()? = lse;
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
        let lse = self.lock_lse()?;
        if lse.len() != d.batch * d.heads * d.seq {
            candle_core::bail!("attention: backward pass without a forward pass");
        }
        let (qv, kv, vv, g) = (values(q)?, values(k)?, values(v)?, values(grad)?);
        let q_size = d.batch * d.seq * d.heads * d.head_dim;
        let kv_size = d.batch * d.seq * d.kv_heads * d.head_dim;
        if [qv.len(), kv.len(), vv.len(), g.len()] != [q_size, kv_size, kv_size, q_size] {
            candle_core::bail!("attention: backward shapes differ from the forward pass");
        }
        let mut dq = vec![0f32; q_size];
        let (mut dk, mut dv) = (vec![0f32; kv_size], vec![0f32; kv_size]);
        let (dq_ptr, dk_ptr, dv_ptr) = (
            Shared(dq.as_mut_ptr()),
            Shared(dk.as_mut_ptr()),
            Shared(dv.as_mut_ptr()),
        );
        // One task per (sequence, key/value head): it alone writes that head's dK and dV,
        // summed over the query heads that read it, and those query heads' dQ.
        (0..d.batch * d.kv_heads).into_par_iter().for_each_init(
            || (vec![0f32; d.seq * d.seq], vec![0f32; d.seq * d.seq]),
            |(p, dp), task| {
                let (b, kvh) = (task / d.kv_heads, task % d.kv_heads);
                let bias = &self.key_bias[b * d.seq..][..d.seq];
                let extent = key_extent(bias);
                let kh = d.head(kv.as_ptr(), b, kvh, d.kv_heads);
                let vh = d.head(vv.as_ptr(), b, kvh, d.kv_heads);
                let dkh = d.head(dk_ptr.get(), b, kvh, d.kv_heads);
                let dvh = d.head(dv_ptr.get(), b, kvh, d.kv_heads);
                let (probs, dprobs) = (d.square(p.as_ptr()), d.square(dp.as_ptr()));
                for h in kvh * d.group()..(kvh + 1) * d.group() {
                    let qh = d.head(qv.as_ptr(), b, h, d.heads);
                    let gh = d.head(g.as_ptr(), b, h, d.heads);
                    let dqh = d.head(dq_ptr.get(), b, h, d.heads);
                    let rows_lse = &lse[(b * d.heads + h) * d.seq..][..d.seq];
                    for (r0, rows, keys) in tiles(d.seq, extent) {
                        let (tile, dtile) = (
                            probs.block(r0, rows, 0, keys),
                            dprobs.block(r0, rows, 0, keys),
                        );
                        let (q_rows, g_rows) = (
                            qh.block(r0, rows, 0, d.head_dim),
                            gh.block(r0, rows, 0, d.head_dim),
                        );
                        let (k_keys, v_keys) = (
                            kh.block(0, keys, 0, d.head_dim),
                            vh.block(0, keys, 0, d.head_dim),
                        );
                        // SAFETY (all products): inputs hold their shapes' elements (checked
                        // above) or are this task's scratch blocks; dQ's head `h`, and dK's
                        // and dV's head `kvh`, of sequence `b` belong to this task alone
                        // (dK and dV start at zero and sum over tiles and query heads).
                        unsafe { matmul(tile, q_rows, k_keys.t(), self.scale) };
                        for i in r0..r0 + rows {
                            let row = &mut p[i * d.seq..][..keys];
                            recompute_row(row, bias, visible(i, extent), rows_lse[i]);
                        }
                        // dV += Pᵀ dO
                        unsafe {
                            matmul_add(dvh.block(0, keys, 0, d.head_dim), tile.t(), g_rows, 1.0)
                        };
                        // dP = dO Vᵀ, then through the softmax.
                        unsafe { matmul(dtile, g_rows, v_keys.t(), 1.0) };
                        for i in r0..r0 + rows {
                            softmax_backward_in_place(
                                &p[i * d.seq..][..keys],
                                &mut dp[i * d.seq..][..keys],
                            );
                        }
                        // dQ = dS K · scale, dK += dSᵀ Q · scale.
                        unsafe {
                            matmul(
                                dqh.block(r0, rows, 0, d.head_dim),
                                dtile,
                                k_keys,
                                self.scale,
                            )
                        };
                        unsafe {
                            matmul_add(
                                dkh.block(0, keys, 0, d.head_dim),
                                dtile.t(),
                                q_rows,
                                self.scale,
                            )
                        };
                    }
                }
            },
        );
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
    use crate::test_support::{assert_matches_composed, seeded_var};
    use candle_core::{Device, Var};

    fn seeded(shape: (usize, usize, usize), seed: u64) -> Result<Var> {
        seeded_var(shape, 1.0, seed)
    }

    /// Output and the gradients of q, k, v, fused against composed; the last sequence's last
    /// `padding` positions are padding (right padding).
    fn compare(
        (b, s): (usize, usize),
        (heads, kv_heads, hd): (usize, usize, usize),
        padding: usize,
    ) -> Result<()> {
        let q = seeded((b, s, heads * hd), 1)?;
        let k = seeded((b, s, kv_heads * hd), 2)?;
        let v = seeded((b, s, kv_heads * hd), 3)?;
        let bias: Vec<f32> = (0..b * s)
            .map(|i| match i / s == b - 1 && i % s >= s - padding {
                true => super::super::MASK_BIAS,
                false => 0.0,
            })
            .collect();
        let bias = Tensor::from_vec(bias, (b, s), &Device::Cpu)?;
        assert_matches_composed(&[&q, &k, &v], || {
            causal_attention(&q, &k, &v, &bias, heads, kv_heads)
        })
    }

    /// A padded key's probability is exactly 0, also when recomputed from the log-sum-exp,
    /// and none is subnormal (subnormals slowed every product they fed on Intel CPUs).
    #[test]
    fn padded_keys_get_a_probability_of_exactly_zero() {
        let scores: Vec<f32> = (0..12).map(|i| (i as f32 * 0.61).cos() * 5.0).collect();
        let bias: Vec<f32> = (0..12)
            .map(|i| if i >= 7 { super::super::MASK_BIAS } else { 0.0 })
            .collect();
        let mut row = scores.clone();
        let lse = causal_softmax(&mut row, &bias, 10);
        let mut again = scores;
        recompute_row(&mut again, &bias, 10, lse);
        for probabilities in [&row, &again] {
            assert!(
                probabilities[7..].iter().all(|&p| p == 0.0),
                "{probabilities:?}"
            );
            assert!(
                probabilities[..7].iter().all(|p| p.is_normal()),
                "{probabilities:?}"
            );
        }
    }

    #[test]
    fn fused_causal_attention_matches_the_composed_form_with_grouped_heads() -> Result<()> {
        compare((2, 11), (6, 2, 8), 3)
    }

    #[test]
    fn fused_causal_attention_matches_with_one_query_head_per_key_head() -> Result<()> {
        compare((3, 7), (4, 4, 5), 3)
    }

    /// Several row tiles, the last one partial; the last sequence's real keys end inside
    /// the first tile, so its later tiles are padding rows that see only those keys.
    #[test]
    fn fused_causal_attention_matches_across_row_tiles() -> Result<()> {
        compare((2, 2 * TILE + 7), (4, 2, 8), TILE + 10)
    }

    #[test]
    fn a_later_token_does_not_change_an_earlier_output() -> Result<()> {
        let (q, k, v) = (
            seeded((1, 6, 8), 5)?,
            seeded((1, 6, 4), 6)?,
            seeded((1, 6, 4), 7)?,
        );
        let bias = Tensor::zeros((1, 6), candle_core::DType::F32, &Device::Cpu)?;
        let before = causal_attention(&q, &k, &v, &bias, 2, 1)?;
        // Change the last position's key and value: only the last output row may move.
        let mut kv = k.flatten_all()?.to_vec1::<f32>()?;
        kv[20..24].iter_mut().for_each(|x| *x += 3.0);
        let k2 = Tensor::from_vec(kv, (1, 6, 4), &Device::Cpu)?;
        let after = causal_attention(&q, &k2, &v, &bias, 2, 1)?;
        let early = |t: &Tensor| t.narrow(1, 0, 5)?.flatten_all()?.to_vec1::<f32>();
        assert_eq!(early(&before)?, early(&after)?);
        let last = |t: &Tensor| t.narrow(1, 5, 1)?.flatten_all()?.to_vec1::<f32>();
        assert_ne!(last(&before)?, last(&after)?);
        Ok(())
    }
}
