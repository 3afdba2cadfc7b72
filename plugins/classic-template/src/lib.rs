//! The smallest useful Clarity plugin: copy this crate to start your own classic loader.
//!
//! It "trains" by counting how often each label occurs and "classifies" every pair with
//! those frequencies: a majority-class baseline. Replace [`Priors`] with your own model;
//! the five methods of [`Classifier`] are all the host needs.
//!
//! To use your copy, build it (`cargo build --release -p my-plugin`) and point a model
//! at the library in `models.yaml`:
//!
//! ```yaml
//! - name: my-model
//!   type: classic
//!   plugin: target/release/libmy_plugin.so
//!   data_config: { train_file: data/sample/train.json }
//! ```

use clarity_sdk::{
    Classifier, Error, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob, TrainReport,
};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What training produces and `load` reads back: the labels and their frequencies.
#[derive(Serialize, Deserialize)]
struct Priors {
    labels: Vec<String>,
    probabilities: Vec<f32>,
}

/// The backend for one `models.yaml` entry.
pub struct TemplateClassifier {
    artifact_dir: PathBuf,
    labels: Vec<String>,
    priors: Option<Priors>,
}

const MODEL_FILE: &str = "priors.json";

impl Classifier for TemplateClassifier {
    fn new(init: PluginInit) -> Result<Self, Error> {
        Ok(Self {
            labels: init.labels().to_vec(),
            artifact_dir: init.artifact_dir,
            priors: None,
        })
    }

    fn info(&self) -> ModelInfo {
        let labels = match &self.priors {
            Some(p) => p.labels.clone(),
            None => self.labels.clone(),
        };
        let mut info = ModelInfo::new("label-priors", labels);
        info.loaded = self.priors.is_some();
        info.artifact_dir = Some(self.artifact_dir.clone());
        info.artifacts = vec![MODEL_FILE.into()];
        info
    }

    fn load(&mut self) -> Result<ModelInfo, Error> {
        let path = self.artifact_dir.join(MODEL_FILE);
        if !path.exists() {
            return Err(Error::not_trained(format!(
                "no trained model at {}: run `clarity-host train` first",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let priors: Priors = serde_json::from_str(&text)
            .map_err(|e| Error::other(format!("{}: {e}", path.display())))?;
        self.priors = Some(priors);
        Ok(self.info())
    }

    fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        let priors = self
            .priors
            .as_ref()
            .ok_or_else(|| Error::new(clarity_sdk::ErrorKind::NotLoaded, "model not loaded"))?;
        Ok(pairs.iter().map(|_| priors.probabilities.clone()).collect())
    }

    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
        if job.train.is_empty() {
            return Err(Error::input("no training examples"));
        }
        let mut counts = vec![0f32; job.labels.len()];
        for example in &job.train {
            if let Some(c) = counts.get_mut(example.label) {
                *c += 1.0;
            }
        }
        let total: f32 = counts.iter().sum();
        let priors = Priors {
            labels: job.labels.clone(),
            probabilities: counts.iter().map(|c| c / total).collect(),
        };
        ctx.message(format!("label frequencies: {:?}", priors.probabilities));

        let path = job.output_dir.join(MODEL_FILE);
        let json = serde_json::to_string_pretty(&priors)
            .map_err(|e| Error::other(format!("cannot encode priors: {e}")))?;
        std::fs::write(&path, json).map_err(|e| Error::io(&path, e))?;
        Ok(TrainReport {
            steps: 1,
            epochs: 1,
            artifacts: vec![MODEL_FILE.into()],
            ..TrainReport::default()
        })
    }
}

clarity_sdk::export_plugin!(TemplateClassifier, kinds = ["classic"]);

#[cfg(test)]
mod tests {
    use super::*;
    use clarity_sdk::config::ModelSpec;
    use clarity_sdk::Example;

    fn init(dir: &std::path::Path) -> PluginInit {
        let spec: ModelSpec =
            serde_json::from_str(r#"{"name": "t", "type": "classic"}"#).expect("spec");
        PluginInit {
            spec,
            config_dir: dir.to_path_buf(),
            artifact_dir: dir.to_path_buf(),
            serving_threads: None,
        }
    }

    #[test]
    fn trains_loads_and_predicts_the_label_frequencies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut plugin = TemplateClassifier::new(init(dir.path())).expect("new");
        assert_eq!(
            plugin.load().map_err(|e| e.kind).err(),
            Some(clarity_sdk::ErrorKind::NotTrained)
        );
        let example = |label| Example {
            question: "q".into(),
            context: "c".into(),
            label,
        };
        let job = TrainJob {
            labels: vec!["a".into(), "b".into()],
            train: vec![example(0), example(1), example(1), example(1)],
            valid: vec![],
            output_dir: dir.path().to_path_buf(),
            checkpoint_dir: dir.path().join("checkpoints"),
            resume: false,
            groups: None,
        };
        plugin
            .train(job, &mut TrainContext::detached())
            .expect("train");
        let info = plugin.load().expect("load");
        assert_eq!(info.labels, vec!["a", "b"]);
        let scores = plugin
            .classify_batch(&[TextPair::new("q", "c")])
            .expect("classify");
        assert_eq!(scores, vec![vec![0.25, 0.75]]);
    }
}
