//! Unit tests of the candle model on tiny random encoders of each family.

use crate::arch::Arch;
use crate::model::EncoderModel;
use crate::weights;
use candle_core::{Device, Tensor, Var};
use candle_nn::loss::cross_entropy;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::tokenize::Encoded;
use serde_json::json;

/// Checks a fused op's output against its composed candle form: forward to 1e-5 (max abs),
/// and the gradient of every one of `inputs` through `sum(output · r)` for a random `r` to
/// 1e-4.
pub(crate) fn assert_matches_composed(
    fused: &Tensor,
    composed: &Tensor,
    inputs: &[(&str, &Var)],
) -> candle_core::Result<()> {
    let max_abs_diff = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    };
    let diff = max_abs_diff(fused, composed)?;
    assert!(diff < 1e-5, "forward differs by {diff}");
    let r = Tensor::randn(0f32, 1.0, fused.shape(), fused.device())?;
    let gf = (fused * &r)?.sum_all()?.backward()?;
    let gc = (composed * &r)?.sum_all()?.backward()?;
    for (name, var) in inputs {
        let (Some(a), Some(c)) = (gf.get(var), gc.get(var)) else {
            panic!("no gradient for {name}");
        };
        let diff = max_abs_diff(a, c)?;
        assert!(diff < 1e-4, "gradient of {name} differs by {diff}");
    }
    Ok(())
}

pub(crate) fn tiny_config(model_type: &str) -> serde_json::Value {
    match model_type {
        "distilbert" => json!({"model_type": "distilbert", "vocab_size": 50, "dim": 16,
            "n_layers": 2, "n_heads": 4, "hidden_dim": 32, "max_position_embeddings": 40,
            "pad_token_id": 0}),
        "roberta" | "xlm-roberta" => json!({"model_type": model_type, "vocab_size": 50,
            "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 32, "max_position_embeddings": 42, "type_vocab_size": 1,
            "pad_token_id": 1, "layer_norm_eps": 1e-5}),
        _ => json!({"model_type": "bert", "vocab_size": 50, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 32,
            "max_position_embeddings": 40, "type_vocab_size": 2, "pad_token_id": 0}),
    }
}

pub(crate) fn tiny_model(model_type: &str, labels: usize, seed: u64) -> EncoderModel {
    let arch = Arch::from_json(&tiny_config(model_type), "test").unwrap();
    let filled = weights::random(&arch, labels, &Device::Cpu, seed).unwrap();
    EncoderModel::from_varmap(arch, filled.varmap, Device::Cpu).unwrap()
}

/// Two rows, the second padded.
pub(crate) fn tiny_batch() -> Encoded {
    Encoded {
        batch: 2,
        seq: 6,
        input_ids: vec![2, 7, 9, 3, 11, 3, 2, 5, 3, 8, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
        token_type_ids: vec![0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0],
    }
}

#[test]
fn every_parameter_of_every_family_gets_a_gradient() {
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny_model(family, 3, 1);
        let batch = TensorBatch::from_encoded(&tiny_batch(), &Device::Cpu).unwrap();
        let logits = model.logits(&batch, true).unwrap();
        assert_eq!(logits.dims(), &[2, 3]);
        let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
        let loss = cross_entropy(&logits, &labels).unwrap();
        let grads = loss.backward().unwrap();
        let vars = model.varmap_vars();
        let missing: Vec<&String> = vars
            .iter()
            .filter(|(_, v)| grads.get(v.as_tensor()).is_none())
            .map(|(n, _)| n)
            .collect();
        assert!(missing.is_empty(), "{family}: no gradient for {missing:?}");
    }
}

#[test]
fn padding_does_not_change_a_rows_logits() {
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny_model(family, 3, 2);
        let full = tiny_batch();
        let batch = TensorBatch::from_encoded(&full, &Device::Cpu).unwrap();
        let both = model
            .logits(&batch, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        // Row 1 alone, without its two padding tokens.
        let alone = Encoded {
            batch: 1,
            seq: 4,
            input_ids: full.input_ids[6..10].to_vec(),
            attention_mask: vec![1; 4],
            token_type_ids: full.token_type_ids[6..10].to_vec(),
        };
        let batch = TensorBatch::from_encoded(&alone, &Device::Cpu).unwrap();
        let single = model
            .logits(&batch, false)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (a, b) in both[1].iter().zip(&single[0]) {
            assert!(
                (a - b).abs() < 1e-5,
                "{family}: {:?} vs {:?}",
                both[1],
                single[0]
            );
        }
    }
}

/// Loss and the gradient of every parameter, eval mode (no dropout: the composed form's
/// candle dropout draws other masks).
fn loss_and_gradients(model: &EncoderModel) -> (f32, Vec<(String, Vec<f32>)>) {
    let batch = TensorBatch::from_encoded(&tiny_batch(), &Device::Cpu).unwrap();
    let labels = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let loss = cross_entropy(&model.logits(&batch, false).unwrap(), &labels).unwrap();
    let grads = loss.backward().unwrap();
    let gradients = model
        .varmap_vars()
        .into_iter()
        .map(|(name, var)| {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient: {name}"));
            (name, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), gradients)
}

#[test]
fn the_fused_ops_give_the_composed_candle_gradients_for_every_parameter() {
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny_model(family, 3, 4);
        let (loss, fused) = loss_and_gradients(&model);
        let (reference_loss, composed) =
            crate::fused::with_composed_ops(|| loss_and_gradients(&model));
        assert!(
            (loss - reference_loss).abs() < 1e-5,
            "{family}: loss {loss} vs {reference_loss}"
        );
        for ((name, a), (_, b)) in fused.iter().zip(&composed) {
            let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                worst / scale < 1e-4,
                "{family} {name}: off by {worst} (largest {scale})"
            );
        }
    }
}
