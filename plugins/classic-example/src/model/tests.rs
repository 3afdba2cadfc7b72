//! Unit tests of training, prediction, options and the model file.

use super::format::MAGIC;
use super::*;

/// Small deterministic generator, so tests need no RNG crate.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

const FILLER: &[&str] = &[
    "the",
    "a",
    "we",
    "people",
    "country",
    "said",
    "think",
    "very",
    "important",
    "today",
    "issue",
    "policy",
    "government",
    "time",
    "work",
    "year",
    "going",
    "make",
    "sure",
    "know",
];
const CUES: [&[&str]; 3] = [
    &["absolutely", "yes", "certainly"],
    &["decline", "comment", "unable"],
    &["perhaps", "depends", "partly"],
];

/// Label = which group of cue words the context uses; questions are noise.
fn synthetic(n: usize, seed: u64) -> (Vec<(String, String)>, Vec<usize>) {
    let mut rng = XorShift(seed);
    let mut pairs = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let label = rng.below(3);
        let mut words: Vec<&str> = (0..40).map(|_| FILLER[rng.below(FILLER.len())]).collect();
        for _ in 0..2 {
            let cue = CUES[label][rng.below(3)];
            let at = rng.below(words.len());
            words.insert(at, cue);
        }
        let question = format!("What about the {}?", FILLER[rng.below(FILLER.len())]);
        pairs.push((question, words.join(" ")));
        labels.push(label);
    }
    (pairs, labels)
}

fn small_options() -> TrainOptions {
    TrainOptions {
        threads: 2,
        ..Default::default()
    }
}

fn argmax(p: &[f32]) -> usize {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best })
}

#[test]
fn learns_a_synthetic_task() {
    let (train, train_labels) = synthetic(300, 1);
    let (test, test_labels) = synthetic(150, 2);
    let (model, stats) =
        ClassicModel::fit(&train, &train_labels, 3, &small_options()).expect("fit");
    assert!(stats.vocab_size > 0 && stats.iterations > 0 && stats.loss.is_finite());
    let probs = model.predict_proba_batch(&test);
    let correct = probs
        .iter()
        .zip(&test_labels)
        .filter(|(p, &y)| argmax(p) == y)
        .count();
    let accuracy = correct as f64 / test.len() as f64;
    assert!(accuracy >= 0.95, "held-out accuracy {accuracy}");
}

#[test]
fn probabilities_sum_to_one() {
    let (train, labels) = synthetic(60, 3);
    let (model, _) = ClassicModel::fit(&train, &labels, 4, &small_options()).expect("fit");
    for (q, c) in [
        ("", ""),
        ("unseen words only", "zzz qqq"),
        (train[0].0.as_str(), train[0].1.as_str()),
    ] {
        let p = model.predict_proba(q, c);
        assert_eq!(p.len(), 4);
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
    }
    // Label 3 never occurs in training, so it must stay unlikely.
    assert!(model.predict_proba(&train[0].0, &train[0].1)[3] < 0.1);
}

#[test]
fn batch_matches_single_predictions() {
    let (train, labels) = synthetic(100, 4);
    let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
    let batch = model.predict_proba_batch(&train);
    for ((q, c), p) in train.iter().zip(&batch) {
        assert_eq!(&model.predict_proba(q, c), p);
    }
}

#[test]
fn save_load_round_trip_gives_identical_probabilities() {
    let (train, labels) = synthetic(80, 5);
    let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.bin");
    model.save(&path).expect("save");
    model.save(&path).expect("save over an existing file");
    let loaded = ClassicModel::load(&path).expect("load");
    for (q, c) in train.iter().take(20) {
        assert_eq!(model.predict_proba(q, c), loaded.predict_proba(q, c));
    }
    let leftovers = std::fs::read_dir(dir.path()).expect("read_dir").count();
    assert_eq!(leftovers, 1, "temporary files left behind");
}

#[test]
fn training_is_deterministic() {
    let (train, labels) = synthetic(80, 6);
    let bytes = |threads| {
        let opts = TrainOptions {
            threads,
            ..Default::default()
        };
        ClassicModel::fit(&train, &labels, 3, &opts)
            .expect("fit")
            .0
            .to_bytes()
            .expect("encode")
    };
    assert_eq!(bytes(1), bytes(2));
}

