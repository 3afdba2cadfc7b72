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

/// A new buffer of `len` values written by `fill` in parallel, one call per `chunk`
/// elements (the last may be shorter), with the chunk's index.
///
/// Each task zeroes its own chunk just before `fill` overwrites it. `vec![0.0; len]` zeroed
/// the whole buffer first, as one memset on the calling thread while the other cores
/// waited: ~4% of a MiniLM training step over its GELU, LayerNorm, dropout and attention
/// outputs. Zeroed here, the pass runs on every thread, on memory about to be written.
pub fn par_filled(len: usize, chunk: usize, fill: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    par_filled_with(len, chunk, || (), |_, index, part| fill(index, part))
}

/// [`par_filled`] with per-thread scratch state made by `init` (rayon's `for_each_init`).
pub fn par_filled_with<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |state, (index, part)| {
            part.fill(std::mem::MaybeUninit::new(0.0));
            // SAFETY: every element of `part` was initialised by the fill above, and
            // MaybeUninit<f32> has f32's layout.
            let part = unsafe { &mut *(part as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            fill(state, index, part);
        });
    // SAFETY: the tasks above initialised all `len` elements (the chunks cover the capacity
    // from 0 to `len`).
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element is written once, by the task of its chunk, with the short last chunk
    /// and an empty buffer included; each task's scratch state is its thread's own.
    #[test]
    fn par_filled_writes_each_chunk_through_its_own_task() {
        for (len, chunk) in [(0, 4), (10, 4), (12, 4), (10_000, 1000), (5, 0)] {
            let out = par_filled(len, chunk, |task, part| {
                assert!(part.iter().all(|&v| v == 0.0), "a chunk not zeroed first");
                for (i, v) in part.iter_mut().enumerate() {
                    *v = (task * chunk.max(1) + i) as f32;
                }
            });
            let expected: Vec<f32> = (0..len).map(|i| i as f32).collect();
            assert_eq!(out, expected, "len {len}, chunk {chunk}");
        }
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let out = par_filled_with(100, 7, Vec::<usize>::new, |seen, task, part| {
            seen.push(task);
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            part.fill(seen.len() as f32);
        });
        assert_eq!(calls.into_inner(), 15);
        assert!(out.iter().all(|&v| v >= 1.0));
    }
}
