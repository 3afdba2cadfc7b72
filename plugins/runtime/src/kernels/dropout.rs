//! Dropout as one pass forward and one backward, from a seeded counter-based mask.
//!
//! candle's dropout draws a uniform tensor from an unseeded thread RNG, compares, converts
//! and multiplies: five full passes and an allocation each, 5% of a training step, and no
//! two runs alike. Here whether element `i` is kept is a hash of (call seed, i): the forward
//! pass and the backward pass compute the same mask without storing it, any split of the work
//! over threads gives the same result, and a run's masks follow from its training seed.

use super::f32_slice;
use crate::cpu_values::values;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use multiversion::multiversion;
use std::sync::atomic::{AtomicU64, Ordering};

/// Elements per rayon task.
const CHUNK: usize = 8192;

/// Per-call seeds for one model's dropout layers: call `n` after [`DropoutSeeds::restart`]
/// with key `k` gets a seed derived from (run seed, k, n), so a run with the same seed and
/// data draws the same masks, and so does a resumed one (the training loop restarts the
/// stream with each micro-batch's key).
#[derive(Debug, Default)]
pub struct DropoutSeeds {
    seed: u64,
    stream: AtomicU64,
    calls: AtomicU64,
}

impl DropoutSeeds {
    /// Seeds derived from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Start the seeds of the micro-batch `key`.
    pub fn restart(&self, key: u64) {
        self.stream.store(key, Ordering::Relaxed);
        self.calls.store(0, Ordering::Relaxed);
    }

    /// The seed for the next dropout call.
    pub fn next(&self) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let stream = splitmix64(self.stream.load(Ordering::Relaxed));
        splitmix64(self.seed ^ stream ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

/// Dropout in one forward pass of a model: while training, each call masks with the next
/// seed of the model's [`DropoutSeeds`]; in evaluation it is the identity.
#[derive(Debug, Clone, Copy)]
pub struct Dropout<'a> {
    train: bool,
    seeds: &'a DropoutSeeds,
}

impl<'a> Dropout<'a> {
    /// Dropout on when `train`, drawing from `seeds`.
    pub fn new(train: bool, seeds: &'a DropoutSeeds) -> Self {
        Self { train, seeds }
    }

    /// `dropout(x)` with probability `p`. While training a seed is drawn even when `p` is
    /// 0: the order of draws is what makes a seeded run repeat, so it stays as it was.
    pub fn apply(&self, x: &Tensor, p: f32) -> Result<Tensor> {
        if self.train {
            dropout(x, p, self.seeds.next())
        } else {
            Ok(x.clone())
        }
    }

    /// `dropout(y) + residual` in one pass (a residual connection); draws as [`Self::apply`].
    pub fn add(&self, y: &Tensor, residual: &Tensor, p: f32) -> Result<Tensor> {
        if self.train {
            dropout_add(y, residual, p, self.seeds.next())
        } else {
            y + residual
        }
    }

    /// `(p, seed)` for an op that applies dropout inside itself (the encoder's attention
    /// probabilities, a LoRA adapter's input): `None` in evaluation, and when `p` is 0 (then
    /// no seed is drawn, unlike [`Self::apply`]; again the order of draws is kept as it was).
    pub fn probabilities(&self, p: f32) -> Option<(f32, u64)> {
        (self.train && p > 0.0).then(|| (p, self.seeds.next()))
    }
}

/// SplitMix64's finaliser: spreads a counter over all 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 32-bit integer hash (two multiply-xorshift rounds, "lowbias32"): 32-bit lane
/// multiplies, so the mask loop vectorizes.
#[inline(always)]
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The mask: which elements are kept and how kept ones are scaled.
#[derive(Debug, Clone, Copy)]
pub struct Mask {
    seed: u64,
    /// Kept when the hash is at least this (`p · 2³²`).
    threshold: u32,
    /// `1 / (1 - p)`.
    scale: f32,
}

impl Mask {
    /// Drop with probability `p` (in [0, 1)), the pattern drawn from `seed`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout probability must be in [0, 1), got {p}");
        }
        Ok(Self {
            seed,
            threshold: (f64::from(p) * 4_294_967_296.0) as u32,
            scale: 1.0 / (1.0 - p),
        })
    }

    /// `scale` for a kept element `index`, 0 for a dropped one.
    #[inline(always)]
    fn factor(self, index: u32) -> f32 {
        let h = mix32(mix32(index ^ self.seed as u32) ^ (self.seed >> 32) as u32);
        if h >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }
}