#[test]
fn only_weighted_blocks_of_the_context_count() {
    let (train, labels) = synthetic(120, 8);
    let framed: Vec<(String, String)> = train
        .iter()
        .map(|(q, c)| (q.clone(), format!("Q: {q}\nA: {c}")))
        .collect();
    let opts = TrainOptions {
        block_weights: BlockWeights {
            question: 0.0,
            prompt: 0.0,
            answer: 1.0,
        },
        // The relevance features read the question and the prompt whatever the block weights.
        relevance_weight: 0.0,
        ..small_options()
    };
    let (model, _) = ClassicModel::fit(&framed, &labels, 3, &opts).expect("fit");
    let answer = &train[0].1;
    let p = model.predict_proba("why?", &format!("Q: the people\nA: {answer}"));
    let q = model.predict_proba("", &format!("Q: very important policy\nA: {answer}"));
    assert_eq!(p, q);
    // Without the marker the whole context is the answer.
    assert_eq!(p, model.predict_proba("", answer));
    assert_eq!(argmax(&p), labels[0]);
    // With the prompt weighted in, the prompt changes the prediction.
    let (model, _) = ClassicModel::fit(&framed, &labels, 3, &small_options()).expect("fit");
    let p = model.predict_proba("", &format!("Q: the people\nA: {answer}"));
    let q = model.predict_proba("", &format!("Q: very important policy\nA: {answer}"));
    assert_ne!(p, q);
}

#[test]
fn damaged_files_are_rejected() {
    let (train, labels) = synthetic(40, 7);
    let (model, _) = ClassicModel::fit(&train, &labels, 3, &small_options()).expect("fit");
    let bytes = model.to_bytes().expect("encode");
    let is_corrupt = |b: &[u8]| matches!(ClassicModel::from_bytes(b), Err(ModelError::Corrupt(_)));
    assert!(is_corrupt(&bytes[..bytes.len() - 1]));
    assert!(is_corrupt(&bytes[..10]));
    assert!(is_corrupt(b""));
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(is_corrupt(&flipped));
    let mut wrong_version = bytes.clone();
    wrong_version[MAGIC.len()] = 99;
    assert!(is_corrupt(&wrong_version));
    let missing = ClassicModel::load("/nonexistent/dir/model.bin");
    assert!(matches!(missing, Err(ModelError::Io { .. })));
}

#[test]
fn invalid_training_input_is_rejected() {
    let opts = TrainOptions::default();
    let pair = || ("q".to_string(), "c".to_string());
    assert!(matches!(
        ClassicModel::fit(&[], &[], 3, &opts),
        Err(ModelError::EmptyTrainingSet)
    ));
    assert!(matches!(
        ClassicModel::fit(&[pair(), pair()], &[0, 3], 3, &opts),
        Err(ModelError::LabelOutOfRange {
            index: 1,
            label: 3,
            n_labels: 3
        })
    ));
    assert!(matches!(
        ClassicModel::fit(&[pair()], &[0, 1], 3, &opts),
        Err(ModelError::LengthMismatch {
            pairs: 1,
            labels: 2
        })
    ));
    let bad = TrainOptions {
        word_ngrams: [3, 1],
        ..Default::default()
    };
    assert!(matches!(
        ClassicModel::fit(&[pair()], &[0], 3, &bad),
        Err(ModelError::InvalidOptions(_))
    ));
    let bad = TrainOptions {
        c: 0.0,
        ..Default::default()
    };
    assert!(matches!(
        ClassicModel::fit(&[pair()], &[0], 3, &bad),
        Err(ModelError::InvalidOptions(_))
    ));
}

