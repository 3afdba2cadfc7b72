//! AdamW over named variables, with gradient clipping and a state that checkpoints.
//!
//! candle's own `AdamW` keeps its moments private (a resumed run would restart them from
//! zero) and decays every variable. This one follows PyTorch's `AdamW`, exempts biases and
//! norm weights from weight decay (as transformers' Trainer does), and saves its moments.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use std::collections::HashMap;

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
    m: Tensor,
    v: Tensor,
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
                let zeros = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    decay: !no_decay(&name),
                    name,
                    m: zeros.clone(),
                    v: zeros,
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

    /// One update with learning rate `lr`, the gradients scaled by `scale` first (for
    /// clipping and accumulation).
    pub fn step(&mut self, grads: &Grads, lr: f64, scale: f64) -> Result<()> {
        self.t += 1;
        let c = self.config;
        let t = self.t as i32;
        let correct1 = 1.0 - c.beta1.powi(t);
        let correct2 = 1.0 - c.beta2.powi(t);
        for (s, g) in self.slots.iter_mut().zip(&grads.0) {
            let Some(g) = g else {
                continue;
            };
            let g = if scale == 1.0 {
                g.clone()
            } else {
                (g * scale)?
            };
            let theta = s.var.as_tensor();
            let m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            let v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / correct1)? / ((&v / correct2)?.sqrt()? + c.eps)?)?;
            let decayed = if s.decay && c.weight_decay > 0.0 {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta.clone()
            };
            s.var.set(&(decayed - (update * lr)?)?)?;
            s.m = m;
            s.v = v;
        }
        Ok(())
    }

    /// The moments by name (`m.NAME`, `v.NAME`) and the update count, for a checkpoint.
    pub fn state(&self) -> (HashMap<String, Tensor>, u64) {
        let mut tensors = HashMap::new();
        for s in &self.slots {
            tensors.insert(format!("m.{}", s.name), s.m.clone());
            tensors.insert(format!("v.{}", s.name), s.v.clone());
        }
        (tensors, self.t)
    }

    /// Restore moments saved by [`AdamW::state`]. Every variable must be present with its
    /// shape: a checkpoint of another model is an error, not a silent restart.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        for s in &mut self.slots {
            let get = |key: String| -> Result<Tensor> {
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
                found.to_device(s.var.device())?.to_dtype(s.var.dtype())
            };
            s.m = get(format!("m.{}", s.name))?;
            s.v = get(format!("v.{}", s.name))?;
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
        opt.step(&grads, 0.01, 1.0)?;
        // m̂ = 3, v̂ = 9 → update 1; w = 1 * (1 - 0.01*0.1) - 0.01 * 1
        let expected = 1.0 * (1.0 - 0.001) - 0.01 * 3.0 / (3.0 + 1e-8);
        let got = w.as_tensor().to_vec1::<f32>()?[0] as f64;
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
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
        opt.step(&grads, 0.1, 0.5)?;
        let (state, t) = opt.state();
        let mut fresh = AdamW::new(vec![("w".into(), w.clone())], AdamWConfig::default())?;
        fresh.restore(&state, t)?;
        assert_eq!(fresh.t, 1);
        assert_eq!(
            fresh.slots[0].m.to_vec1::<f32>()?,
            opt.slots[0].m.to_vec1::<f32>()?
        );
        let mut other = AdamW::new(
            vec![("x".into(), Var::new(&[0.0f32], &Device::Cpu)?)],
            AdamWConfig::default(),
        )?;
        assert!(other.restore(&state, t).is_err());
        Ok(())
    }
}
