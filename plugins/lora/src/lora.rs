//! Linear layers with frozen base weights and optional LoRA adapters:
//! `y = x Wᵀ + b + (alpha / r) · dropout(x) Aᵀ Bᵀ`, with `A` (`r × in`, random) and `B`
//! (`out × r`, zeros) the only trainable parts.
//!
//! The frozen product runs through [`FrozenMatMul`], a custom op whose backward pass returns
//! only the input's gradient: candle's own matmul backward would also compute (and then
//! drop) a full gradient for every frozen weight, the largest cost of a LoRA step.

use crate::lora_op::LoraOp;
use candle_core::backend::BackendStorage;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use clarity_runtime::kernels::dropout::{self, Dropout, Mask};
use clarity_runtime::kernels::use_fused;
use clarity_sdk::ModelSpec;
use std::sync::Arc;

/// LoRA hyper-parameters: `model_config` (r, alpha, dropout, target_modules) wins over
/// `lora_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSettings {
    /// Rank.
    pub r: usize,
    /// Scaling numerator.
    pub alpha: f64,
    /// Dropout on the adapter input while training.
    pub dropout: f64,
    /// Module names that get adapters (`q_proj`, `v_proj`, ...).
    pub target_modules: Vec<String>,
}

/// Module names adapters can go on.
pub const MODULES: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl LoraSettings {
    /// The settings of `spec`.
    pub fn from_spec(spec: &ModelSpec) -> std::result::Result<Self, String> {
        let m = &spec.model_config;
        let l = spec.lora_config.clone().unwrap_or_default();
        let settings = Self {
            r: m.r.unwrap_or(l.r),
            alpha: m.alpha.unwrap_or(l.alpha),
            dropout: m.dropout.unwrap_or(l.dropout),
            target_modules: m.target_modules.clone().unwrap_or(l.target_modules),
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.r == 0 {
            return Err("lora_config.r must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!(
                "lora_config.dropout must be in [0, 1), not {}",
                self.dropout
            ));
        }
        if self.target_modules.is_empty() {
            return Err("lora_config.target_modules is empty: name at least one module".into());
        }
        if let Some(bad) = self
            .target_modules
            .iter()
            .find(|m| !MODULES.contains(&m.as_str()))
        {
            return Err(format!(
                "lora_config.target_modules: `{bad}` is not a module of this model (known: {})",
                MODULES.join(", ")
            ));
        }
        Ok(())
    }

    /// `alpha / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Whether `module` gets an adapter.
    pub fn targets(&self, module: &str) -> bool {
        self.target_modules.iter().any(|m| m == module)
    }
}

/// `x Wᵀ` for a frozen `W` (`[out, in]`, f32 or 8-bit): forward as a plain product (candle's
/// quantized kernel for Q8_0, which has no backward pass of its own), backward to `x` only.
#[derive(Debug, Clone)]
pub struct FrozenMatMul {
    weight: Frozen,
}

impl CustomOp1 for FrozenMatMul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        self.weight.cpu_product(storage, layout)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        self.weight.input_grad(grad_res).map(Some)
    }
}

/// `x Wᵀ` on CPU storage for an f32 `W` (`[out, in]`) and a contiguous `x` (`[.., in]`).
fn frozen_product(
    weight: &Tensor,
    storage: &CpuStorage,
    layout: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (w_storage, w_layout) = weight.storage_and_layout();
    let Storage::Cpu(w) = &*w_storage else {
        candle_core::bail!("frozen-matmul: the weight is not on the CPU");
    };
    if !layout.is_contiguous() {
        candle_core::bail!("frozen-matmul: the input must be contiguous");
    }
    let dims = layout.shape().dims();
    let (out, inner) = weight.dims2()?;
    let k = dims.last().copied().unwrap_or(0);
    if k != inner {
        candle_core::bail!("frozen-matmul: input width {k} but weight is {out}x{inner}");
    }
    let m = layout.shape().elem_count() / k.max(1);
    let x_layout = Layout::contiguous_with_offset((m, k), layout.start_offset());
    let wt_layout = w_layout.transpose(0, 1)?;
    let y = storage.matmul(w, (1, m, out, k), &x_layout, &wt_layout)?;
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok((y, Shape::from(shape)))
}

