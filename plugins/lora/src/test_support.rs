//! Helpers the unit tests of the fused ops share.

use candle_core::{Device, Result, Tensor, Var};
use clarity_runtime::kernels::with_composed_ops;
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

/// A fused op against its composed candle form: `f`'s output to 1e-5 and the gradients of
/// `inputs` through `sum(out · r)` (a seeded `r`) to 1e-4, relative to the composed form's
/// largest value.
pub(crate) fn assert_matches_composed(
    inputs: &[&Var],
    f: impl Fn() -> Result<Tensor>,
) -> Result<()> {
    let run = || -> Result<(Tensor, Vec<Tensor>)> {
        let out = f()?;
        let r = seeded_var(out.dims3()?, 1.0, 99)?;
        let grads = (&out * r.as_tensor())?.sum_all()?.backward()?;
        let g = inputs
            .iter()
            .map(|x| {
                grads
                    .get(x)
                    .cloned()
                    .ok_or(candle_core::Error::Msg("no gradient".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((out, g))
    };
    let (fused, fused_grads) = run()?;
    let (reference, reference_grads) = with_composed_ops(run)?;
    let e = relative_error(&fused, &reference)?;
    assert!(e < 1e-5, "forward: relative error {e}");
    for (i, (a, b)) in fused_grads.iter().zip(&reference_grads).enumerate() {
        let e = relative_error(a, b)?;
        assert!(e < 1e-4, "gradient of input {i}: relative error {e}");
    }
    Ok(())
}
