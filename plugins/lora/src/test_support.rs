//! Helpers the unit tests of the fused ops share.

use candle_core::{Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};

/// A variable of values uniform in `±spread` from a ChaCha stream seeded with `seed` (the
/// same on every run and machine, so a failure replays).
pub(crate) fn seeded_var(shape: (usize, usize, usize), spread: f32, seed: u64) -> Result<Var> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = shape.0 * shape.1 * shape.2;
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-spread..spread)).collect();
    Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu)?)
}

/// `max |a - b|` over `max |b|`: rounding differences between two ways of summing the same
/// products (and between gemm's AVX2 and AVX-512 kernels) grow with the values, so bounds
/// are relative to the reference's scale.
pub(crate) fn relative_error(a: &Tensor, b: &Tensor) -> Result<f32> {
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff / scale.max(f32::MIN_POSITIVE))
}
