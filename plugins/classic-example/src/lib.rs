//! Clarity's classic example plugin: TF-IDF features (word and character n-grams) with
//! multinomial logistic regression.
//!
//! The context is split at `answer_marker` (default `"\nA:"`) into the interviewer's prompt
//! and the answer; question, prompt and answer are separate feature blocks with their own
//! weights (default 0, 0.5 and 1: measured best on QEvasion and the sample data). Six dense
//! relevance features (how much the answer overlaps the question, its best-matching
//! sentence, lengths; `relevance_weight`) follow the n-grams.
//!
//! It trains in seconds on a CPU, gives real probabilities, and is a worked example of a
//! complete [`Classifier`]: configuration from `model_config.options`, training with
//! progress events, a self-contained artifact, and loading for inference.
//!
//! ```yaml
//! - name: classic
//!   type: classic            # served by this plugin unless `plugin:` says otherwise
//!   model_config:
//!     options: { char_ngrams: [2, 5], c: 10, class_weight: balanced }
//!   data_config: { train_file: data/sample/train.json, valid_file: data/sample/valid.json }
//! ```
#![deny(missing_docs)]

pub mod features;
pub mod linear;
pub mod model;

use clarity_sdk::{
    Classifier, Error, ErrorKind, ModelInfo, PluginInit, TextPair, TrainContext, TrainEvent,
    TrainJob, TrainReport,
};
use model::{ClassicModel, TrainOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The fitted model's file in the artifact folder.
const MODEL_FILE: &str = "classic_model.bin";
/// Labels and settings, readable by people.
const META_FILE: &str = "classic_meta.json";

/// What is saved beside the model so it can be served on its own.
#[derive(Serialize, Deserialize)]
struct Meta {
    labels: Vec<String>,
    options: TrainOptions,
    vocab_size: usize,
}

/// The classic example backend for one model entry.
pub struct ClassicExample {
    artifact_dir: PathBuf,
    labels: Vec<String>,
    options: TrainOptions,
    loaded: Option<(ClassicModel, Meta)>,
}

impl Classifier for ClassicExample {
    fn new(init: PluginInit) -> Result<Self, Error> {
        let options = parse_options(&init)?;
        Ok(Self {
            labels: init.labels().to_vec(),
            artifact_dir: init.artifact_dir,
            options,
            loaded: None,
        })
    }

    fn info(&self) -> ModelInfo {
        let labels = match &self.loaded {
            Some((_, meta)) => meta.labels.clone(),
            None => self.labels.clone(),
        };
        let mut info = ModelInfo::new("tfidf-logreg", labels);
        info.loaded = self.loaded.is_some();
        info.artifact_dir = Some(self.artifact_dir.clone());
        info.artifacts = vec![MODEL_FILE.into(), META_FILE.into()];
        if let Some((_, meta)) = &self.loaded {
            info.details
                .insert("vocab_size".into(), serde_json::json!(meta.vocab_size));
        }
        info
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        let model_path = self.artifact_dir.join(MODEL_FILE);
        if !model_path.is_file() {
            return Err(Error::not_trained(format!(
                "no trained model at {}",
                model_path.display()
            )));
        }
        let meta = read_meta(&self.artifact_dir.join(META_FILE))?;
        let model = ClassicModel::load(&model_path)
            .map_err(|e| Error::other(format!("{}: {e}", model_path.display())))?;
        if model.n_labels() != meta.labels.len() {
            return Err(Error::other(format!(
                "{} has {} outputs but {META_FILE} lists {} labels",
                model_path.display(),
                model.n_labels(),
                meta.labels.len()
            )));
        }
        self.loaded = Some((model, meta));
        Ok(self.info())
    }

    fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        let (model, _) = self
            .loaded
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::NotLoaded, "model not loaded"))?;
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
        Ok(model.predict_proba_batch(&pairs))
    }

    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
        if job.resume {
            ctx.message("the classic example fits in seconds and keeps no checkpoints: training from scratch");
        }
        ctx.emit(TrainEvent::Started {
            total_steps: Some(self.options.max_iter as u64),
            epochs: 1,
            train_examples: job.train.len() as u64,
            start_step: 0,
        });
        let pairs: Vec<(String, String)> = job
            .train
            .iter()
            .map(|e| (e.question.clone(), e.context.clone()))
            .collect();
        let gold: Vec<usize> = job.train.iter().map(|e| e.label).collect();
        let (model, stats) = ClassicModel::fit(&pairs, &gold, job.labels.len(), &self.options)
            .map_err(|e| Error::input(format!("fitting failed: {e}")))?;
        let steps = stats.iterations as u64;
        ctx.emit(TrainEvent::Step {
            step: steps,
            epoch: 1,
            loss: stats.loss,
            learning_rate: None,
        });
        ctx.message(format!(
            "fitted {} n-gram and {} relevance features in {:.2} s ({} L-BFGS iterations{})",
            stats.vocab_size,
            stats.relevance_features,
            stats.seconds,
            stats.iterations,
            if stats.converged {
                ", converged"
            } else {
                ", not converged"
            }
        ));

        let valid = (!job.valid.is_empty()).then(|| {
            let pairs: Vec<(&str, &str)> = job
                .valid
                .iter()
                .map(|e| (e.question.as_str(), e.context.as_str()))
                .collect();
            let scores = model.predict_proba_batch(&pairs);
            let gold: Vec<usize> = job.valid.iter().map(|e| e.label).collect();
            job.evaluate(&gold, &scores)
        });
        if let Some(metrics) = &valid {
            ctx.emit(TrainEvent::Eval {
                step: steps,
                epoch: 1,
                loss: None,
                metrics: metrics.clone(),
            });
        }

        let model_path = job.output_dir.join(MODEL_FILE);
        model
            .save(&model_path)
            .map_err(|e| Error::other(format!("{}: {e}", model_path.display())))?;
        let meta = Meta {
            labels: job.labels.clone(),
            options: self.options.clone(),
            vocab_size: stats.vocab_size,
        };
        write_meta(&job.output_dir.join(META_FILE), &meta)?;
        Ok(TrainReport {
            steps,
            epochs: 1,
            best_epoch: valid.as_ref().map(|_| 1),
            train_loss: Some(stats.loss),
            valid,
            stopped_early: false,
            artifacts: vec![MODEL_FILE.into(), META_FILE.into()],
        })
    }
}

