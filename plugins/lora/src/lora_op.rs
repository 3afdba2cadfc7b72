//! A LoRA linear layer as one CPU op: `y = x Wᵀ + b + s · (dropout(x) Aᵀ) Bᵀ`.
//!
//! Composed from candle ops the layer leaves six tensors per call alive until the backward
//! pass (candle's dropout alone draws a uniform tensor, a comparison and a product, each the
//! size of the input; then the two low-rank products, the scaling and the sum). Here only
//! the output is new: the dropout mask is a hash of (seed, index), so the backward pass
//! recomputes the dropped input instead of keeping it, and the rank-`r` product `x Aᵀ` is
//! cheap to recompute. The inputs are `x` and the adapter's `A` and `B`; the frozen weight
//! gets no gradient.

use crate::lora::Frozen;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use clarity_runtime::cpu_values::values;
use clarity_runtime::kernels::dropout::{self, Mask};
use clarity_runtime::kernels::f32_slice;
use rayon::prelude::*;

/// The op: the frozen parts, the adapter's scale and the dropout mask while training.
pub struct LoraOp {
    /// `[out, in]`.
    pub weight: Frozen,
    /// `[out]`.
    pub bias: Option<Vec<f32>>,
    /// `alpha / r`.
    pub scale: f32,
    /// Dropout on the adapter's input (training only).
    pub mask: Option<Mask>,
}

/// `[m, k]` row-major, no offset.
fn rows(m: usize, k: usize) -> Layout {
    Layout::contiguous((m, k))
}

impl CustomOp3 for LoraOp {
    fn name(&self) -> &'static str {
        "clarity-lora-linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        a_s: &CpuStorage,
        al: &Layout,
        b_s: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (r, inner) = al.shape().dims2()?;
        let (out, r_b) = bl.shape().dims2()?;
        let x = f32_slice(xs, xl, self.name())?;
        if r != r_b || xl.dims().last() != Some(&inner) || self.weight.dims() != [out, inner] {
            candle_core::bail!(
                "{}: x {:?}, A {:?}, B {:?}, W {:?}",
                self.name(),
                xl.dims(),
                al.dims(),
                bl.dims(),
                self.weight.dims()
            );
        }
        if self.bias.as_ref().is_some_and(|b| b.len() != out) {
            candle_core::bail!("{}: a bias of {out} values expected", self.name());
        }
        let m = x.len() / inner.max(1);
        let (base, shape) = self.weight.cpu_product(xs, xl)?;
        let CpuStorage::F32(mut y) = base else {
            candle_core::bail!("{}: the frozen product is not f32", self.name());
        };
        // low = dropout(x) Aᵀ, update = low Bᵀ: both small next to the frozen product. Without
        // dropout the product reads x where it is.
        let at = al.transpose(0, 1)?;
        let low = match self.mask {
            Some(mask) => CpuStorage::F32(dropout::masked(mask, x)).matmul(
                a_s,
                (1, m, r, inner),
                &rows(m, inner),
                &at,
            )?,
            None => {
                let x_rows = Layout::contiguous_with_offset((m, inner), xl.start_offset());
                xs.matmul(a_s, (1, m, r, inner), &x_rows, &at)?
            }
        };
        let update = low.matmul(b_s, (1, m, out, r), &rows(m, r), &bl.transpose(0, 1)?)?;
        let CpuStorage::F32(update) = update else {
            candle_core::bail!("{}: the adapter product is not f32", self.name());
        };
        let (scale, bias) = (self.scale, self.bias.as_deref());
        y.par_chunks_mut(out)
            .zip(update.par_chunks(out))
            .for_each(|(y, u)| {
                for (i, (y, u)) in y.iter_mut().zip(u).enumerate() {
                    *y += scale * u + bias.map_or(0.0, |b| b[i]);
                }
            });
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (r, inner) = a.dims2()?;
        let out = b.dim(0)?;
        let m = x.elem_count() / inner.max(1);
        let device = x.device();
        let g = grad.detach().reshape((m, out))?;
        let (a, b) = (a.detach(), b.detach());
        let dropped = match self.mask {
            Some(mask) => Tensor::from_vec(dropout::masked(mask, &values(x)?), (m, inner), device)?,
            None => x.detach().reshape((m, inner))?,
        };
        let scale = f64::from(self.scale);
        // g B: the gradient at the low-rank bottleneck, [m, r].
        let gb = g.matmul(&b)?;
        let d_dropped = (gb.matmul(&a)? * scale)?;
        let d_adapter_input = match self.mask {
            Some(mask) => {
                let dv = values(&d_dropped)?;
                Tensor::from_vec(dropout::masked(mask, &dv), (m, inner), device)?
            }
            None => d_dropped,
        };
        let dx = (self.weight.input_grad(&g)? + d_adapter_input)?.reshape(x.shape())?;
        let da = (gb.t()?.matmul(&dropped)? * scale)?;
        let low = dropped.matmul(&a.t()?)?;
        let db = (g.t()?.matmul(&low)? * scale)?;
        debug_assert_eq!(db.dims(), [out, r]);
        Ok((Some(dx), Some(da), Some(db)))
    }
}
