//! Linear layers, table lookups, LayerNorm and erf-GELU as single CPU ops with their own backward pass.
//!
//! Written out of candle's elementary ops, each of these is 5-10 tensors forward and 15-25
//! backward, every one a full pass over memory with a fresh allocation; in the training step
//! they were a large part of the backward pass. Here each is one pass forward and one pass
//! backward, split over rows with rayon, the inner loops compiled for AVX2+FMA (picked at
//! run time by `multiversion`) with the vectorizable `exp`/`erf` of [`fastmath`]. Off the CPU
//! the composed forms are used, so CUDA and Metal still train.

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use clarity_runtime::kernels::strided::{matmul_add_threaded, Mat};
use clarity_runtime::kernels::{f32_slice, fastmath, par_filled, use_fused};
use multiversion::multiversion;
use rayon::prelude::*;
use std::f32::consts::FRAC_1_SQRT_2;

/// Rows handed to one rayon task: large enough that scheduling is noise.
const ROWS_PER_TASK: usize = 16;

/// `LayerNorm(x) * weight + bias` over the last axis.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if use_fused(x) {
        x.contiguous()?
            .apply_op3(weight, bias, LayerNorm { eps: eps as f32 })
    } else {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        centered
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .broadcast_mul(weight)?
            .broadcast_add(bias)
    }
}

/// GELU with the exact erf form (BERT's `gelu`).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if use_fused(x) {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

use clarity_runtime::cpu_values::values;

/// `x @ weightᵀ + bias` over the last axis of `x`, as one matrix product over all rows.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let Some(features) = dims.pop() else {
        candle_core::bail!("linear: a scalar input");
    };
    let rows = dims.iter().product::<usize>();
    let x = x.reshape((rows, features))?;
    let y = match bias {
        Some(bias) if use_fused(&x) => {
            x.contiguous()?
                .apply_op3(&weight.contiguous()?, &bias.contiguous()?, LinearBias)?
        }
        Some(bias) => x.matmul(&weight.t()?)?.broadcast_add(bias)?,
        None => x.matmul(&weight.t()?)?,
    };
    dims.push(y.dim(1)?);
    y.reshape(dims)
}