/// GGML block types candle multiplies with SIMD kernels on x86-64 and aarch64. Others (Q4_1,
/// Q5_0, Q5_1) run its scalar fallback: SmolLM2's Q4_1 matrices kept as stored made a LoRA
/// step 6x slower than Q8_0 (87 vs 14 s at 8 x 256 on 2 cores), for 47 MB saved.
pub fn fast_blocks(dtype: GgmlDType) -> bool {
    matches!(
        dtype,
        GgmlDType::Q4_0
            | GgmlDType::Q8_0
            | GgmlDType::Q2K
            | GgmlDType::Q3K
            | GgmlDType::Q4K
            | GgmlDType::Q5K
            | GgmlDType::Q6K
            | GgmlDType::Q8K
    )
}

/// A frozen weight `[out, in]`: f32, or quantized when `use_8bit` is on.
#[derive(Debug, Clone)]
pub enum Frozen {
    /// Full precision.
    F32(Tensor),
    /// GGML blocks: Q8_0 (about 1.06 bytes per weight) quantized at load, or a GGUF file's
    /// own blocks kept as stored (see [`fast_blocks`]).
    Quantized(Arc<QTensor>),
}

impl Frozen {
    /// `weight` in 8 bits when `quantize` is set and its rows split into Q8_0 blocks;
    /// otherwise as it is.
    pub fn new(weight: Tensor, quantize: bool) -> Result<Self> {
        let block = GgmlDType::Q8_0.block_size();
        let fits = weight.dims().last().is_some_and(|&n| n % block == 0);
        if quantize && fits && weight.device().is_cpu() {
            Ok(Self::quantized(QTensor::quantize(
                &weight,
                GgmlDType::Q8_0,
            )?))
        } else {
            Ok(Self::F32(weight))
        }
    }

    /// Quantized blocks, kept in the layout this CPU's 8-bit kernels read where they have
    /// one (Q8_0 with VNNI): candle would otherwise repack them on the first product and
    /// hold both copies (1.3 GB more for OPT-1.3B).
    pub fn quantized(q: QTensor) -> Self {
        Self::Quantized(Arc::new(q.into_cpu_packed()))
    }

    /// `[out, in]`.
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Self::F32(t) => t.dims().to_vec(),
            Self::Quantized(q) => q.shape().dims().to_vec(),
        }
    }

    /// The weight in f32 (a copy for quantized weights).
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            Self::F32(t) => Ok(t.clone()),
            Self::Quantized(q) => q.dequantize(&q.device()),
        }
    }

    /// `f32`, or the GGML type of the blocks as GGUF names it (`Q8_0`, `Q4_K`, ...).
    pub fn format(&self) -> &'static str {
        match self {
            Self::F32(_) => "f32",
            Self::Quantized(q) => crate::gguf::ggml_name(q.dtype()),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Self::F32(t) => t.elem_count() * 4,
            Self::Quantized(q) => q.storage_size_in_bytes(),
        }
    }

    /// `x Wᵀ` on CPU storage (`x` contiguous, `[.., in]`): the frozen product inside the
    /// fused LoRA op.
    pub(crate) fn cpu_product(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match self {
            Self::F32(w) => frozen_product(w, storage, layout),
            // Q8_0 without the VNNI tiles (AVX2 machines, or rows not a multiple of 256):
            // candle's block-by-block kernel took 35 s a step for OPT-1.3B where a
            // dequantized copy and gemm take ~9; the copy lives for this product only.
            Self::Quantized(q) if q.dtype() == GgmlDType::Q8_0 && !q.is_cpu_packed() => {
                frozen_product(&q.dequantize(&candle_core::Device::Cpu)?, storage, layout)
            }
            Self::Quantized(q) => CustomOp1::cpu_fwd(q.as_ref(), storage, layout),
        }
    }

    /// `g W`: the gradient `x` gets from `x Wᵀ` (`g` is `[.., out]`); a quantized `W` is
    /// dequantized for the moment of the product.
    pub(crate) fn input_grad(&self, g: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32(w) => g.broadcast_matmul(w),
            Self::Quantized(q) => g.broadcast_matmul(&q.dequantize(g.device())?),
        }
    }

    /// `x Wᵀ` with a backward pass to `x` only.
    fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::F32(w) if !x.device().is_cpu() => x.broadcast_matmul(&w.t()?),
            // Quantized weights are only kept on the CPU (`Frozen::new`, `BaseWeights`).
            _ => x.apply_op1(FrozenMatMul {
                weight: self.clone(),
            }),
        }
    }
}

