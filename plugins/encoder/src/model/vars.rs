//! Reading the model's parts out of the variable map by their checkpoint names.

use super::Norm;
use candle_core::{Result, Tensor};
use candle_nn::{Linear, VarMap};

/// The variables of a [`VarMap`], looked up by name.
pub(super) struct Vars<'a> {
    varmap: &'a VarMap,
    /// LayerNorm epsilon of every norm.
    eps: f64,
}

impl<'a> Vars<'a> {
    pub(super) fn new(varmap: &'a VarMap, eps: f64) -> Self {
        Self { varmap, eps }
    }

    /// The variable `name` (sharing its storage, so training updates it).
    pub(super) fn tensor(&self, name: &str) -> Result<Tensor> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        data.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable `{name}`")))
    }

    /// `{name}.weight` and `{name}.bias`.
    pub(super) fn linear(&self, name: &str) -> Result<Linear> {
        Ok(Linear::new(
            self.tensor(&format!("{name}.weight"))?,
            Some(self.tensor(&format!("{name}.bias"))?),
        ))
    }

    /// `{name}.weight` and `{name}.bias` of a LayerNorm.
    pub(super) fn norm(&self, name: &str) -> Result<Norm> {
        Ok(Norm {
            weight: self.tensor(&format!("{name}.weight"))?,
            bias: self.tensor(&format!("{name}.bias"))?,
            eps: self.eps,
        })
    }
}
