//! Token batches as candle tensors, and the interface a trainable model offers the loop.

use crate::tokenize::Encoded;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarMap;

/// One batch on a device: `[batch, seq]` tensors.
#[derive(Debug, Clone)]
pub struct TensorBatch {
    /// Token ids, `u32`.
    pub input_ids: Tensor,
    /// 1.0 for real tokens, 0.0 for padding, `f32`.
    pub attention_mask: Tensor,
    /// Segment ids, `u32`.
    pub token_type_ids: Tensor,
}

impl TensorBatch {
    /// Move an encoded batch onto `device`.
    pub fn from_encoded(encoded: &Encoded, device: &Device) -> Result<Self> {
        let shape = (encoded.batch, encoded.seq);
        let to_u32 = |v: &[i64]| -> Vec<u32> { v.iter().map(|&x| x as u32).collect() };
        let mask: Vec<f32> = encoded.attention_mask.iter().map(|&x| x as f32).collect();
        Ok(Self {
            input_ids: Tensor::from_vec(to_u32(&encoded.input_ids), shape, device)?,
            attention_mask: Tensor::from_vec(mask, shape, device)?,
            token_type_ids: Tensor::from_vec(to_u32(&encoded.token_type_ids), shape, device)?,
        })
    }

    /// Pairs in the batch.
    pub fn len(&self) -> usize {
        self.input_ids.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch holds no pair.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mask as `dtype` (for models that compute in another precision).
    pub fn mask_as(&self, dtype: DType) -> Result<Tensor> {
        self.attention_mask.to_dtype(dtype)
    }
}

/// A classifier the training loop can fine-tune.
pub trait TrainableModel {
    /// Logits `[batch, num_labels]`. `train` turns dropout on.
    fn forward(&self, batch: &TensorBatch, train: bool) -> Result<Tensor>;

    /// Every trainable variable, by name. Checkpoints save and restore exactly these.
    fn varmap(&self) -> &VarMap;

    /// The device the model lives on.
    fn device(&self) -> &Device;

    /// Called before each training micro-batch with a key unique to it in the run (epoch and
    /// position): a model whose training draws random numbers (dropout) reseeds them from
    /// it, so a resumed run draws what an uninterrupted one would have.
    fn begin_micro_batch(&self, _key: u64) {}

    /// The gradients of `loss`. A model that recomputes parts of its forward pass during
    /// the backward pass (gradient checkpointing) collects the variables' gradients from
    /// those inner passes too.
    fn backward(&self, loss: &Tensor) -> Result<GradStore> {
        loss.backward()
    }
}