/// `out[i] = x[i] · factor(first + i)`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn apply_mask(mask: Mask, first: u32, x: &[f32], out: &mut [f32]) {
    for (i, (o, v)) in out.iter_mut().zip(x).enumerate() {
        *o = v * mask.factor(first.wrapping_add(i as u32));
    }
}

/// `x[i] *= factor(first + i)`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn apply_mask_in_place(mask: Mask, first: u32, x: &mut [f32]) {
    for (i, v) in x.iter_mut().enumerate() {
        *v *= mask.factor(first.wrapping_add(i as u32));
    }
}

/// `out[i] = x[i] · factor(first + i) + residual[i]`.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn apply_mask_add(mask: Mask, first: u32, x: &[f32], residual: &[f32], out: &mut [f32]) {
    for (i, ((o, v), r)) in out.iter_mut().zip(x).zip(residual).enumerate() {
        *o = v * mask.factor(first.wrapping_add(i as u32)) + r;
    }
}

/// `x` with the mask applied, split over rayon tasks (element `i` always gets the factor of
/// index `i`, so a backward pass that calls this again gets the same mask).
pub fn masked(mask: Mask, x: &[f32]) -> Vec<f32> {
    super::par_filled(x.len(), CHUNK, |task, out| {
        let at = task * CHUNK;
        apply_mask(mask, at as u32, &x[at..][..out.len()], out)
    })
}

/// Inverted dropout with probability `p`, its mask drawn from `seed`.
pub fn dropout(x: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    if super::use_fused(x) {
        x.contiguous()?.apply_op1(DropoutOp(Mask::new(p, seed)?))
    } else {
        candle_nn::ops::dropout(x, p)
    }
}

/// `dropout(x) + residual` in one pass (the residual connections after attention and the
/// feed-forward block).
pub fn dropout_add(x: &Tensor, residual: &Tensor, p: f32, seed: u64) -> Result<Tensor> {
    if p == 0.0 {
        return x + residual;
    }
    if super::use_fused(x) && x.dims() == residual.dims() {
        x.contiguous()?
            .apply_op2(&residual.contiguous()?, DropoutAddOp(Mask::new(p, seed)?))
    } else {
        dropout(x, p, seed)? + residual
    }
}

struct DropoutOp(Mask);

impl CustomOp1 for DropoutOp {
    fn name(&self) -> &'static str {
        "clarity-dropout"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        Ok((CpuStorage::F32(masked(self.0, x)), layout.shape().clone()))
    }

    /// The same mask on the gradient.
    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = values(grad)?;
        let dx = masked(self.0, &g);
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

struct DropoutAddOp(Mask);