/// `x Wᵀ + b` (`x` `[rows, in]`, `W` `[out, in]`) as one op, for what candle's composed form
/// costs around the product: it multiplies by the transposed view `Wᵀ`, so `W`'s gradient
/// arrives as a transposed view too, and storing it makes a single-threaded strided copy of
/// every weight matrix each step (~5% of a MiniLM step, the other core idle); its bias
/// addition is another pass with a zero-filled output. Here the output starts as the bias
/// rows and gemm adds the product into it, and the backward pass writes `dW = dYᵀ x`
/// directly in `W`'s layout.
struct LinearBias;

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "clarity-linear"
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
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let (rows, inputs) = l1.shape().dims2()?;
        let (outputs, w_inputs) = l2.shape().dims2()?;
        if inputs != w_inputs || b.len() != outputs {
            candle_core::bail!(
                "{}: input {:?}, weight {:?}, bias {:?}",
                self.name(),
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let chunk = outputs * ROWS_PER_TASK;
        let mut out = par_filled(rows * outputs, chunk, |_, part| {
            for row in part.chunks_mut(outputs.max(1)) {
                row.copy_from_slice(&b[..row.len()]);
            }
        });
        if rows > 0 && outputs > 0 && inputs > 0 {
            // From `as_mut_ptr`: gemm writes through this pointer.
            let dst = Mat::columns(out.as_mut_ptr().cast_const(), rows, outputs, 0, outputs);
            let x = Mat::columns(x.as_ptr(), rows, inputs, 0, inputs);
            let w = Mat::columns(w.as_ptr(), outputs, inputs, 0, inputs);
            // SAFETY: the three views cover exactly `out`, `x` and `w` (checked shapes,
            // contiguous layouts); `out` is this op's own new buffer.
            unsafe { matmul_add_threaded(dst, x, w.t(), candle_core::utils::get_num_threads()) };
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.matmul(weight)?;
        // Through the transposed view of `grad`: gemm reads it in place, and the result is
        // contiguous in W's own layout.
        let dw = grad.t()?.matmul(x)?;
        let db = column_sums(&grad)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Σ over rows of a `[rows, width]` tensor: each task sums its own rows and the partial sums
/// are added (candle's `sum(0)` is a strided single-threaded reduction).
fn column_sums(grad: &Tensor) -> Result<Tensor> {
    let width = grad.dim(D::Minus1)?;
    let g = values(grad)?;
    let partials: Vec<Vec<f32>> = g
        .par_chunks(width.max(1) * ROWS_PER_TASK * 4)
        .map(|g| {
            let mut db = vec![0f32; width];
            for row in g.chunks(width.max(1)) {
                db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
            }
            db
        })
        .collect();
    let mut db = vec![0f32; width];
    for partial in partials {
        db.iter_mut().zip(partial).for_each(|(d, v)| *d += v);
    }
    Tensor::from_vec(db, width, grad.device())
}

/// Rows `ids` of `table` (`[vocab, hidden]`; `ids` u32, any shape): `[ids.len(), hidden]`.
pub fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let ids = ids.flatten_all()?;
    if use_fused(table) && ids.dtype() == DType::U32 {
        table.contiguous()?.apply_op2(&ids.contiguous()?, Embedding)
    } else {
        table.index_select(&ids, 0)
    }
}

/// A table lookup whose backward pass writes the table's gradient once. candle's
/// `index_select` backward builds it as zeros, then `index_add` copies those zeros into a new
/// buffer before adding the rows: for a 30522 × 384 word table, two passes over 47 MB a
/// step on one thread while the other core waits. Here the gradient is zero-filled on all
/// threads and the rows are added into it in place.
struct Embedding;

impl Embedding {
    /// The ids as indices, each checked against the table's `vocab` rows.
    fn indices(&self, ids: &[u32], vocab: usize) -> Result<Vec<usize>> {
        ids.iter()
            .map(|&id| match usize::try_from(id) {
                Ok(i) if i < vocab => Ok(i),
                _ => candle_core::bail!("{}: id {id} outside a table of {vocab}", self.name()),
            })
            .collect()
    }
}

impl CustomOp2 for Embedding {
    fn name(&self) -> &'static str {
        "clarity-embedding"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let table = f32_slice(s1, l1, self.name())?;
        let (vocab, hidden) = l1.shape().dims2()?;
        let CpuStorage::U32(ids) = s2 else {
            candle_core::bail!("{}: ids must be u32", self.name());
        };
        let Some((start, end)) = l2.contiguous_offsets() else {
            candle_core::bail!("{}: ids are not contiguous", self.name());
        };
        let rows = self.indices(&ids[start..end], vocab)?;
        let chunk = hidden * ROWS_PER_TASK;
        let out = par_filled(rows.len() * hidden, chunk, |task, part| {
            let ids = &rows[task * ROWS_PER_TASK..];
            for (dst, &row) in part.chunks_mut(hidden.max(1)).zip(ids) {
                dst.copy_from_slice(&table[row * hidden..][..dst.len()]);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((rows.len(), hidden))))
    }

    fn bwd(
        &self,
        table: &Tensor,
        ids: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (vocab, hidden) = table.dims2()?;
        let rows = self.indices(&ids.to_vec1::<u32>()?, vocab)?;
        let grad = grad.contiguous()?;
        let g = values(&grad)?;
        // Zeroed on all threads (`par_filled` zeroes each chunk), then the rows added.
        let mut d = par_filled(vocab * hidden, 1 << 16, |_, _| {});
        if hidden > 0 {
            // In order, one thread: a repeated id adds into the same row.
            for (row, &id) in g.chunks(hidden).zip(&rows) {
                let dst = &mut d[id * hidden..][..hidden];
                dst.iter_mut().zip(row).for_each(|(d, v)| *d += v);
            }
        }
        Ok((
            Some(Tensor::from_vec(d, (vocab, hidden), table.device())?),
            None,
        ))
    }
}

struct LayerNorm {
    eps: f32,
}

impl LayerNorm {
    /// Mean and 1/std of one row.
    fn stats(&self, row: &[f32]) -> (f32, f32) {
        let n = row.len() as f32;
        let mean = row.iter().sum::<f32>() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        (mean, 1.0 / (var + self.eps).sqrt())
    }
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "clarity-layer-norm"
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
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let hidden = l1.dims().last().copied().unwrap_or(0);
        if hidden == 0 || w.len() != hidden || b.len() != hidden {
            candle_core::bail!(
                "{}: input {:?} against weight {} and bias {}",
                self.name(),
                l1.dims(),
                w.len(),
                b.len()
            );
        }
        let chunk = hidden * ROWS_PER_TASK;
        let out = par_filled(x.len(), chunk, |task, out| {
            let x = &x[task * chunk..][..out.len()];
            for (out, row) in out.chunks_mut(hidden).zip(x.chunks(hidden)) {
                let (mean, rstd) = self.stats(row);
                for i in 0..hidden {
                    out[i] = (row[i] - mean) * rstd * w[i] + b[i];
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hidden = weight.dims1()?;
        let (xs, w, g) = (values(x)?, values(weight)?, values(grad)?);
        let mut dx = vec![0f32; xs.len()];
        // Per task: dx for its rows, and its share of dweight and dbias (summed below).
        let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
            .par_chunks_mut(hidden * ROWS_PER_TASK)
            .zip(xs.par_chunks(hidden * ROWS_PER_TASK))
            .zip(g.par_chunks(hidden * ROWS_PER_TASK))
            .map(|((dx, x), g)| {
                let (mut dw, mut db) = (vec![0f32; hidden], vec![0f32; hidden]);
                let mut xhat = vec![0f32; hidden];
                for ((dx, row), g) in dx
                    .chunks_mut(hidden)
                    .zip(x.chunks(hidden))
                    .zip(g.chunks(hidden))
                {
                    let (mean, rstd) = self.stats(row);
                    let (mut sum_gw, mut sum_gw_xhat) = (0f32, 0f32);
                    for i in 0..hidden {
                        xhat[i] = (row[i] - mean) * rstd;
                        let gw = g[i] * w[i];
                        sum_gw += gw;
                        sum_gw_xhat += gw * xhat[i];
                        dw[i] += g[i] * xhat[i];
                        db[i] += g[i];
                    }
                    let n = hidden as f32;
                    let (mean_gw, mean_gw_xhat) = (sum_gw / n, sum_gw_xhat / n);
                    for i in 0..hidden {
                        dx[i] = rstd * (g[i] * w[i] - mean_gw - xhat[i] * mean_gw_xhat);
                    }
                }
                (dw, db)
            })
            .collect();
        let (mut dw, mut db) = (vec![0f32; hidden], vec![0f32; hidden]);
        for (pw, pb) in partials {
            dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
            db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
        }
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dw, hidden, device)?),
            Some(Tensor::from_vec(db, hidden, device)?),
        ))
    }
}

struct GeluErf;

/// Elements per GELU task.
const GELU_CHUNK: usize = 4096;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "clarity-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let out = par_filled(x.len(), GELU_CHUNK, |task, out| {
            gelu_forward(&x[task * GELU_CHUNK..][..out.len()], out)
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// d/dx = Φ(x) + x φ(x).
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (values(arg)?, values(grad)?);
        if x.len() != g.len() {
            candle_core::bail!(
                "{}: gradient of {} for {} inputs",
                self.name(),
                g.len(),
                x.len()
            );
        }
        let dx = par_filled(x.len(), GELU_CHUNK, |task, dx| {
            let at = task * GELU_CHUNK;
            gelu_backward(&x[at..][..dx.len()], &g[at..][..dx.len()], dx)
        });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// `x Φ(x)` elementwise.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_forward(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let (erf, _) = fastmath::erf_and_gauss(v * FRAC_1_SQRT_2);
        *o = 0.5 * v * (1.0 + erf);
    }
}

