//! The classification head over the pooled hidden state (the first token's, or the mean
//! over real tokens), as each family's `*ForSequenceClassification` has it.

use super::project;
use super::vars::Vars;
use crate::arch::{Arch, Family};
use crate::names;
use candle_core::{Result, Tensor};
use candle_nn::Linear;
use clarity_runtime::kernels::dropout::Dropout;

/// Dense layer, activation and output projection, with dropout where the family puts it.
#[derive(Debug, Clone)]
pub struct Head {
    /// hidden → hidden (BERT's pooler, RoBERTa's `classifier.dense`, DistilBERT's
    /// `pre_classifier`).
    pub dense: Linear,
    /// hidden → labels.
    pub output: Linear,
    /// Which head: it decides the activation and where dropout goes.
    pub family: Family,
    /// Dropout rate (`classifier_dropout`).
    pub dropout: f32,
}

impl Head {
    /// The head's parameters for `arch`'s family.
    pub(super) fn load(vars: &Vars, arch: &Arch) -> Result<Self> {
        let (dense, output) = names::head(arch.family);
        Ok(Self {
            dense: vars.linear(dense)?,
            output: vars.linear(output)?,
            family: arch.family,
            dropout: arch.classifier_dropout,
        })
    }

    /// Logits `[b, labels]` from the pooled hidden state `[b, hidden]`.
    pub fn forward(&self, pooled: &Tensor, dropout: Dropout<'_>) -> Result<Tensor> {
        let p = self.dropout;
        match self.family {
            // BERT's pooler: tanh(dense(first)); dropout before the classifier.
            Family::Bert => {
                let hidden = project(&self.dense, pooled)?.tanh()?;
                project(&self.output, &dropout.apply(&hidden, p)?)
            }
            // RobertaClassificationHead: dropout on both sides of the dense layer.
            Family::Roberta => {
                let hidden = project(&self.dense, &dropout.apply(pooled, p)?)?.tanh()?;
                project(&self.output, &dropout.apply(&hidden, p)?)
            }
            Family::DistilBert => {
                let hidden = project(&self.dense, pooled)?.relu()?;
                project(&self.output, &dropout.apply(&hidden, p)?)
            }
        }
    }
}
