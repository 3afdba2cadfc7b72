//! AdamW over named variables, with gradient clipping and a state that checkpoints.
//!
//! candle's own `AdamW` keeps its moments private (a resumed run would restart them from
//! zero) and decays every variable. This one follows PyTorch's `AdamW`, exempts biases and
//! norm weights from weight decay (as transformers' Trainer does), and saves its moments.

use crate::cpu_values::values;
use crate::kernels::fastmath::flush_subnormal;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Result, Tensor, Var};
use multiversion::multiversion;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Mutex;

/// Elements per parallel task of the host update (large enough to amortize a task, small
/// enough that the embedding table splits across every core).
const CHUNK: usize = 1 << 15;

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay, for the variables that take it.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Moment,
    v: Moment,
}

/// A moment estimate: in host memory for CPU f32 variables (updated in place), else a tensor.
enum Moment {
    Host(Vec<f32>),
    Device(Tensor),
}

impl Moment {
    fn zeros(var: &Var) -> Result<Self> {
        if var.device().is_cpu() && var.dtype() == DType::F32 {
            Ok(Moment::Host(vec![0.0; var.elem_count()]))
        } else {
            Ok(Moment::Device(var.as_tensor().zeros_like()?))
        }
    }

    fn is_host(&self) -> bool {
        matches!(self, Moment::Host(_))
    }

    fn to_tensor(&self, var: &Var) -> Result<Tensor> {
        match self {
            Moment::Host(values) => Tensor::from_slice(values, var.shape(), var.device()),
            Moment::Device(t) => Ok(t.clone()),
        }
    }

    fn load(&mut self, t: &Tensor, var: &Var) -> Result<()> {
        let t = t.to_device(var.device())?.to_dtype(var.dtype())?;
        *self = match self {
            Moment::Host(_) => Moment::Host(t.flatten_all()?.to_vec1::<f32>()?),
            Moment::Device(_) => Moment::Device(t),
        };
        Ok(())
    }
}

/// The constants of one update.
struct Step {
    lr: f64,
    scale: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    correct1: f64,
    correct2: f64,
}

impl Step {
    /// PyTorch's AdamW on plain slices, in one pass, split over the cores.
    fn apply_host(&self, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], decay: f64) {
        let k = HostConstants {
            b1: self.beta1 as f32,
            b2: self.beta2 as f32,
            scale: self.scale as f32,
            keep: (1.0 - self.lr * decay) as f32,
            lr1: (self.lr / self.correct1) as f32,
            inv_c2: (1.0 / self.correct2) as f32,
            eps: self.eps as f32,
        };
        w.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((w, g), m), v)| adamw_chunk(&k, w, g, m, v));
    }

    /// The same with tensor operations (accelerators).
    fn apply_tensor(
        &self,
        theta: &Tensor,
        g: &Tensor,
        m: &Tensor,
        v: &Tensor,
        decay: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let g = (g * self.scale)?;
        let m = ((m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
        let v = ((v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
        let update = ((&m / self.correct1)? / ((&v / self.correct2)?.sqrt()? + self.eps)?)?;
        let theta = ((theta * (1.0 - self.lr * decay))? - (update * self.lr)?)?;
        Ok((theta, m, v))
    }
}

/// One update's constants in f32, for the host loop.
struct HostConstants {
    b1: f32,
    b2: f32,
    scale: f32,
    keep: f32,
    lr1: f32,
    inv_c2: f32,
    eps: f32,
}

/// The AdamW update of one chunk (compiled for AVX2+FMA too, picked at run time).
///
/// The moments are flushed to 0 once subnormal: a row whose gradient stops (an embedding row
/// of a token seen once) has its first moment decay by `beta1` a step into the subnormals
/// within a few hundred steps, where it would stay for ~150 more, each pass over it slowed
/// several times on Intel CPUs. Its contribution to the update is below 1e-30 either way.
#[multiversion(targets("x86_64+avx2+fma", "aarch64+neon"))]
fn adamw_chunk(k: &HostConstants, w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * k.scale;
        *m = flush_subnormal(k.b1 * *m + (1.0 - k.b1) * g);
        *v = flush_subnormal(k.b2 * *v + (1.0 - k.b2) * g * g);
        *w = *w * k.keep - k.lr1 * *m / ((*v * k.inv_c2).sqrt() + k.eps);
    }
}

/// Σ x² of a slice: each chunk in parallel, the chunks' sums added in order, so the result
/// (and the clipping it decides) is the same bits on every run whatever the threads did.
fn sum_of_squares(x: &[f32]) -> f64 {
    let partial: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>())
        .collect();
    partial.iter().sum()
}

/// AdamW on a host variable's own storage, in place (no copy of the weights out and back).
struct HostUpdate<'a> {
    step: &'a Step,
    g: &'a [f32],
    moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
    decay: f64,
}

