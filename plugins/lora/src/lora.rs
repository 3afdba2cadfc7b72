//! Linear layers with frozen base weights and optional LoRA adapters:
//! `y = x Wᵀ + b + (alpha / r) · dropout(x) Aᵀ Bᵀ`, with `A` (`r × in`, random) and `B`
//! (`out × r`, zeros) the only trainable parts.
//!
//! The frozen product runs through [`FrozenMatMul`], a custom op whose backward pass returns
//! only the input's gradient: candle's own matmul backward would also compute (and then
//! drop) a full gradient for every frozen weight, the largest cost of a LoRA step.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor};
use clarity_sdk::ModelSpec;

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

/// `x Wᵀ` for a frozen `W` (`[out, in]`): forward as a plain product, backward to `x` only.
#[derive(Debug, Clone)]
pub struct FrozenMatMul {
    weight: Tensor,
}

impl CustomOp1 for FrozenMatMul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (w_storage, w_layout) = self.weight.storage_and_layout();
        let Storage::Cpu(w) = &*w_storage else {
            candle_core::bail!("frozen-matmul: the weight is not on the CPU");
        };
        if !layout.is_contiguous() {
            candle_core::bail!("frozen-matmul: the input must be contiguous");
        }
        let dims = layout.shape().dims();
        let (out, inner) = self.weight.dims2()?;
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

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.broadcast_matmul(&self.weight)?))
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
    pub weight: Tensor,
    /// `[out]`, frozen.
    pub bias: Option<Tensor>,
    /// The adapter, when this module is a target.
    pub adapter: Option<Adapter>,
}

impl LoraLinear {
    /// `x` (`[.., in]`) → `[.., out]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = x.contiguous()?;
        let mut y = if x.device().is_cpu() {
            x.apply_op1(FrozenMatMul {
                weight: self.weight.clone(),
            })?
        } else {
            x.broadcast_matmul(&self.weight.t()?)?
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(adapter) = &self.adapter {
            let input = if train && adapter.dropout > 0.0 {
                candle_nn::ops::dropout(&x, adapter.dropout as f32)?
            } else {
                x.clone()
            };
            let low = input.broadcast_matmul(&adapter.a.t()?)?;
            let update = low.broadcast_matmul(&adapter.b.t()?)?;
            y = (y + (update * adapter.scale)?)?;
        }
        Ok(y)
    }

    /// `W + (alpha / r) B A`: the weight with the adapter folded in (for export).
    pub fn merged_weight(&self) -> Result<Tensor> {
        match &self.adapter {
            None => Ok(self.weight.clone()),
            Some(adapter) => {
                let delta = adapter.b.matmul(&adapter.a)?;
                &self.weight + (delta * adapter.scale)?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn frozen_matmul_matches_matmul_and_sends_gradient_to_the_input_only() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (5, 3), &dev)?;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 3), &dev)?)?;
        let frozen = x
            .as_tensor()
            .apply_op1(FrozenMatMul { weight: w.clone() })?;
        let plain = x.as_tensor().broadcast_matmul(&w.t()?)?;
        let diff = (&frozen - &plain)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        let g_frozen = frozen.sum_all()?.backward()?;
        let g_plain = plain.sum_all()?.backward()?;
        let a = g_frozen.get(x.as_tensor()).expect("input gradient");
        let b = g_plain.get(x.as_tensor()).expect("input gradient");
        let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }

    #[test]
    fn merging_folds_the_adapter_into_the_weight() -> Result<()> {
        let dev = Device::Cpu;
        let layer = LoraLinear {
            weight: Tensor::randn(0f32, 1.0, (4, 3), &dev)?,
            bias: Some(Tensor::randn(0f32, 1.0, 4, &dev)?),
            adapter: Some(Adapter {
                a: Tensor::randn(0f32, 1.0, (2, 3), &dev)?,
                b: Tensor::randn(0f32, 1.0, (4, 2), &dev)?,
                scale: 2.0,
                dropout: 0.1,
            }),
        };
        let x = Tensor::randn(0f32, 1.0, (2, 5, 3), &dev)?;
        let merged = LoraLinear {
            weight: layer.merged_weight()?,
            bias: layer.bias.clone(),
            adapter: None,
        };
        let diff = (layer.forward(&x, false)? - merged.forward(&x, false)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
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
