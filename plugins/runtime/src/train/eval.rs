//! Scoring the validation set during training.

use crate::batch::{TensorBatch, TrainableModel};
use crate::tokenize::EncodePairs;
use crate::train::loss;
use crate::train::TrainError;
use candle_core::{Tensor, D};
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::TrainJob;

/// Scores and mean loss of `model` (no dropout) on the job's validation examples (judged on
/// coarse labels when the job groups its labels).
///
/// Pairs are batched by length so little is padding; results go back in the given order.
pub fn evaluate<M: TrainableModel>(
    model: &M,
    tokenizer: &dyn EncodePairs,
    job: &TrainJob,
    batch_size: usize,
) -> Result<(Evaluation, f64), TrainError> {
    let examples = &job.valid;
    let mut by_length: Vec<usize> = (0..examples.len()).collect();
    by_length.sort_by_key(|&i| examples[i].question.len() + examples[i].context.len());
    let mut scores = vec![Vec::new(); examples.len()];
    let mut loss_sum = 0f64;
    for chunk in by_length.chunks(batch_size.max(1)) {
        let pairs: Vec<(&str, &str)> = chunk
            .iter()
            .map(|&i| (examples[i].question.as_str(), examples[i].context.as_str()))
            .collect();
        let encoded = tokenizer.encode(&pairs)?;
        let batch = TensorBatch::from_encoded(&encoded, model.device())?;
        let logits = model.forward(&batch, false)?;
        let gold: Vec<u32> = chunk.iter().map(|&i| examples[i].label as u32).collect();
        let targets = Tensor::new(gold.as_slice(), model.device())?;
        let loss = loss::cross_entropy(&logits, &targets, None)?.to_scalar::<f32>()?;
        loss_sum += f64::from(loss) * chunk.len() as f64;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        for (&i, p) in chunk.iter().zip(probs) {
            scores[i] = p;
        }
    }
    let gold: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let evaluation = job.evaluate(&gold, &scores);
    Ok((evaluation, loss_sum / examples.len().max(1) as f64))
}
