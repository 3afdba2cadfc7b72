//! RMSNorm, SwiGLU and rotary positions as single CPU ops with their own backward pass.
//!
//! Composed from candle ops, RMSNorm keeps four `[batch, seq, hidden]` tensors per call and
//! SwiGLU three `[batch, seq, ffn]` ones (the sigmoid, the SiLU, the product), every one
//! alive until the backward pass reaches its layer: for SmolLM2 at 8 × 256 that is ~65 MB a
//! layer; rotary positions six more the size of the queries and keys. Each op here keeps
//! only its output (its inputs are kept anyway), is one pass
//! forward and one backward, split over rows with rayon. Off the CPU the composed forms run.
//! The norm's weight is frozen in LoRA training, so its gradient is not computed.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, D};
use clarity_runtime::cpu_values::values;
use clarity_runtime::kernels::{f32_slice, fastmath, use_fused};
use multiversion::multiversion;
use rayon::prelude::*;

/// Elements handed to one rayon task in the element-wise op.
const CHUNK: usize = 16 * 1024;

/// `x / sqrt(mean(x²) + eps) · weight` over the last axis (no gradient for `weight`).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    if use_fused(x) {
        return x
            .contiguous()?
            .apply_op2(weight, RmsNorm { eps: eps as f32 });
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(weight)
}

/// `silu(gate) · up`, element by element.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if use_fused(gate) && gate.dims() == up.dims() {
        return gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu);
    }
    candle_nn::ops::sigmoid(gate)?.mul(gate)?.mul(up)
}

/// transformers' rotary positions on `x` (`[b, s, heads · head_dim]`): per head,
/// `x·cos + rotate_half(x)·sin` with `rotate_half(x) = [-x₂, x₁]`; `cos` and `sin` are
/// `[s, head_dim]`.
pub fn rotary(x: &Tensor, heads: usize, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, s, width) = x.dims3()?;
    let d = width / heads.max(1);
    if heads == 0 || d * heads != width || !d.is_multiple_of(2) || cos.dims() != [s, d] {
        candle_core::bail!(
            "rotary: x {:?}, {heads} heads, cos {:?}",
            x.dims(),
            cos.dims()
        );
    }
    if use_fused(x) {
        let op = Rotary {
            heads,
            head_dim: d,
            seq: s,
            cos: cos.flatten_all()?.to_vec1::<f32>()?,
            sin: sin.flatten_all()?.to_vec1::<f32>()?,
        };
        return x.contiguous()?.apply_op1(op);
    }
    let x = x.reshape((b, s, heads, d))?;
    let (cos, sin) = (cos.reshape((s, 1, d))?, sin.reshape((s, 1, d))?);
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    (x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?.reshape((b, s, width))
}

struct Rotary {
    heads: usize,
    head_dim: usize,
    seq: usize,
    /// `[seq, head_dim]`.
    cos: Vec<f32>,
    /// `[seq, head_dim]`.
    sin: Vec<f32>,
}

impl Rotary {
    /// Every head of `x` rotated by its position's angles; `backward`: the transpose of that
    /// map applied to a gradient.
    fn apply(&self, x: &[f32], backward: bool) -> Vec<f32> {
        let d = self.head_dim;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .enumerate()
            .for_each(|(row, (y, x))| {
                // Rows are (batch, position, head): the position picks the angles.
                let p = (row / self.heads) % self.seq;
                let (cos, sin) = (&self.cos[p * d..][..d], &self.sin[p * d..][..d]);
                match backward {
                    false => rotate_row(x, cos, sin, y),
                    true => rotate_row_transposed(x, cos, sin, y),
                }
            });
        y
    }
}

/// `y₁ = x₁·cos₁ − x₂·sin₁`, `y₂ = x₂·cos₂ + x₁·sin₂` (halves of the head).
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn rotate_row(x: &[f32], cos: &[f32], sin: &[f32], y: &mut [f32]) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (y1, y2) = y.split_at_mut(half);
    for i in 0..half {
        y1[i] = x1[i] * cos[i] - x2[i] * sin[i];
        y2[i] = x2[i] * cos[half + i] + x1[i] * sin[half + i];
    }
}

/// The transpose of [`rotate_row`]: `g₁·cos₁ + g₂·sin₂`, `g₂·cos₂ − g₁·sin₁`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn rotate_row_transposed(g: &[f32], cos: &[f32], sin: &[f32], dx: &mut [f32]) {
    let half = g.len() / 2;
    let (g1, g2) = g.split_at(half);
    let (d1, d2) = dx.split_at_mut(half);
    for i in 0..half {
        d1[i] = g1[i] * cos[i] + g2[i] * sin[half + i];
        d2[i] = g2[i] * cos[half + i] - g1[i] * sin[i];
    }
}

