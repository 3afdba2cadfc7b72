//! Unit tests of the candle model on tiny random encoders of each family, and the helpers
//! the op tests share.

use crate::arch::{Arch, Pooling, POOLING_KEY};
use crate::model::EncoderModel;
use crate::weights;
use candle_core::{Device, Shape, Tensor, Var};
use candle_nn::loss::cross_entropy;
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::tokenize::Encoded;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A tensor of values with mean `mean` and standard deviation `std` from a ChaCha stream
/// seeded with `seed`. Test inputs must be the same on every run and every machine
/// (`Tensor::randn` draws from an unseeded thread RNG, so a failure could not be replayed):
/// each value is a sum of four uniforms (bell-shaped, within ±3.5 std), plain arithmetic, so
/// no libm call can differ between CPUs either.
pub(crate) fn seeded(
    shape: impl Into<Shape>,
    mean: f32,
    std: f32,
    seed: u64,
) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    // Four U(0, 1) sum to mean 2, variance 1/3.
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| {
            let sum: f32 = (0..4).map(|_| rng.random::<f32>()).sum();
            mean + std * (sum - 2.0) * 3f32.sqrt()
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu)
}

/// `max |a - b|` over `max |b|` (at least `f32::MIN_POSITIVE`): the error relative to the
/// reference's scale. Rounding differences between two ways of computing the same sums (and
/// between gemm's AVX2 and AVX-512 kernels) grow with the magnitude of the values summed,
/// so an absolute bound that holds for one input can fail for a larger one.
pub(crate) fn relative_error(a: &Tensor, b: &Tensor) -> candle_core::Result<f32> {
    let diff = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff / scale.max(f32::MIN_POSITIVE))
}

/// Forward outputs agree to this share of their largest value: f32 rounding and
/// [`clarity_runtime::kernels::fastmath`]'s error are ~1e-7 of it; a formula error of 1% on one element of
/// typical size is ~1e-2.
pub(crate) const FORWARD_TOLERANCE: f32 = 1e-5;

/// Gradients agree to this share of their largest value: they pass through more sums (and a
/// softmax backward pass that cancels), still far from a 1% error.
pub(crate) const GRADIENT_TOLERANCE: f32 = 1e-4;

/// Checks a fused op's output against its composed candle form: forward to
/// [`FORWARD_TOLERANCE`], and the gradient of every one of `inputs` through
/// `sum(output · r)` for a seeded random `r` to [`GRADIENT_TOLERANCE`], both relative to
/// the composed form's largest value.
pub(crate) fn assert_matches_composed(
    fused: &Tensor,
    composed: &Tensor,
    inputs: &[(&str, &Var)],
) -> candle_core::Result<()> {
    let error = relative_error(fused, composed)?;
    assert!(
        error < FORWARD_TOLERANCE,
        "forward differs by {error} of its largest value"
    );
    let r = seeded(fused.shape(), 0.0, 1.0, 0x5EED)?;
    let gf = (fused * &r)?.sum_all()?.backward()?;
    let gc = (composed * &r)?.sum_all()?.backward()?;
    for (name, var) in inputs {
        let (Some(a), Some(c)) = (gf.get(var), gc.get(var)) else {
            panic!("no gradient for {name}");
        };
        let error = relative_error(a, c)?;
        assert!(
            error < GRADIENT_TOLERANCE,
            "gradient of {name} differs by {error} of its largest value"
        );
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
    let poolings = [Pooling::Cls, Pooling::Mean];
    for (family, pooling) in ["bert", "roberta", "distilbert"]
        .into_iter()
        .flat_map(|f| poolings.map(|p| (f, p)))
    {
        let mut model = tiny_model(family, 3, 2);
        model.arch.pooling = pooling;
        let family = format!("{family} ({pooling:?})");
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
            clarity_runtime::kernels::with_composed_ops(|| loss_and_gradients(&model));
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

/// With first-token pooling the last layer runs at the first position only: the logits and
/// every parameter's gradient are those of the whole last layer.
#[test]
fn the_first_position_shortcut_gives_the_full_models_logits_and_gradients() {
    let batch = TensorBatch::from_encoded(&tiny_batch(), &Device::Cpu).expect("batch");
    let labels = Tensor::new(&[0u32, 2], &Device::Cpu).expect("labels");
    for family in ["bert", "roberta", "distilbert"] {
        let model = tiny_model(family, 3, 5);
        assert_eq!(model.arch.pooling, Pooling::Cls);
        let shortcut = model.logits(&batch, false).expect("logits");
        let full = model.logits_every_position(&batch, false).expect("logits");
        let error = crate::tests::relative_error(&shortcut, &full).expect("error");
        assert!(error < FORWARD_TOLERANCE, "{family}: logits off by {error}");
        let g_short = cross_entropy(&shortcut, &labels)
            .and_then(|l| l.backward())
            .expect("backward");
        let g_full = cross_entropy(&full, &labels)
            .and_then(|l| l.backward())
            .expect("backward");
        for (name, var) in model.varmap_vars() {
            let (Some(a), Some(b)) = (g_short.get(var.as_tensor()), g_full.get(var.as_tensor()))
            else {
                panic!("{family}: no gradient for {name}");
            };
            // The keys' bias gets a gradient of zero up to rounding (a softmax does not see
            // a shift shared by its row): measured against 1e-3 at least, as below.
            let worst = (a - b)
                .and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>())
                .expect("difference");
            let scale = b
                .abs()
                .and_then(|b| b.max_all()?.to_scalar::<f32>())
                .expect("scale")
                .max(1e-3);
            assert!(
                worst / scale < GRADIENT_TOLERANCE,
                "{family} {name}: gradient off by {worst} (largest {scale})"
            );
        }
    }
}

/// `model_config.options.pooling`: `cls`, `mean`, unset (the folder's `config.json`
/// decides), or a config error naming the option and its values; and a folder written with
/// mean pooling reads back as mean pooling.
#[test]
fn pooling_comes_from_the_option_or_the_folders_config() {
    let options =
        |v: serde_json::Value| std::collections::BTreeMap::from([("pooling".to_string(), v)]);
    assert_eq!(Pooling::from_options(&Default::default()), Ok(None));
    assert_eq!(
        Pooling::from_options(&options(json!("mean"))),
        Ok(Some(Pooling::Mean))
    );
    assert_eq!(
        Pooling::from_options(&options(json!("cls"))),
        Ok(Some(Pooling::Cls))
    );
    let wrong = Pooling::from_options(&options(json!("max"))).unwrap_err();
    assert!(
        wrong.contains("model_config.options.pooling") && wrong.contains("`mean`"),
        "{wrong}"
    );

    let mut config = tiny_config("bert");
    assert_eq!(Arch::from_json(&config, "t").unwrap().pooling, Pooling::Cls);
    config[POOLING_KEY] = json!("mean");
    let arch = Arch::from_json(&config, "t").unwrap();
    assert_eq!(arch.pooling, Pooling::Mean);

    let dir = tempfile::tempdir().unwrap();
    let (pretrained, out) = (dir.path().join("in.json"), dir.path().join("config.json"));
    std::fs::write(&pretrained, tiny_config("bert").to_string()).unwrap();
    crate::meta::write_hf_config(&pretrained, &arch, &["a".into(), "b".into()], &out).unwrap();
    assert_eq!(Arch::from_file(&out).unwrap().pooling, Pooling::Mean);
}
