//! Branch-free `exp` and `erf` for the fused kernels, written so loops over slices vectorize.
//!
//! libm's `expf`/`erff` are scalar calls with branches: in the training step they made the
//! GELU forward and backward passes an eighth of the time (`perf`). These use only
//! multiplies, adds, a division and bit tricks, so the kernels that call them (compiled for
//! AVX2+FMA with `multiversion`) run 8 lanes at a time. Accuracy is far inside what f32
//! training and the 1e-4 candle-vs-ONNX-Runtime parity need (see the tests).

/// 1.5 * 2^23: adding it rounds an f32 of magnitude below 2^22 to an integer, and leaves
/// that integer in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// Below this `exp` returns 0: `e^-87` is just above the smallest normal f32 (1.18e-38).
const EXP_FLUSH_BELOW: f32 = -87.0;

/// `e^x`, relative error below 3e-7 for x in [-87, 88]; above, x is clamped to 88, and below
/// -87 the result is 0.
///
/// The 0 matters for speed, not accuracy: a masked attention score (bias -10000) must give a
/// probability of exactly 0. Clamped to `e^-87` instead, it became a subnormal once the row
/// was normalised, and every product the subnormal then fed (P·V, the softmax and GELU
/// backward passes, gemm on their gradients) took a microcode assist per operation on Intel
/// CPUs: a 25x slower training step on a Xeon (AMD's cores do not slow down, which is why
/// it went unseen).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let flushed = x < EXP_FLUSH_BELOW;
    let x = x.clamp(EXP_FLUSH_BELOW, 88.0);
    // x = k ln2 + r with |r| <= ln2 / 2; ln2 split in two so r keeps its low bits.
    let shifted = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let k = shifted - ROUND_MAGIC;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    // Taylor series of e^r to degree 6 (the next term is below 1.2e-7 of the result).
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^k from the integer in the low bits of `shifted`, straight into the exponent field.
    let k_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let two_k = f32::from_bits(((k_int + 127) as u32) << 23);
    // A select, not a branch, so loops over slices still vectorize.
    if flushed {
        0.0
    } else {
        p * two_k
    }
}

/// `x`, or 0 where `x` is subnormal. Values that small change nothing they are added to, and
/// each operation that reads one takes a microcode assist on Intel CPUs (5-6x slower
/// element-wise passes measured on a Xeon), so buffers that persist across steps flush them.
#[inline(always)]
pub fn flush_subnormal(x: f32) -> f32 {
    // A select, not a branch, so loops over slices still vectorize.
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// `erf(x)` and `e^(-x²)` together (GELU's backward pass needs both), absolute error of erf
/// below 1e-6: Abramowitz & Stegun 7.1.26 (1.5e-7) plus f32 rounding.
#[inline(always)]
pub fn erf_and_gauss(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let gauss = exp(-x * x);
    let erf_abs = 1.0 - poly * gauss;
    (erf_abs.copysign(x), gauss)
}

/// Lanes of the partial sums in [`sum`] and [`dot`]: one AVX register of f32.
const LANES: usize = 8;

/// `Σ xᵢ` with [`LANES`] independent partial sums, so the loop vectorizes (a single f32
/// accumulator must add in order).
#[inline(always)]
pub fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ aᵢ bᵢ`, vectorizable as [`sum`].
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Softmax backward in place over one row: `g ← y (g - Σ g y)`, `y` the row's
/// probabilities (the attention ops' backward passes).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
pub fn softmax_backward_in_place(y: &[f32], g: &mut [f32]) {
    let dot = dot(y, g);
    for (g, y) in g.iter_mut().zip(y) {
        *g = y * (*g - dot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points spread over [lo, hi], both ends included.
    fn grid(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
        (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
    }

    #[test]
    fn exp_matches_libm_to_a_few_ulp_and_never_returns_a_subnormal() {
        let worst = grid(-87.0, 88.0, 200_000)
            .map(|x| {
                let want = f64::from(x).exp();
                ((f64::from(exp(x)) - want) / want).abs()
            })
            .fold(0f64, f64::max);
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        // Never a subnormal: 0 below the normal range, normal at its edge.
        assert_eq!(exp(-87.01), 0.0);
        assert_eq!(exp(-10_000.0), 0.0);
        assert!(exp(-87.0).is_normal());
        assert!(grid(-200.0, 88.0, 100_000).all(|x| exp(x) == 0.0 || exp(x).is_normal()));
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn flush_subnormal_zeroes_only_subnormals() {
        let tiny = f32::MIN_POSITIVE / 3.0;
        assert!(tiny.is_subnormal());
        assert_eq!(flush_subnormal(tiny), 0.0);
        assert_eq!(flush_subnormal(-tiny), 0.0);
        for x in [f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-20, -3.5, 0.0] {
            assert_eq!(flush_subnormal(x), x);
        }
    }

    #[test]
    fn erf_matches_libm_and_is_odd() {
        let worst = grid(-6.0, 6.0, 200_000)
            .map(|x| (f64::from(erf_and_gauss(x).0) - libm::erf(f64::from(x))).abs())
            .fold(0f64, f64::max);
        assert!(worst < 1e-6, "worst absolute error {worst}");
        for x in [0.3f32, 1.7, 4.0] {
            assert_eq!(erf_and_gauss(-x).0, -erf_and_gauss(x).0);
        }
        let (_, gauss) = erf_and_gauss(1.5);
        assert!((gauss - (-2.25f32).exp()).abs() < 1e-7);
    }
}
