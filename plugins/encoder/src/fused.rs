//! LayerNorm, erf-GELU and bias addition as single CPU ops with their own backward pass.
//!
//! Written out of candle's elementary ops, each of these is 5-10 tensors forward and 15-25
//! backward, every one a full pass over memory with a fresh allocation; in the training step
//! they were a large part of the backward pass. Here each is one pass forward and one pass
//! backward, split over rows with rayon, the inner loops compiled for AVX2+FMA (picked at
//! run time by `multiversion`) with the vectorizable `exp`/`erf` of [`fastmath`]. Off the CPU
//! the composed forms are used, so CUDA and Metal still train.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use clarity_runtime::kernels::{f32_slice, fastmath, use_fused};
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

/// `x @ weightᵀ + bias` over the last axis of `x`, as one matrix product over all rows (so
/// the weight gradient is one product too) and the bias added by [`add_bias`].
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let Some(features) = dims.pop() else {
        candle_core::bail!("linear: a scalar input");
    };
    let rows = dims.iter().product::<usize>();
    let y = x.reshape((rows, features))?.matmul(&weight.t()?)?;
    let y = match bias {
        Some(bias) => add_bias(&y, bias)?,
        None => y,
    };
    dims.push(y.dim(1)?);
    y.reshape(dims)
}

/// `x + bias` broadcast over the rows of `x`. candle's broadcast_add sums the bias gradient
/// with a strided single-threaded reduction over the leading axes (8% of a training step);
/// here each task sums its own rows and the partial sums are added.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    if use_fused(x) {
        x.contiguous()?.apply_op2(bias, AddBias)
    } else {
        x.broadcast_add(bias)
    }
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "clarity-add-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let b = f32_slice(s2, l2, self.name())?;
        let width = l1.dims().last().copied().unwrap_or(0);
        if width == 0 || b.len() != width {
            candle_core::bail!(
                "{}: input {:?} against bias {}",
                self.name(),
                l1.dims(),
                b.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(width * ROWS_PER_TASK)
            .zip(x.par_chunks(width * ROWS_PER_TASK))
            .for_each(|(out, x)| {
                for (out, row) in out.chunks_mut(width).zip(x.chunks(width)) {
                    for ((o, v), b) in out.iter_mut().zip(row).zip(b) {
                        *o = v + b;
                    }
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let width = bias.dims1()?;
        let g = values(grad)?;
        let partials: Vec<Vec<f32>> = g
            .par_chunks(width * ROWS_PER_TASK * 4)
            .map(|g| {
                let mut db = vec![0f32; width];
                for row in g.chunks(width) {
                    db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
                }
                db
            })
            .collect();
        let mut db = vec![0f32; width];
        for partial in partials {
            db.iter_mut().zip(partial).for_each(|(d, v)| *d += v);
        }
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, width, bias.device())?),
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
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(hidden * ROWS_PER_TASK)
            .zip(x.par_chunks(hidden * ROWS_PER_TASK))
            .for_each(|(out, x)| {
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

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "clarity-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .for_each(|(out, x)| gelu_forward(x, out));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// d/dx = Φ(x) + x φ(x).
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (values(arg)?, values(grad)?);
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .zip(g.par_chunks(4096))
            .for_each(|((dx, x), g)| gelu_backward(x, g, dx));
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

    #[test]
    fn linear_matches_candle_nn_for_input_weight_and_bias() -> Result<()> {
        use candle_core::Module;
        let x = Var::from_tensor(&seeded((3, 17, 24), 0.0, 1.0, 1)?)?;
        let w = Var::from_tensor(&seeded((40, 24), 0.0, 0.3, 2)?)?;
        let b = Var::from_tensor(&seeded(40, 0.0, 0.3, 3)?)?;
        let reference = candle_nn::Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
        let yf = linear(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()))?;
        let yc = reference.forward(x.as_tensor())?;
        assert_eq!(yf.dims(), &[3, 17, 40]);
        assert_matches_composed(&yf, &yc, &[("x", &x), ("weight", &w), ("bias", &b)])
    }
}
