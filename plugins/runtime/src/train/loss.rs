//! Cross-entropy with optional class weights (PyTorch's weighted mean), and the weights.

use candle_core::{Result, Tensor, D};
use clarity_sdk::config::{ClassWeights, ClassWeightsName};

/// Mean cross-entropy of `logits` `[b, k]` against `targets` `[b]` (u32). With `weights`
/// `[k]`, each pair counts by its gold label's weight and the sum is divided by the total
/// weight, as `torch.nn.CrossEntropyLoss(weight=...)` does.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<&Tensor>,
) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    match weights {
        None => picked.mean_all()?.neg(),
        Some(w) => {
            let w = w.index_select(targets, 0)?;
            let total = w.sum_all()?;
            (picked * &w)?.sum_all()?.neg()?.broadcast_div(&total)
        }
    }
}

/// One weight per label from `training_config.class_weights`, or `None` for plain
/// cross-entropy. `counts` are the training examples per label.
pub fn class_weights(config: Option<&ClassWeights>, counts: &[usize]) -> Result<Option<Vec<f32>>> {
    let k = counts.len();
    match config {
        None | Some(ClassWeights::Named(ClassWeightsName::None)) => Ok(None),
        Some(ClassWeights::Named(ClassWeightsName::Balanced)) => {
            let n: usize = counts.iter().sum();
            // scikit-learn's "balanced": n / (k * count); an absent label gets no weight.
            Ok(Some(
                counts
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            0.0
                        } else {
                            n as f32 / (k * c) as f32
                        }
                    })
                    .collect(),
            ))
        }
        Some(ClassWeights::Explicit(w)) => {
            if w.len() != k {
                return Err(candle_core::Error::Msg(format!(
                    "training_config.class_weights has {} weights for {k} labels",
                    w.len()
                )));
            }
            if w.iter().any(|&x| !x.is_finite() || x < 0.0) {
                return Err(candle_core::Error::Msg(
                    "training_config.class_weights must be finite and not negative".into(),
                ));
            }
            Ok(Some(w.iter().map(|&x| x as f32).collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_without_weights_and_weights_shift_the_mean() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, 0.5, -1.0], [0.1, 0.2, 0.3]], &dev)?;
        let targets = Tensor::new(&[0u32, 2], &dev)?;
        let ours = cross_entropy(&logits, &targets, None)?.to_scalar::<f32>()?;
        let candle = candle_nn::loss::cross_entropy(&logits, &targets)?.to_scalar::<f32>()?;
        assert!((ours - candle).abs() < 1e-6);
        // All weight on the second pair: the loss is that pair's loss alone.
        let w = Tensor::new(&[0.0f32, 0.0, 1.0], &dev)?;
        let weighted = cross_entropy(&logits, &targets, Some(&w))?.to_scalar::<f32>()?;
        let second = cross_entropy(&logits.narrow(0, 1, 1)?, &targets.narrow(0, 1, 1)?, None)?
            .to_scalar::<f32>()?;
        assert!((weighted - second).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn balanced_weights_and_errors() -> Result<()> {
        let balanced = ClassWeights::Named(ClassWeightsName::Balanced);
        let w = class_weights(Some(&balanced), &[6, 3, 0])?.unwrap_or_default();
        assert_eq!(w, vec![0.5, 1.0, 0.0]);
        assert_eq!(class_weights(None, &[1, 2])?, None);
        assert!(class_weights(Some(&ClassWeights::Explicit(vec![1.0])), &[1, 2]).is_err());
        assert!(class_weights(Some(&ClassWeights::Explicit(vec![1.0, -1.0])), &[1, 2]).is_err());
        Ok(())
    }
}
