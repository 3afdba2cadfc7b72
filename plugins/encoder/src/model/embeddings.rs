//! Token, position and segment embeddings, summed and normalised.

use super::vars::Vars;
use super::Norm;
use crate::arch::{Arch, Family};
use crate::fused;
use crate::names;
use candle_core::{DType, Result, Tensor};
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::kernels::dropout::Dropout;

/// How tokens get their position ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionIds {
    /// 0, 1, 2, … (BERT, DistilBERT).
    FromZero,
    /// Real tokens count from `pad + 1`, padding sits at `pad` (RoBERTa).
    AfterPadding {
        /// The padding token's id.
        pad: usize,
    },
}

/// The embedding tables and the norm after their sum.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// `[vocab, hidden]`.
    pub word: Tensor,
    /// `[max_positions, hidden]`.
    pub position: Tensor,
    /// `[type_vocab, hidden]`, when the model has segments.
    pub segment: Option<Tensor>,
    /// Whether segment ids pick the segment rows; if not, the table's one row (RoBERTa) is
    /// added to every token.
    pub segment_ids: bool,
    /// LayerNorm after the sum.
    pub norm: Norm,
    /// How positions are numbered.
    pub position_ids: PositionIds,
    /// Dropout after the norm.
    pub dropout: f32,
}

impl Embeddings {
    /// The tables of `arch`.
    pub(super) fn load(vars: &Vars, arch: &Arch) -> Result<Self> {
        let (word, position, segment, norm) = names::embeddings(arch);
        Ok(Self {
            word: vars.tensor(&format!("{word}.weight"))?,
            position: vars.tensor(&format!("{position}.weight"))?,
            segment: segment
                .map(|s| vars.tensor(&format!("{s}.weight")))
                .transpose()?,
            segment_ids: arch.uses_token_type_ids(),
            norm: vars.norm(&norm)?,
            position_ids: match arch.family {
                Family::Roberta => PositionIds::AfterPadding {
                    pad: arch.pad_token_id,
                },
                Family::Bert | Family::DistilBert => PositionIds::FromZero,
            },
            dropout: arch.hidden_dropout,
        })
    }

    /// `[b, s, hidden]`: the summed embeddings of `batch`, normalised, with dropout.
    pub fn forward(&self, batch: &TensorBatch, dropout: Dropout<'_>) -> Result<Tensor> {
        let (b, s) = batch.input_ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let lookup = |table: &Tensor, ids: &Tensor| -> Result<Tensor> {
            fused::embedding(table, ids)?.reshape((b, s, hidden))
        };
        let words = lookup(&self.word, &batch.input_ids)?;
        let positions = lookup(&self.position, &self.positions(batch)?)?;
        let mut x = (words + positions)?;
        match &self.segment {
            // One segment row (RoBERTa): the same vector for every token.
            Some(table) if !self.segment_ids => {
                x = x.broadcast_add(&table.get(0)?)?;
            }
            Some(table) => {
                x = (x + lookup(table, &batch.token_type_ids)?)?;
            }
            None => {}
        }
        dropout.apply(&self.norm.forward(&x)?, self.dropout)
    }

    /// `[b, s]` position ids (see [`PositionIds`]).
    fn positions(&self, batch: &TensorBatch) -> Result<Tensor> {
        let (b, s) = batch.input_ids.dims2()?;
        match self.position_ids {
            PositionIds::AfterPadding { pad } => {
                let mask = &batch.attention_mask;
                let counted = (mask.cumsum(1)? * mask)?;
                (counted + pad as f64)?.to_dtype(DType::U32)
            }
            PositionIds::FromZero => Tensor::arange(0u32, s as u32, self.word.device())?
                .unsqueeze(0)?
                .broadcast_as((b, s))?
                .contiguous(),
        }
    }
}
