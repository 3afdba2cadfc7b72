//! Gradient checkpointing per decoder block (`lora_config.gradient_checkpointing: true`).
//!
//! candle keeps every intermediate tensor of the forward pass alive until the backward pass
//! is done (each result holds its inputs). A checkpointed block runs forward on detached
//! tensors, so nothing inside it is kept, and enters the graph as one op whose input is the
//! block's input. Its backward pass runs the block's forward again, tracked, from that input,
//! with the same dropout masks (drawn from a seed fixed at the first pass), and backpropagates
//! the incoming gradient through it: the input's gradient goes on through the outer graph,
//! the adapters' gradients go to a [`GradSink`] that the model adds to the outer pass's
//! gradients ([`clarity_runtime::batch::TrainableModel::backward`]). Memory: one block's
//! activations plus each block's input, instead of every block's activations; time: one more
//! forward pass per step.

use super::Block;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, Var};
use clarity_runtime::cpu_values::values;
use clarity_runtime::kernels::dropout::{Dropout, DropoutSeeds};
use std::sync::{Arc, Mutex};

/// Gradients of variables computed inside checkpointed blocks' backward passes, waiting to
/// join the outer backward pass's.
#[derive(Debug, Default)]
pub struct GradSink(Mutex<Vec<(Tensor, Tensor)>>);

impl GradSink {
    fn push(&self, var: &Tensor, grad: Tensor) -> Result<()> {
        self.lock()?.push((var.clone(), grad));
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<(Tensor, Tensor)>>> {
        self.0
            .lock()
            .map_err(|_| candle_core::Error::Msg("gradient sink lock poisoned".into()))
    }

    /// Add every collected gradient into `store` (summed with one already there).
    pub fn drain_into(&self, store: &mut GradStore) -> Result<()> {
        for (var, grad) in self.lock()?.drain(..) {
            let sum = match store.get(&var) {
                Some(existing) => (existing + grad)?,
                None => grad,
            };
            store.insert(&var, sum);
        }
        Ok(())
    }

    /// Forget collected gradients (a forward pass without a backward one, e.g. after an
    /// error).
    pub fn clear(&self) -> Result<()> {
        self.lock()?.clear();
        Ok(())
    }
}

/// `block(x)` in training, checkpointed (see the module docs; `rotary` and `key_bias` as
/// [`Block::forward`] takes them). `seed` fixes the block's dropout masks for both passes.
pub fn checkpointed(
    block: &Block,
    x: &Tensor,
    rotary: Option<&(Tensor, Tensor)>,
    key_bias: &Tensor,
    seed: u64,
    sink: &Arc<GradSink>,
) -> Result<Tensor> {
    let seeds = DropoutSeeds::new(seed);
    let output =
        block
            .detached()
            .forward(&x.detach(), rotary, key_bias, Dropout::new(true, &seeds))?;
    x.apply_op1(Checkpoint {
        block: block.clone(),
        rotary: rotary.cloned(),
        key_bias: key_bias.clone(),
        seed,
        output: Mutex::new(Some(output)),
        sink: sink.clone(),
    })
}

struct Checkpoint {
    block: Block,
    rotary: Option<(Tensor, Tensor)>,
    key_bias: Tensor,
    seed: u64,
    /// The first pass's output, handed over once by `cpu_fwd` (not kept in the graph).
    output: Mutex<Option<Tensor>>,
    sink: Arc<GradSink>,
}

impl CustomOp1 for Checkpoint {
    fn name(&self) -> &'static str {
        "clarity-checkpointed-block"
    }

    fn cpu_fwd(&self, _storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let output = self
            .output
            .lock()
            .map_err(|_| candle_core::Error::Msg("checkpoint lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("checkpointed block ran twice".into()))?;
        if output.dims() != layout.dims() {
            candle_core::bail!("checkpointed block changed the shape {:?}", layout.dims());
        }
        let copy = values(&output)?.to_vec();
        Ok((CpuStorage::F32(copy), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let input = Var::from_tensor(&x.detach())?;
        let seeds = DropoutSeeds::new(self.seed);
        let output = self.block.forward(
            input.as_tensor(),
            self.rotary.as_ref(),
            &self.key_bias,
            Dropout::new(true, &seeds),
        )?;
        let grads = (output * grad.detach())?.sum_all()?.backward()?;
        for var in self.block.adapter_variables() {
            if let Some(g) = grads.get(var) {
                self.sink.push(var, g.clone())?;
            }
        }
        Ok(grads.get(input.as_tensor()).cloned())
    }
}
