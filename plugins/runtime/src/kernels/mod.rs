//! CPU building blocks of the plugins' fused training ops (the encoder's LayerNorm, GELU and
//! attention; the decoder's RMSNorm, SwiGLU and causal attention): which form an op takes,
//! vectorizable math, and strided single-threaded matrix products for per-head work.

pub mod dropout;
pub mod fastmath;
pub mod strided;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Tensor};

thread_local! {
    /// Set by tests to run the composed candle forms on the CPU too, as a reference.
    static COMPOSED_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the fused CPU ops handle `x` (f32 on the CPU), or the composed candle forms
/// (other devices and dtypes, and the reference in tests).
pub fn use_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && !COMPOSED_ONLY.get()
}

/// Run `f` with every op in its composed candle form (on this thread): the reference the
/// fused ops are tested against.
pub fn with_composed_ops<R>(f: impl FnOnce() -> R) -> R {
    COMPOSED_ONLY.set(true);
    let result = f();
    COMPOSED_ONLY.set(false);
    result
}

/// The matrix-product kernels candle's CPU matmuls and the plugins' per-head products run on
/// this machine (gemm picks them at run time; `avx512` is this crate's feature, which the
/// plugins turn on by default): for logs and benchmark tables, since speeds differ ~2x
/// between AVX-512 and AVX2 machines.
pub fn matmul_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f") {
            return "AVX-512 (gemm x86-v4)";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return if std::is_x86_feature_detected!("avx512f") {
                "AVX2+FMA (gemm x86-v3; AVX-512 present but built without the avx512 feature)"
            } else {
                "AVX2+FMA (gemm x86-v3)"
            };
        }
        "SSE2 (no AVX2: gemm's portable kernels)"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

/// Ask mimalloc (the plugins' global allocator) to keep freed memory for reuse instead of
/// returning it to the OS after 10 ms: every training step frees and reallocates the same
/// large activation buffers, and with the default a sixth of the step went to the kernel
/// zeroing fresh pages (`perf`: clear_page_erms; 17% of a SmolLM2 LoRA step). The cost is
/// that RSS stays at its peak, which a training run reaches anyway.
pub fn retain_freed_memory() {
    // `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (libmimalloc-sys 0.1.49 names
    // no constant for it); -1 means "never purge".
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: setting an option is a plain store that mimalloc reads on its next purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// A contiguous f32 input of a custom op as a slice (`op` names it in the error).
pub fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: input is not contiguous"),
    }
}