/// A trainable low-rank update.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// `[r, in]`.
    pub a: Tensor,
    /// `[out, r]`.
    pub b: Tensor,
    /// `alpha / r`.
    pub scale: f64,
    /// Dropout on the input while training.
    pub dropout: f64,
}

/// A linear layer: frozen weight and bias, optional adapter.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    /// `[out, in]`, frozen.
    pub weight: Frozen,
    /// `[out]`, frozen.
    pub bias: Option<Tensor>,
    /// The adapter, when this module is a target.
    pub adapter: Option<Adapter>,
}

impl LoraLinear {
    /// `x` (`[.., in]`) → `[.., out]`, with the adapter's dropout while `dropout` trains.
    pub fn forward(&self, x: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let x = x.contiguous()?;
        let Some(adapter) = &self.adapter else {
            let y = self.weight.matmul_t(&x)?;
            return match &self.bias {
                Some(b) => y.broadcast_add(b),
                None => Ok(y),
            };
        };
        let draw = dropout.probabilities(adapter.dropout as f32);
        if use_fused(&x) {
            let op = LoraOp {
                weight: self.weight.clone(),
                bias: self.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?,
                scale: adapter.scale as f32,
                mask: draw.map(|(p, seed)| Mask::new(p, seed)).transpose()?,
            };
            return x.apply_op3(&adapter.a, &adapter.b, op);
        }
        self.composed(&x, adapter, draw)
    }

    /// The same layer from candle ops (other devices, and the reference in tests); `draw`
    /// is the dropout `(p, seed)`.
    fn composed(&self, x: &Tensor, adapter: &Adapter, draw: Option<(f32, u64)>) -> Result<Tensor> {
        let mut y = self.weight.matmul_t(x)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let input = match draw {
            Some((p, seed)) => dropout::dropout(x, p, seed)?,
            None => x.clone(),
        };
        let low = input.broadcast_matmul(&adapter.a.t()?)?;
        let update = low.broadcast_matmul(&adapter.b.t()?)?;
        y + (update * adapter.scale)?
    }