impl InplaceOp1 for HostUpdate<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("adamw: the variable is not f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("adamw: the variable is not contiguous");
        };
        let mut moments = self
            .moments
            .lock()
            .map_err(|_| candle_core::Error::Msg("adamw: moments poisoned".into()))?;
        let (m, v) = &mut *moments;
        let w = &mut data[start..end];
        if w.len() != self.g.len() || m.len() != w.len() || v.len() != w.len() {
            candle_core::bail!(
                "adamw: {} weights, {} gradients, {}/{} moments",
                w.len(),
                self.g.len(),
                m.len(),
                v.len()
            );
        }
        self.step.apply_host(w, self.g, m, v, self.decay);
        Ok(())
    }
}

/// Gradients of the optimizer's variables, in its order (`None`: no gradient reached it).
#[derive(Debug, Clone)]
pub struct Grads(Vec<Option<Tensor>>);

impl Grads {
    /// Add `other` (the next micro-batch of an accumulated step).
    pub fn accumulate(&mut self, other: Grads) -> Result<()> {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = match (mine.take(), theirs) {
                (Some(a), Some(b)) => Some((a + b)?),
                (a, b) => a.or(b),
            };
        }
        Ok(())
    }

    /// The global L2 norm.
    pub fn norm(&self) -> Result<f64> {
        let mut sum = 0f64;
        for g in self.0.iter().flatten() {
            sum += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
        Ok(sum.sqrt())
    }
}

/// The optimizer.
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamWConfig,
    /// Updates applied so far (for bias correction).
    t: u64,
}

/// Whether a variable is exempt from weight decay: biases and normalisation weights.
pub fn no_decay(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with("bias") || lower.contains("norm") || lower.contains("ln_")
}

