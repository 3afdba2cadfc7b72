//! Cross-entropy with optional class weights (PyTorch's weighted mean), and the weights.

use candle_core::{Result, Tensor, D};
use clarity_sdk::config::{ClassWeights, ClassWeightsName};
use clarity_sdk::groups::LabelGroups;

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
///
/// With `groups` (fine labels trained, coarse ones answered), `balanced` balances the coarse
/// labels: every example weighs `n / (k_coarse * count of its coarse label)`. Balancing the
/// fine labels instead would hand each coarse label weight in proportion to how many fine
/// labels it has (QEvasion: `Clear Reply` has one of nine, so a ninth of the weight for a
/// third of the data), which is not what the coarse metrics reward.
pub fn class_weights(
    config: Option<&ClassWeights>,
    counts: &[usize],
    groups: Option<&LabelGroups>,
) -> Result<Option<Vec<f32>>> {
    let k = counts.len();
    match (config, groups) {
        (None | Some(ClassWeights::Named(ClassWeightsName::None)), _) => Ok(None),
        (Some(ClassWeights::Named(ClassWeightsName::Balanced)), Some(groups)) => {
            let n: usize = counts.iter().sum();
            let mut coarse = vec![0usize; groups.coarse.len()];
            for (fine, &c) in counts.iter().enumerate() {
                if let Some(slot) = groups.coarse_index(fine).and_then(|g| coarse.get_mut(g)) {
                    *slot += c;
                }
            }
            let kc = coarse.len();
            Ok(Some(
                (0..k)
                    .map(
                        |fine| match groups.coarse_index(fine).and_then(|g| coarse.get(g)) {
                            Some(&c) if c > 0 => n as f32 / (kc * c) as f32,
                            _ => 0.0,
                        },
                    )
                    .collect(),
            ))
        }
        (Some(ClassWeights::Named(ClassWeightsName::Balanced)), None) => {
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
        (Some(ClassWeights::Explicit(w)), _) => {
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
    fn with_groups_balanced_weighs_the_coarse_labels_evenly() -> Result<()> {
        // yes: [a] (6 pairs); no: [b, c] (3 + 1 pairs).
        let groups = LabelGroups::resolve(
            &std::collections::BTreeMap::from([
                ("yes".to_string(), vec!["a".to_string()]),
                ("no".to_string(), vec!["b".to_string(), "c".to_string()]),
            ]),
            &["yes".to_string(), "no".to_string()],
        )
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let fine = |name: &str| groups.fine.iter().position(|f| f == name).unwrap_or(99);
        let mut counts = vec![0; 3];
        counts[fine("a")] = 6;
        counts[fine("b")] = 3;
        counts[fine("c")] = 1;
        let balanced = ClassWeights::Named(ClassWeightsName::Balanced);
        let w = class_weights(Some(&balanced), &counts, Some(&groups))?.unwrap_or_default();
        // 10 pairs, 2 coarse labels: yes 10 / (2 * 6), no 10 / (2 * 4) for each of b and c.
        assert!((w[fine("a")] - 10.0 / 12.0).abs() < 1e-6, "{w:?}");
        assert!((w[fine("b")] - 10.0 / 8.0).abs() < 1e-6, "{w:?}");
        assert!((w[fine("c")] - 10.0 / 8.0).abs() < 1e-6, "{w:?}");
        // Each coarse label carries half of the total weight.
        let yes = w[fine("a")] * 6.0;
        let no = w[fine("b")] * 3.0 + w[fine("c")] * 1.0;
        assert!((yes - no).abs() < 1e-5, "{yes} vs {no}");
        Ok(())
    }

    #[test]
    fn balanced_weights_and_errors() -> Result<()> {
        let balanced = ClassWeights::Named(ClassWeightsName::Balanced);
        let w = class_weights(Some(&balanced), &[6, 3, 0], None)?.unwrap_or_default();
        assert_eq!(w, vec![0.5, 1.0, 0.0]);
        assert_eq!(class_weights(None, &[1, 2], None)?, None);
        assert!(class_weights(Some(&ClassWeights::Explicit(vec![1.0])), &[1, 2], None).is_err());
        assert!(class_weights(
            Some(&ClassWeights::Explicit(vec![1.0, -1.0])),
            &[1, 2],
            None
        )
        .is_err());
        Ok(())
    }
}