    /// `W + (alpha / r) B A`: the weight with the adapter folded in (for export).
    pub fn merged_weight(&self) -> Result<Tensor> {
        let weight = self.weight.to_f32()?;
        match &self.adapter {
            None => Ok(weight),
            Some(adapter) => {
                let delta = adapter.b.matmul(&adapter.a)?;
                weight + (delta * adapter.scale)?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::relative_error;
    use crate::tiny::uniform;
    use candle_core::{Device, Var};
    use clarity_runtime::kernels::dropout::DropoutSeeds;

    #[test]
    fn frozen_matmul_matches_matmul_and_sends_gradient_to_the_input_only() -> Result<()> {
        let w = uniform((5, 3), 0.0, 1.0, 1)?;
        let x = Var::from_tensor(&uniform((2, 4, 3), 0.0, 1.0, 2)?)?;
        let frozen = x.as_tensor().apply_op1(FrozenMatMul {
            weight: Frozen::F32(w.clone()),
        })?;
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?;
        // The same products, perhaps summed in another order: a few ulp of the scale.
        let error = relative_error(&frozen, &plain)?;
        assert!(error < 1e-5, "{error}");
        let g_frozen = frozen.sum_all()?.backward()?;
        let g_plain = plain.sum_all()?.backward()?;
        let a = g_frozen.get(x.as_tensor()).expect("input gradient");
        let b = g_plain.get(x.as_tensor()).expect("input gradient");
        let error = relative_error(a, b)?;
        assert!(error < 1e-5, "{error}");
        Ok(())
    }

    #[test]
    fn merging_folds_the_adapter_into_the_weight() -> Result<()> {
        let layer = LoraLinear {
            weight: Frozen::F32(uniform((4, 3), 0.0, 1.0, 1)?),
            bias: Some(uniform(4, 0.0, 1.0, 2)?),
            adapter: Some(Adapter {
                a: uniform((2, 3), 0.0, 1.0, 3)?,
                b: uniform((4, 2), 0.0, 1.0, 4)?,
                scale: 2.0,
                dropout: 0.1,
            }),
        };
        let x = uniform((2, 5, 3), 0.0, 1.0, 5)?;
        let merged = LoraLinear {
            weight: Frozen::F32(layer.merged_weight()?),
            bias: layer.bias.clone(),
            adapter: None,
        };
        // The same sums in another order: ~1e-7 of the scale; a wrong merge is O(1).
        let seeds = DropoutSeeds::new(1);
        let eval = Dropout::new(false, &seeds);
        let error = relative_error(&layer.forward(&x, eval)?, &merged.forward(&x, eval)?)?;
        assert!(error < 1e-5, "{error}");
        Ok(())
    }

    #[test]
    fn quantized_matmul_is_close_and_passes_the_gradient_to_the_input() -> Result<()> {
        let dev = Device::Cpu;
        let w = uniform((8, 64), 0.0, 1.0, 1)?;
        let q = Frozen::new(w.clone(), true)?;
        assert!(matches!(q, Frozen::Quantized(_)));
        assert!(q.bytes() * 3 < w.elem_count() * 4, "{} bytes", q.bytes());
        let x = Var::from_tensor(&uniform((2, 3, 64), 0.0, 1.0, 2)?)?;
        let y8 = q.matmul_t(x.as_tensor())?;
        let y = x.as_tensor().broadcast_matmul(&w.t()?)?;
        // Q8_0 rounds each weight to 1/254 of its block's largest (and candle's kernel the
        // input too): well under 2% of the output's scale.
        let rel = relative_error(&y8, &y)?;
        assert!(rel < 0.02, "relative error {rel}");
        let g8 = y8.sum_all()?.backward()?;
        let g = y.sum_all()?.backward()?;
        let (a, b) = (g8.get(x.as_tensor()), g.get(x.as_tensor()));
        let (a, b) = (a.expect("input gradient"), b.expect("input gradient"));
        let rel = relative_error(a, b)?;
        assert!(rel < 0.02, "gradient relative error {rel}");
        // Rows that do not split into 32-wide blocks stay in f32.
        assert!(matches!(
            Frozen::new(Tensor::zeros((4, 48), candle_core::DType::F32, &dev)?, true)?,
            Frozen::F32(_)
        ));
        Ok(())
    }

    /// Q8_0 kept in the VNNI kernels' tile layout alone (the patched candle-core's
    /// `into_cpu_packed`) gives the same weights, products and input gradients, bit for bit,
    /// as the blocks candle repacks on the side; and it holds one copy, not two.
    #[test]
    fn q8_0_in_the_tile_layout_alone_matches_the_blocks_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        // [n, k] with n a multiple of 16 and k of 256: the shapes the tiles take.
        let w = uniform((48, 512), -1.0, 1.0, 3)?;
        let blocks = Frozen::Quantized(Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?));
        let tiles = Frozen::new(w.clone(), true)?;
        let (Frozen::Quantized(b), Frozen::Quantized(t)) = (&blocks, &tiles) else {
            panic!("both quantized");
        };
        // Whether this machine's kernels read tiles (AVX-512-VNNI or AVX-VNNI): then only
        // the tile layout is held, and it refuses to hand out GGML block bytes.
        #[cfg(target_arch = "x86_64")]
        let vnni =
            std::is_x86_feature_detected!("avx512vnni") || std::is_x86_feature_detected!("avxvnni");
        #[cfg(not(target_arch = "x86_64"))]
        let vnni = false;
        assert_eq!(
            t.data().is_err(),
            vnni,
            "tiles alone exactly on VNNI machines"
        );
        assert_eq!(b.storage_size_in_bytes(), t.storage_size_in_bytes());
        assert_eq!((t.dtype(), t.shape().dims()), (b.dtype(), b.shape().dims()));

        let same = |x: &Tensor, y: &Tensor| -> Result<()> {
            let (x, y) = (
                x.flatten_all()?.to_vec1::<f32>()?,
                y.flatten_all()?.to_vec1::<f32>()?,
            );
            assert_eq!(x.len(), y.len());
            let differ = x.iter().zip(&y).filter(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(differ.count(), 0, "bit-identical");
            Ok(())
        };
        same(&b.dequantize(&dev)?, &t.dequantize(&dev)?)?;
        // 5 rows: the kernels' 4-row tiles and a 1-row tail. candle's own product (which
        // repacks the blocks into a cached copy of the same tiles) gives the same bits.
        let x = Var::from_tensor(&uniform((5, 512), -1.0, 1.0, 4)?)?;
        let product = |q: &QTensor| x.as_tensor().apply_op1_no_bwd(q);
        same(&product(b)?, &product(t)?)?;
        // f16 inputs take candle's block kernel: the tiles unpack to the same blocks.
        let half = x.as_tensor().to_dtype(candle_core::DType::F16)?;
        let product_f16 = |q: &QTensor| half.apply_op1_no_bwd(q)?.to_dtype(candle_core::DType::F32);
        same(&product_f16(b)?, &product_f16(t)?)?;
        // Through the layer: without tiles Q8_0 runs as a dequantized copy and gemm (f32
        // inputs), with them as int8 products: within Q8_0's rounding of the input.
        let (yb, yt) = (
            blocks.matmul_t(x.as_tensor())?,
            tiles.matmul_t(x.as_tensor())?,
        );
        let rel = relative_error(&yb, &yt)?;
        assert!(rel < 0.02, "relative error {rel}");
        let (gb, gt) = (yb.sum_all()?.backward()?, yt.sum_all()?.backward()?);
        let grad = |g: &candle_core::backprop::GradStore| {
            g.get(x.as_tensor())
                .cloned()
                .ok_or(candle_core::Error::Msg("no gradient".into()))
        };
        same(&grad(&gb)?, &grad(&gt)?)?;
        let ids = Tensor::new(&[0u32, 47, 16, 15], &dev)?;
        same(&b.embedding(&ids)?, &t.embedding(&ids)?)?;
        Ok(())
    }

    /// The fused layer against its composed form, output and the gradients of x, A and B,
    /// for f32 and 8-bit frozen weights, with a bias, with and without dropout (the same
    /// seeded mask on both sides).
    #[test]
    fn the_fused_lora_layer_matches_its_composed_form() -> Result<()> {
        for (use_8bit, dropout) in [
            (false, None),
            (false, Some((0.3, 9))),
            (true, Some((0.1, 4))),
        ] {
            let layer = LoraLinear {
                weight: Frozen::new(uniform((6, 64), 0.0, 1.0, 1)?, use_8bit)?,
                bias: Some(uniform(6, 0.0, 1.0, 2)?),
                adapter: Some(Adapter {
                    a: Var::from_tensor(&uniform((4, 64), 0.0, 1.0, 3)?)?
                        .as_tensor()
                        .clone(),
                    b: Var::from_tensor(&uniform((6, 4), 0.0, 1.0, 4)?)?
                        .as_tensor()
                        .clone(),
                    scale: 2.0,
                    dropout: 0.0,
                }),
            };
            let adapter = layer.adapter.as_ref().expect("adapter");
            let x = Var::from_tensor(&uniform((2, 5, 64), 0.0, 1.0, 5)?)?;
            let r = uniform((2, 5, 6), 0.0, 1.0, 6)?;
            let op = LoraOp {
                weight: layer.weight.clone(),
                bias: Some(uniform(6, 0.0, 1.0, 2)?.to_vec1::<f32>()?),
                scale: 2.0,
                mask: dropout.map(|(p, seed)| Mask::new(p, seed)).transpose()?,
            };
            let fused = x.as_tensor().apply_op3(&adapter.a, &adapter.b, op)?;
            let composed = layer.composed(x.as_tensor(), adapter, dropout)?;
            let error = relative_error(&fused, &composed)?;
            // 8-bit weights: candle's Q8 kernel also rounds the input to 8 bits in the
            // composed form's matmul_t as in the op's; the same kernel on both sides.
            assert!(
                error < 1e-5,
                "8-bit {use_8bit}, dropout {dropout:?}: {error}"
            );
            let gf = (&fused * &r)?.sum_all()?.backward()?;
            let gc = (&composed * &r)?.sum_all()?.backward()?;
            for (name, t) in [("x", x.as_tensor()), ("A", &adapter.a), ("B", &adapter.b)] {
                let (a, b) = (
                    gf.get(t).expect("fused gradient"),
                    gc.get(t).expect("gradient"),
                );
                let error = relative_error(a, b)?;
                assert!(error < 1e-5, "d{name} (8-bit {use_8bit}): {error}");
            }
        }
        Ok(())
    }

    #[test]
    fn settings_are_checked() {
        let mut s = LoraSettings {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        };
        assert!(s.check().is_ok());
        assert_eq!(s.scale(), 2.0);
        s.target_modules.push("qkv".into());
        let err = s.check().unwrap_err();
        assert!(err.contains("`qkv`") && err.contains("q_proj"), "{err}");
    }
}