impl CustomOp1 for Rotary {
    fn name(&self) -> &'static str {
        "clarity-rotary"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        Ok((
            CpuStorage::F32(self.apply(x, false)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = values(grad)?;
        Ok(Some(Tensor::from_vec(
            self.apply(&g, true),
            x.shape(),
            x.device(),
        )?))
    }
}

struct RmsNorm {
    eps: f32,
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
#[inline(always)]
fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let ms = fastmath::dot(row, row) / row.len() as f32;
    1.0 / (ms + eps).sqrt()
}

#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn rms_forward_row(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let inv = inverse_rms(x, eps);
    for ((y, x), w) in y.iter_mut().zip(x).zip(w) {
        *y = x * inv * w;
    }
}

/// `dx = inv · (g∘w) − x · inv³ · mean((g∘w)∘x)`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn rms_backward_row(x: &[f32], w: &[f32], g: &[f32], eps: f32, dx: &mut [f32]) {
    let inv = inverse_rms(x, eps);
    for ((d, g), w) in dx.iter_mut().zip(g).zip(w) {
        *d = g * w;
    }
    let coef = fastmath::dot(dx, x) / x.len() as f32 * inv * inv * inv;
    for (d, x) in dx.iter_mut().zip(x) {
        *d = *d * inv - x * coef;
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "clarity-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let h = w.len();
        if h == 0 || l1.dims().last() != Some(&h) {
            candle_core::bail!("{}: x {:?}, weight {:?}", self.name(), l1.dims(), l2.dims());
        }
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(h)
            .zip(x.par_chunks(h))
            .for_each(|(y, x)| rms_forward_row(x, w, self.eps, y));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (xs, w, g) = (values(x)?, values(weight)?, values(grad)?);
        let h = w.len();
        if h == 0 || xs.len() != g.len() || xs.len() % h != 0 {
            candle_core::bail!("{}: backward shapes differ from the forward", self.name());
        }
        let mut dx = vec![0f32; xs.len()];
        dx.par_chunks_mut(h)
            .zip(xs.par_chunks(h).zip(g.par_chunks(h)))
            .for_each(|(dx, (x, g))| rms_backward_row(x, &w, g, self.eps, dx));
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), None))
    }
}

struct SwiGlu;

/// `σ(a)`, from the vectorizable exp.
#[inline(always)]
fn sigmoid(a: f32) -> f32 {
    1.0 / (1.0 + fastmath::exp(-a))
}

#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn swiglu_forward(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, a), b) in y.iter_mut().zip(a).zip(b) {
        *y = a * sigmoid(*a) * b;
    }
}

/// `da = g · b · σ(a) · (1 + a (1 − σ(a)))`, `db = g · a · σ(a)`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn swiglu_backward(a: &[f32], b: &[f32], g: &[f32], da: &mut [f32], db: &mut [f32]) {
    for i in 0..a.len() {
        let s = sigmoid(a[i]);
        da[i] = g[i] * b[i] * s * (1.0 + a[i] * (1.0 - s));
        db[i] = g[i] * a[i] * s;
    }
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "clarity-swiglu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, l1, self.name())?;
        let b = f32_slice(s2, l2, self.name())?;
        if a.len() != b.len() {
            candle_core::bail!("{}: gate {:?}, up {:?}", self.name(), l1.dims(), l2.dims());
        }
        let mut y = vec![0f32; a.len()];
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(y, (a, b))| swiglu_forward(a, b, y));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (a, b, g) = (values(gate)?, values(up)?, values(grad)?);
        if a.len() != b.len() || a.len() != g.len() {
            candle_core::bail!("{}: backward shapes differ from the forward", self.name());
        }
        let (mut da, mut db) = (vec![0f32; a.len()], vec![0f32; a.len()]);
        da.par_chunks_mut(CHUNK)
            .zip(db.par_chunks_mut(CHUNK))
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .zip(g.par_chunks(CHUNK))
            .for_each(|(((da, db), (a, b)), g)| swiglu_backward(a, b, g, da, db));
        Ok((
            Some(Tensor::from_vec(da, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(db, up.shape(), up.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_matches_composed as compare, seeded_var};
    use candle_core::{Device, Var};

    fn seeded(shape: (usize, usize, usize), seed: u64) -> Result<Var> {
        seeded_var(shape, 3.0, seed)
    }

    #[test]
    fn fused_rms_norm_matches_the_composed_form() -> Result<()> {
        let x = seeded((2, 5, 24), 1)?;
        let w = Tensor::arange(0f32, 24., &Device::Cpu)?.affine(0.1, 0.5)?;
        compare(&[&x], || rms_norm(&x, &w, 1e-5))
    }

    #[test]
    fn fused_rotary_matches_the_composed_form() -> Result<()> {
        // Tables that differ between the halves too, so a transposed index would show.
        let (s, heads, d) = (7, 3, 8);
        let angles = Tensor::arange(0f32, (s * d) as f32, &Device::Cpu)?.affine(0.37, 0.1)?;
        let (cos, sin) = (
            angles.cos()?.reshape((s, d))?,
            angles.sin()?.reshape((s, d))?,
        );
        let x = seeded((2, s, heads * d), 5)?;
        compare(&[&x], || rotary(&x, heads, &cos, &sin))
    }

    #[test]
    fn fused_swiglu_matches_the_composed_form() -> Result<()> {
        let (a, b) = (seeded((2, 5, 40000), 2)?, seeded((2, 5, 40000), 3)?);
        compare(&[&a, &b], || swiglu(&a, &b))
    }
}