#[test]
fn options_deserialize_with_defaults_and_reject_unknown_fields() {
    let opts: TrainOptions =
        serde_json::from_str(r#"{"char_ngrams": [0, 0], "class_weight": "none"}"#).expect("parse");
    assert_eq!(opts.char_ngrams, [0, 0]);
    assert_eq!(opts.class_weight, ClassWeight::None);
    assert_eq!(opts.word_ngrams, TrainOptions::default().word_ngrams);
    assert!(serde_json::from_str::<TrainOptions>(r#"{"l3": 1}"#).is_err());
    assert!(serde_json::from_str::<TrainOptions>(r#"{"class_weight": "auto"}"#).is_err());
    let opts: TrainOptions =
        serde_json::from_str(r#"{"answer_marker": "", "block_weights": {"prompt": 0}}"#)
            .expect("parse");
    assert_eq!(opts.answer_marker, "");
    let defaults = BlockWeights::default();
    assert_eq!(
        opts.block_weights,
        BlockWeights {
            prompt: 0.0,
            ..defaults
        }
    );
    assert_eq!(TrainOptions::default().answer_marker, "\nA:");
    let typo = r#"{"block_weights": {"promt": 1}}"#;
    assert!(serde_json::from_str::<TrainOptions>(typo).is_err());
    let negative = r#"{"block_weights": {"answer": -1}}"#;
    let opts: TrainOptions = serde_json::from_str(negative).expect("parse");
    assert!(matches!(
        opts.validate(),
        Err(ModelError::InvalidOptions(_))
    ));
}

/// Options with this relevance weight.
fn with_relevance(relevance_weight: f32) -> TrainOptions {
    TrainOptions {
        relevance_weight,
        ..small_options()
    }
}

#[test]
fn relevance_features_follow_the_ngram_columns_and_survive_saving() {
    let (train, labels) = synthetic(80, 11);
    let (model, stats) = ClassicModel::fit(&train, &labels, 3, &with_relevance(0.5)).expect("fit");
    assert_eq!(stats.relevance_features, N_RELEVANCE);
    let (q, c) = &train[0];
    let row = model.features(q, c);
    let tail = &row.indices[row.nnz() - N_RELEVANCE..];
    let first = model.vocab_size() as u32;
    assert_eq!(
        tail,
        (first..first + N_RELEVANCE as u32).collect::<Vec<_>>()
    );
    let relevance = model.relevance().expect("relevance features");
    assert_eq!(
        &row.values[row.nnz() - N_RELEVANCE..],
        relevance.transform(q, c)
    );
    let back = ClassicModel::from_bytes(&model.to_bytes().expect("encode")).expect("decode");
    assert_eq!(back.predict_proba(q, c), model.predict_proba(q, c));
    // The batch path (threads) builds the same rows as the one-pair path.
    let batch = model.predict_proba_batch(&train);
    assert_eq!(batch[0], model.predict_proba(q, c));
    assert!(batch.len() >= super::PARALLEL_BATCH);
}

#[test]
fn a_zero_relevance_weight_leaves_the_features_out_and_bad_weights_are_rejected() {
    let (train, labels) = synthetic(40, 5);
    let (model, stats) = ClassicModel::fit(&train, &labels, 3, &with_relevance(0.0)).expect("fit");
    assert_eq!(stats.relevance_features, 0);
    assert!(model.relevance().is_none());
    let (q, c) = &train[0];
    assert!(model
        .features(q, c)
        .indices
        .iter()
        .all(|&i| (i as usize) < model.vocab_size()));
    for bad in [-0.1, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            ClassicModel::fit(&train, &labels, 3, &with_relevance(bad)),
            Err(ModelError::InvalidOptions(_))
        ));
    }
}

#[test]
fn format_version_2_files_still_load() {
    let (train, labels) = synthetic(40, 9);
    let (model, _) = ClassicModel::fit(&train, &labels, 3, &with_relevance(0.0)).expect("fit");
    // A version 2 file: the same header, a payload without the relevance field.
    let payload = postcard::to_stdvec(&ModelStateV2 {
        vectorizer: model.vectorizer.clone(),
        classifier: model.classifier.clone(),
    })
    .expect("encode");
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&2u32.to_le_bytes());
    bytes.extend_from_slice(&super::format::fnv1a(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    let old = ClassicModel::from_bytes(&bytes).expect("a version 2 file loads");
    assert!(old.relevance().is_none());
    let (q, c) = &train[3];
    assert_eq!(old.predict_proba(q, c), model.predict_proba(q, c));
    // The same payload labelled version 3 is not a valid version 3 file.
    bytes[MAGIC.len()] = 3;
    assert!(matches!(
        ClassicModel::from_bytes(&bytes),
        Err(ModelError::Corrupt(_))
    ));
}
