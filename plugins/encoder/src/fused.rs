//! LayerNorm, softmax and erf-GELU as single CPU ops with their own backward pass.
//!
//! Written out of candle's elementary ops, each of these is 5-10 tensors forward and 15-25
//! backward, every one a full pass over memory with a fresh allocation; in the training step
//! they were a large part of the backward pass. Here each is one pass forward and one pass
//! backward, split over rows with rayon. Off the CPU the composed forms are used, so CUDA and
//! Metal still train.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// Rows handed to one rayon task: large enough that scheduling is noise.
const ROWS_PER_TASK: usize = 16;

/// `LayerNorm(x) * weight + bias` over the last axis.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
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

/// Softmax over the last axis.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

/// GELU with the exact erf form (BERT's `gelu`).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        x.contiguous()?.apply_op1(GeluErf)
    } else {
        x.gelu_erf()
    }
}

/// The contiguous f32 slice behind a CPU storage.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input is not contiguous"),
    }
}

/// A tensor's values as one contiguous f32 vector.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
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

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "clarity-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let dim = layout.dims().last().copied().unwrap_or(0);
        if dim == 0 {
            candle_core::bail!("{}: empty last axis", self.name());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(dim * ROWS_PER_TASK)
            .zip(x.par_chunks(dim * ROWS_PER_TASK))
            .for_each(|(out, x)| {
                for (out, row) in out.chunks_mut(dim).zip(x.chunks(dim)) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = (v - max).exp();
                        sum += *o;
                    }
                    out.iter_mut().for_each(|o| *o /= sum);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// dx = y * (g - sum(g * y)) per row.
    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dim = arg.dim(D::Minus1)?;
        let (y, g) = (values(res)?, values(grad)?);
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(dim * ROWS_PER_TASK)
            .zip(y.par_chunks(dim * ROWS_PER_TASK))
            .zip(g.par_chunks(dim * ROWS_PER_TASK))
            .for_each(|((dx, y), g)| {
                for ((dx, y), g) in dx.chunks_mut(dim).zip(y.chunks(dim)).zip(g.chunks(dim)) {
                    let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                    for i in 0..dim {
                        dx[i] = y[i] * (g[i] - dot);
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
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
            .for_each(|(out, x)| {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    /// d/dx = Φ(x) + x φ(x).
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (x, g) = (values(arg)?, values(grad)?);
        let inv_sqrt_2pi = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .zip(g.par_chunks(4096))
            .for_each(|((dx, x), g)| {
                for ((d, &v), &g) in dx.iter_mut().zip(x).zip(g) {
                    let cdf = 0.5 * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2));
                    let pdf = inv_sqrt_2pi * (-0.5 * v * v).exp();
                    *d = g * (cdf + v * pdf);
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Gradients of `sum(f(x) * r)` for a fixed random `r`, fused against composed.
    fn check(
        shape: &[usize],
        fused: impl Fn(&Tensor) -> Result<Tensor>,
        composed: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, shape, &dev)?))?;
        let r = Tensor::randn(0f32, 1.0, shape, &dev)?;
        let (yf, yc) = (fused(x.as_tensor())?, composed(x.as_tensor())?);
        let diff = (&yf - &yc)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let gf = (yf * &r)?.sum_all()?.backward()?;
        let gc = (yc * &r)?.sum_all()?.backward()?;
        let (gf, gc) = (gf.get(&x).cloned(), gc.get(&x).cloned());
        let (Some(gf), Some(gc)) = (gf, gc) else {
            panic!("no gradient for x");
        };
        let diff = (gf - gc)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "gradient differs by {diff}");
        Ok(())
    }

    #[test]
    fn softmax_and_gelu_match_candle_forward_and_backward() -> Result<()> {
        check(&[3, 5, 37], softmax_last_dim, |x| {
            candle_nn::ops::softmax(x, D::Minus1)
        })?;
        check(&[7, 300], gelu_erf, |x| x.gelu_erf())
    }

    #[test]
    fn layer_norm_matches_the_composed_form_for_input_weight_and_bias() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, hidden) = (45, 24);
        let x = Var::from_tensor(&Tensor::randn(1f32, 3.0, (3, rows / 3, hidden), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, hidden, &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, hidden, &dev)?)?;
        let r = Tensor::randn(0f32, 1.0, (3, rows / 3, hidden), &dev)?;
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
        let diff = (&yf - &yc)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward differs by {diff}");
        let gf = (yf * &r)?.sum_all()?.backward()?;
        let gc = (yc * &r)?.sum_all()?.backward()?;
        for var in [&x, &w, &b] {
            let (Some(a), Some(c)) = (gf.get(var), gc.get(var)) else {
                panic!("missing gradient");
            };
            let diff = (a - c)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-4, "gradient differs by {diff}");
        }
        Ok(())
    }
}