/// `dx = g (Φ(x) + x φ(x))` elementwise.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn gelu_backward(x: &[f32], g: &[f32], dx: &mut [f32]) {
    // φ(x) = e^(-x²/2) / √(2π), and e^(-x²/2) is the `gauss` of x/√2.
    let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * FRAC_1_SQRT_2;
    for ((d, &v), &g) in dx.iter_mut().zip(x).zip(g) {
        let (erf, gauss) = fastmath::erf_and_gauss(v * FRAC_1_SQRT_2);
        *d = g * (0.5 * (1.0 + erf) + v * inv_sqrt_2pi * gauss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{assert_matches_composed, seeded};
    use candle_core::Var;

    /// `fused` against `composed` on a seeded random `x`, forward and gradient.
    fn check(
        shape: &[usize],
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        composed: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let x = Var::from_tensor(&seeded(shape, 0.0, 2.0, 1)?)?;
        let (yf, yc) = (fused(x.as_tensor())?, composed(x.as_tensor())?);
        assert_matches_composed(&yf, &yc, &[("x", &x)])
    }

    #[test]
    fn gelu_matches_candle_forward_and_backward() -> Result<()> {
        check(&[7, 300], gelu_erf, |x| x.gelu_erf())
    }

    #[test]
    fn layer_norm_matches_the_composed_form_for_input_weight_and_bias() -> Result<()> {
        let (rows, hidden) = (45, 24);
        let x = Var::from_tensor(&seeded((3, rows / 3, hidden), 1.0, 3.0, 1)?)?;
        let w = Var::from_tensor(&seeded(hidden, 1.0, 0.5, 2)?)?;
        let b = Var::from_tensor(&seeded(hidden, 0.0, 0.5, 3)?)?;
        let composed = |x: &Tensor| -> Result<Tensor> {
            let mean = x.mean_keepdim(D::Minus1)?;
            let c = x.broadcast_sub(&mean)?;
            let var = c.sqr()?.mean_keepdim(D::Minus1)?;
            c.broadcast_div(&(var + 1e-12)?.sqrt()?)?
                .broadcast_mul(w.as_tensor())?
                .broadcast_add(b.as_tensor())
        };
        let yf = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-12)?;
        let yc = composed(x.as_tensor())?;
        assert_matches_composed(&yf, &yc, &[("x", &x), ("weight", &w), ("bias", &b)])
    }

    /// The fused linear op against candle_nn's `Linear`, forward and the gradients of input,
    /// weight and bias, for `[batch, seq, inputs] -> outputs`.
    fn linear_matches_candle_nn(
        batch: usize,
        seq: usize,
        inputs: usize,
        outputs: usize,
    ) -> Result<()> {
        use candle_core::Module;
        let x = Var::from_tensor(&seeded((batch, seq, inputs), 0.0, 1.0, 1)?)?;
        let w = Var::from_tensor(&seeded((outputs, inputs), 0.0, 0.3, 2)?)?;
        let b = Var::from_tensor(&seeded(outputs, 0.0, 0.3, 3)?)?;
        let reference = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let yf = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()))?;
        let yc = reference.forward(x.as_tensor())?;
        assert_eq!(yf.dims(), &[batch, seq, outputs]);
        assert_matches_composed(&yf, &yc, &[("x", &x), ("weight", &w), ("bias", &b)])
    }

    #[test]
    fn linear_matches_candle_nn_for_input_weight_and_bias() -> Result<()> {
        linear_matches_candle_nn(3, 17, 24, 40)
    }

    /// The lookup against `index_select`, forward and the table's gradient, with a repeated
    /// id (its rows' gradients add up); an id outside the table is an error, not a panic.
    #[test]
    fn embedding_matches_index_select_and_refuses_an_id_outside_the_table() -> Result<()> {
        let table = Var::from_tensor(&seeded((11, 24), 0.0, 1.0, 4)?)?;
        let ids = Tensor::new(&[[3u32, 0, 10, 3], [7, 3, 1, 1]], &candle_core::Device::Cpu)?;
        let yf = embedding(table.as_tensor(), &ids)?;
        let yc = table.as_tensor().index_select(&ids.flatten_all()?, 0)?;
        assert_eq!(yf.dims(), &[8, 24]);
        assert_matches_composed(&yf, &yc, &[("table", &table)])?;
        let outside = Tensor::new(&[2u32, 11], &candle_core::Device::Cpu)?;
        let err = embedding(table.as_tensor(), &outside)
            .map(|_| ())
            .unwrap_err();
        assert!(
            err.to_string().contains("id 11 outside a table of 11"),
            "{err}"
        );
        Ok(())
    }

    /// Large enough that gemm splits the product over threads and blocks.
    #[test]
    fn linear_matches_candle_nn_at_a_layers_size() -> Result<()> {
        linear_matches_candle_nn(4, 64, 384, 520)
    }
}