impl AdamW {
    /// An optimizer over `vars` (name, variable), in the given order.
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    decay: !no_decay(&name),
                    name,
                    m: Moment::zeros(&var)?,
                    v: Moment::zeros(&var)?,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            config,
            t: 0,
        })
    }

    /// Variables optimized.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is nothing to optimize.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The gradients of our variables out of a backward pass (the rest of the store, the
    /// intermediate nodes' gradients, is dropped here).
    pub fn collect(&self, mut store: GradStore) -> Grads {
        Grads(
            self.slots
                .iter()
                .map(|s| store.remove(s.var.as_tensor()))
                .collect(),
        )
    }

    /// Names of the variables that `grads` holds no gradient for (cut from the graph).
    pub fn missing_gradients(&self, grads: &Grads) -> Vec<String> {
        self.slots
            .iter()
            .zip(&grads.0)
            .filter(|(_, g)| g.is_none())
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    /// One update with learning rate `lr`. The gradients are scaled by `scale` (1 / the
    /// micro-batches accumulated), then clipped to a global norm of `max_norm`. Returns the
    /// norm before clipping.
    pub fn step(
        &mut self,
        grads: &Grads,
        lr: f64,
        scale: f64,
        max_norm: Option<f64>,
    ) -> Result<f64> {
        // Host-memory variables: the gradients are read where backward left them, the norm
        // and the update are one parallel pass each, and the weights change in place (the
        // copies out and back were a tenth of a MiniLM step).
        let mut sum_sq = 0f64;
        for (s, g) in self.slots.iter().zip(&grads.0) {
            match g {
                Some(g) if s.m.is_host() => sum_sq += sum_of_squares(&values(g)?),
                Some(g) => sum_sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?),
                None => {}
            }
        }
        let norm = sum_sq.sqrt() * scale;
        let clip = match max_norm {
            Some(max) if max > 0.0 && norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        let scale = scale * clip;
        self.t += 1;
        let c = self.config;
        let t = self.t as i32;
        let step = Step {
            lr,
            scale,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            correct1: 1.0 - c.beta1.powi(t),
            correct2: 1.0 - c.beta2.powi(t),
        };
        for (s, g) in self.slots.iter_mut().zip(&grads.0) {
            let Some(g) = g else {
                continue;
            };
            let decay = if s.decay { c.weight_decay } else { 0.0 };
            match (&mut s.m, &mut s.v) {
                (Moment::Host(m), Moment::Host(v)) => {
                    let g = values(g)?;
                    let update = HostUpdate {
                        step: &step,
                        g: &g,
                        moments: Mutex::new((m.as_mut_slice(), v.as_mut_slice())),
                        decay,
                    };
                    s.var.as_tensor().inplace_op1(&update)?;
                }
                (Moment::Device(m), Moment::Device(v)) => {
                    let (theta, new_m, new_v) =
                        step.apply_tensor(s.var.as_tensor(), g, m, v, decay)?;
                    s.var.set(&theta)?;
                    *m = new_m;
                    *v = new_v;
                }
                _ => {
                    return Err(candle_core::Error::Msg(
                        "optimizer state out of step".into(),
                    ))
                }
            }
        }
        Ok(norm)
    }

    /// The moments by name (`m.NAME`, `v.NAME`) and the update count, for a checkpoint.
    pub fn state(&self) -> Result<(HashMap<String, Tensor>, u64)> {
        let mut tensors = HashMap::new();
        for s in &self.slots {
            tensors.insert(format!("m.{}", s.name), s.m.to_tensor(&s.var)?);
            tensors.insert(format!("v.{}", s.name), s.v.to_tensor(&s.var)?);
        }
        Ok((tensors, self.t))
    }

    /// Restore moments saved by [`AdamW::state`]. Every variable must be present with its
    /// shape: a checkpoint of another model is an error, not a silent restart.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for s in &mut self.slots {
            for (prefix, moment) in [("m", &mut s.m), ("v", &mut s.v)] {
                let key = format!("{prefix}.{}", s.name);
                let found = tensors.get(&key).ok_or_else(|| {
                    candle_core::Error::Msg(format!("no `{key}` in the optimizer state"))
                })?;
                if found.dims() != s.var.dims() {
                    return Err(candle_core::Error::Msg(format!(
                        "`{key}` has shape {:?}, the variable {:?}",
                        found.dims(),
                        s.var.dims()
                    )));
                }
                moment.load(found, &s.var)?;
            }
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A step with lr 0.01 and AdamW's usual betas and eps.
    fn step(scale: f64, correct1: f64, correct2: f64) -> Step {
        Step {
            lr: 0.01,
            scale,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            correct1,
            correct2,
        }
    }

    /// One step by hand: PyTorch's AdamW on a single scalar.
    #[test]
    fn one_step_matches_pytorch_formula() -> Result<()> {
        let w = Var::new(&[1.0f32], &Device::Cpu)?;
        let config = AdamWConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], config)?;
        let loss = (w.as_tensor() * 3.0)?.sum_all()?; // d/dw = 3
        let grads = opt.collect(loss.backward()?);
        assert!(opt.missing_gradients(&grads).is_empty());
        opt.step(&grads, 0.01, 1.0, None)?;
        // m̂ = 3, v̂ = 9 → update 1; w = 1 * (1 - 0.01*0.1) - 0.01 * 1
        let expected = 1.0 * (1.0 - 0.001) - 0.01 * 3.0 / (3.0 + 1e-8);
        let got = w.as_tensor().to_vec1::<f32>()?[0] as f64;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        Ok(())
    }

    /// The host path (CPU) and the tensor path (accelerators) give the same update, with
    /// clipping.
    #[test]
    fn host_and_tensor_paths_agree() -> Result<()> {
        let step = step(0.3, 0.19, 0.002);
        let (w, g, m, v) = (
            vec![0.5f32, -1.0, 2.0],
            vec![0.1f32, -3.0, 0.7],
            vec![0.01f32, 0.2, -0.1],
            vec![0.001f32, 0.5, 0.02],
        );
        let t = |x: &[f32]| Tensor::new(x, &Device::Cpu);
        let (theta, tm, tv) = step.apply_tensor(&t(&w)?, &t(&g)?, &t(&m)?, &t(&v)?, 0.1)?;
        let (mut hw, mut hm, mut hv) = (w.clone(), m.clone(), v.clone());
        step.apply_host(&mut hw, &g, &mut hm, &mut hv, 0.1);
        for (a, b) in [(theta, hw), (tm, hm), (tv, hv)] {
            for (x, y) in a.to_vec1::<f32>()?.iter().zip(&b) {
                assert!((x - y).abs() < 1e-6, "{x} vs {y}");
            }
        }
        Ok(())
    }

    /// A moment decaying below the smallest normal f32 becomes 0, not a subnormal; normal
    /// ones are left as the formula gives them.
    #[test]
    fn moments_that_decay_below_the_normal_range_become_zero() {
        let step = step(1.0, 1.0, 1.0);
        let edge = f32::MIN_POSITIVE * 1.05;
        let (mut w, g) = (vec![0.5f32; 3], vec![0.0f32; 3]);
        let mut m = vec![edge, -edge, 1e-3];
        let mut v = vec![f32::MIN_POSITIVE * 1.0005, 1e-6, edge * 2.0];
        step.apply_host(&mut w, &g, &mut m, &mut v, 0.0);
        assert_eq!(m[..2], [0.0, 0.0]);
        assert!((m[2] - 9e-4).abs() < 1e-10, "{m:?}");
        assert_eq!(v[0], 0.0);
        assert!(v[1].is_normal() && v[2].is_normal(), "{v:?}");
    }

    /// A variable of several parallel chunks, updated in place by `step` twice, against the
    /// tensor formula run on a copy.
    #[test]
    fn a_large_variable_is_updated_in_place_as_the_formula_says() -> Result<()> {
        let n = 3 * CHUNK + 17;
        let init: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let c: Vec<f32> = (0..n)
            .map(|i| ((i * 104729) % 997) as f32 / 300.0 - 1.6)
            .collect();
        let c = Tensor::from_vec(c, n, &Device::Cpu)?;
        let w = Var::from_tensor(&Tensor::from_vec(init.clone(), n, &Device::Cpu)?)?;
        let config = AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], config)?;
        let (mut theta, mut m, mut v) = (
            Tensor::from_vec(init, n, &Device::Cpu)?,
            Tensor::zeros(n, DType::F32, &Device::Cpu)?,
            Tensor::zeros(n, DType::F32, &Device::Cpu)?,
        );
        for t in 1..=2 {
            let loss = (w.as_tensor() * &c)?.sum_all()?;
            let grads = opt.collect(loss.backward()?);
            let norm = opt.step(&grads, 0.01, 1.0, None)?;
            let expected_norm = f64::from(c.sqr()?.sum_all()?.to_scalar::<f32>()?).sqrt();
            assert!(
                (norm - expected_norm).abs() < 1e-3 * expected_norm,
                "{norm}"
            );
            let step = step(1.0, 1.0 - 0.9f64.powi(t), 1.0 - 0.999f64.powi(t));
            (theta, m, v) = step.apply_tensor(&theta, &c, &m, &v, 0.01)?;
        }
        let (ours, reference) = (w.as_tensor().to_vec1::<f32>()?, theta.to_vec1::<f32>()?);
        let worst = ours
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "max |in place - formula| = {worst}");
        Ok(())
    }

    #[test]
    fn clipping_returns_the_norm_and_bounds_the_update() -> Result<()> {
        let w = Var::new(&[0.0f32, 0.0], &Device::Cpu)?;
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default())?;
        // d/dw (3 w0 + 4 w1) = [3, 4], norm 5.
        let loss = (w.as_tensor() * &Tensor::new(&[3.0f32, 4.0], &Device::Cpu)?)?.sum_all()?;
        let grads = opt.collect(loss.backward()?);
        let norm = opt.step(&grads, 0.1, 1.0, Some(1.0))?;
        assert!((norm - 5.0).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn biases_and_norms_are_not_decayed() {
        assert!(no_decay(
            "encoder.layer.0.attention.output.LayerNorm.weight"
        ));
        assert!(no_decay("classifier.bias"));
        assert!(no_decay("h.0.ln_1.weight"));
        assert!(!no_decay("encoder.layer.0.attention.self.query.weight"));
    }

    #[test]
    fn state_round_trips_and_a_foreign_state_is_refused() -> Result<()> {
        let w = Var::new(&[1.0f32, 2.0], &Device::Cpu)?;
        let mut opt = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default())?;
        let mut grads = opt.collect(w.as_tensor().sqr()?.sum_all()?.backward()?);
        grads.accumulate(opt.collect(w.as_tensor().sum_all()?.backward()?))?;
        // d/dw (w² + w) = 2w + 1 = [3, 5]
        assert!((grads.norm()? - 34f64.sqrt()).abs() < 1e-5);
        opt.step(&grads, 0.1, 0.5, Some(1.0))?;
        let (state, t) = opt.state()?;
        let mut fresh = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default())?;
        fresh.restore(&state, t)?;
        assert_eq!(fresh.t, 1);
        let m = |o: &AdamW| o.slots[0].m.to_tensor(&o.slots[0].var)?.to_vec1::<f32>();
        assert_eq!(m(&fresh)?, m(&opt)?);
        let mut other = AdamW::new(
            vec![("x".into(), Var::new(&[0.0f32], &Device::Cpu)?)],
            AdamWConfig::default(),
        )?;
        assert!(other.restore(&state, t).is_err());
        Ok(())
    }
}