/// `model_config.options`, checked against [`TrainOptions`] so typos are errors.
fn parse_options(init: &PluginInit) -> Result<TrainOptions, Error> {
    let mut options = init.spec.model_config.options.clone();
    // The run's seed applies unless the options set their own.
    options
        .entry("seed".into())
        .or_insert(serde_json::json!(init.spec.training_config.seed));
    let value = serde_json::Value::Object(options.into_iter().collect());
    let options: TrainOptions = serde_json::from_value(value).map_err(|e| {
        Error::config(format!(
            "model `{}`: model_config.options: {e}",
            init.spec.name
        ))
    })?;
    options.validate().map_err(|e| {
        Error::config(format!(
            "model `{}`: model_config.options: {e}",
            init.spec.name
        ))
    })?;
    Ok(options)
}

fn read_meta(path: &Path) -> Result<Meta, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::other(format!("{}: {e}", path.display())))
}

fn write_meta(path: &Path, meta: &Meta) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| Error::other(format!("cannot encode {META_FILE}: {e}")))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

clarity_sdk::export_plugin!(ClassicExample, kinds = ["classic"]);

#[cfg(test)]
mod tests {
    use super::*;
    use clarity_sdk::config::ModelSpec;
    use clarity_sdk::Example;

    fn init(dir: &Path, options: &str) -> PluginInit {
        let spec: ModelSpec = serde_json::from_str(&format!(
            r#"{{"name": "c", "type": "classic", "model_config": {{"options": {options}}}}}"#
        ))
        .expect("spec");
        PluginInit {
            spec,
            config_dir: dir.to_path_buf(),
            artifact_dir: dir.to_path_buf(),
            serving_threads: None,
        }
    }

    fn example(question: &str, context: &str, label: usize) -> Example {
        Example {
            question: question.into(),
            context: context.into(),
            label,
        }
    }

    #[test]
    fn a_typo_in_options_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ClassicExample::new(init(dir.path(), r#"{"char_ngramz": [2, 4]}"#))
            .err()
            .expect("must fail");
        assert_eq!(err.kind, ErrorKind::InvalidConfig);
        assert!(err.message.contains("char_ngramz"), "{}", err.message);
    }

    #[test]
    fn trains_saves_loads_and_classifies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut plugin = ClassicExample::new(init(dir.path(), "{}")).expect("new");
        let mut train = Vec::new();
        for i in 0..20 {
            train.push(example("Will you?", &format!("Yes, we will do it {i}."), 0));
            train.push(example(
                "Will you?",
                &format!("I won't comment on that {i}."),
                1,
            ));
        }
        let job = TrainJob {
            labels: vec!["reply".into(), "non-reply".into()],
            valid: train[..6].to_vec(),
            train,
            output_dir: dir.path().to_path_buf(),
            checkpoint_dir: dir.path().join("checkpoints"),
            resume: false,
            groups: None,
        };
        let report = plugin
            .train(job, &mut TrainContext::detached())
            .expect("train");
        assert_eq!(report.valid.map(|v| v.accuracy), Some(1.0));
        plugin.load().expect("load");
        let scores = plugin
            .classify_batch(&[
                TextPair::new("Will you?", "Yes, we will do it soon."),
                TextPair::new("Will you?", "I won't comment on that."),
            ])
            .expect("classify");
        for s in &scores {
            assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        assert!(scores[0][0] > 0.5 && scores[1][1] > 0.5, "{scores:?}");
    }
}