impl CustomOp2 for DropoutAddOp {
    fn name(&self) -> &'static str {
        "clarity-dropout-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let residual = f32_slice(s2, l2, self.name())?;
        if x.len() != residual.len() {
            candle_core::bail!("{}: {:?} against {:?}", self.name(), l1.dims(), l2.dims());
        }
        let out = super::par_filled(x.len(), CHUNK, |task, out| {
            let at = task * CHUNK;
            let (x, r) = (&x[at..][..out.len()], &residual[at..][..out.len()]);
            apply_mask_add(self.0, at as u32, x, r, out)
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _residual: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = values(grad)?;
        let dx = Tensor::from_vec(masked(self.0, &g), x.shape(), x.device())?;
        Ok((Some(dx), Some(grad.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};

    /// Values in [-1, 1) from a ChaCha stream seeded with `seed` (the same on every run).
    fn seeded(shape: (usize, usize), seed: u64) -> Result<Tensor> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<f32> = (0..shape.0 * shape.1)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
    }

    #[test]
    fn drops_about_p_scales_the_rest_and_repeats_for_a_seed() -> Result<()> {
        let x = Tensor::ones((64, 1000), candle_core::DType::F32, &Device::Cpu)?;
        let y = dropout(&x, 0.1, 7)?.flatten_all()?.to_vec1::<f32>()?;
        let kept = y.iter().filter(|v| **v != 0.0).count() as f64 / y.len() as f64;
        assert!((kept - 0.9).abs() < 0.01, "kept {kept}");
        assert!(y.iter().all(|v| *v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        let again = dropout(&x, 0.1, 7)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(y, again, "same seed, same mask");
        let other = dropout(&x, 0.1, 8)?.flatten_all()?.to_vec1::<f32>()?;
        assert_ne!(y, other, "another seed, another mask");
        Ok(())
    }

    #[test]
    fn masks_are_not_correlated_across_neighbours_or_calls() -> Result<()> {
        let seeds = DropoutSeeds::new(3);
        let x = Tensor::ones(200_000, candle_core::DType::F32, &Device::Cpu)?;
        let a = dropout(&x, 0.5, seeds.next())?.to_vec1::<f32>()?;
        let b = dropout(&x, 0.5, seeds.next())?.to_vec1::<f32>()?;
        let kept = |v: &f32| *v != 0.0;
        // Independent masks at p = 0.5 agree on about half the elements.
        let same_calls = a.iter().zip(&b).filter(|(x, y)| kept(x) == kept(y)).count();
        let same_neighbours = a.windows(2).filter(|w| kept(&w[0]) == kept(&w[1])).count();
        for (what, n, total) in [
            ("two calls", same_calls, a.len()),
            ("neighbours", same_neighbours, a.len() - 1),
        ] {
            let share = n as f64 / total as f64;
            assert!((share - 0.5).abs() < 0.01, "{what} agree on {share}");
        }
        Ok(())
    }

    #[test]
    fn gradients_pass_through_the_same_mask() -> Result<()> {
        let (p, seed, shape) = (0.3, 11, (5, 300));
        let x = Var::from_tensor(&seeded(shape, 1)?)?;
        let r = Var::from_tensor(&seeded(shape, 2)?)?;
        let g = seeded(shape, 3)?;
        // The op's own mask: on ones it gives each element's factor, 0 or 1 / (1 - p),
        // exactly (recovering it as (y - r) / x instead amplifies rounding where x is tiny).
        let mask = dropout(&x.ones_like()?, p, seed)?;
        let y = dropout_add(x.as_tensor(), r.as_tensor(), p, seed)?;
        let grads = (&y * &g)?.sum_all()?.backward()?;
        let (Some(dx), Some(dr)) = (grads.get(&x), grads.get(&r)) else {
            panic!("missing gradient");
        };
        // Each element is one f32 product (and one sum), rounded the same way on any CPU
        // (Rust never fuses a multiply and an add), so equality is exact.
        let values = |t: &Tensor| t.to_vec2::<f32>();
        assert_eq!(values(dx)?, values(&(&g * &mask)?)?, "dx = g · mask");
        assert_eq!(values(dr)?, values(&g)?, "dr = g");
        let expected = ((x.as_tensor() * &mask)? + r.as_tensor())?;
        assert_eq!(values(&y)?, values(&expected)?, "y = x · mask + r");
        let plain = (dropout(x.as_tensor(), p, seed)? + r.as_tensor())?;
        assert_eq!(
            values(&plain)?,
            values(&y)?,
            "dropout + residual = dropout_add"
        );
        // The mask is a real one: some of each.
        let kept = mask.flatten_all()?.to_vec1::<f32>()?;
        assert!(kept.contains(&0.0) && kept.contains(&(1.0 / (1.0 - p))));
        Ok(())
    }
}
