//! `ensemble.json`: what `train` fitted for an ensemble, read back by `test` and `serve`.

use super::combine::Combiner;
use clarity_sdk::config::{Combine, EnsembleConfig};
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::{Error as SdkError, ModelSpec};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The file in the ensemble's `output_dir`.
pub const FILE: &str = "ensemble.json";

/// Bumped when the file changes incompatibly.
const FORMAT: u32 = 1;

/// A fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    /// [`FORMAT`].
    pub format: u32,
    /// The `ensemble_config` it was fitted for: a different one in `models.yaml` needs a new
    /// `train`.
    pub config: EnsembleConfig,
    /// The ensemble's labels, in output order.
    pub labels: Vec<String>,
    /// How probabilities are combined.
    pub combine: Combine,
    /// The members, in `members` order.
    pub members: Vec<Member>,
    /// One log-probability offset per label (all 0: none).
    pub bias: Vec<f64>,
    /// The validation set the weights and bias were chosen on, and the scores there.
    pub validation: Option<Validation>,
}

/// One member of a fitted ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its entry's name.
    pub name: String,
    /// Its labels in its own output order, when fitted.
    pub labels: Vec<String>,
    /// Its weight (the weights sum to 1).
    pub weight: f64,
    /// Its scores on the validation set.
    pub valid: Option<Score>,
}

/// Accuracy and macro-F1 on a set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Macro-F1.
    pub macro_f1: f64,
    /// Accuracy.
    pub accuracy: f64,
}

impl From<&Evaluation> for Score {
    fn from(e: &Evaluation) -> Self {
        Self {
            macro_f1: e.macro_f1,
            accuracy: e.accuracy,
        }
    }
}

/// The validation set and how the ensemble did on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Where it came from (a file, or a share of the training file).
    pub source: String,
    /// Pairs in it.
    pub pairs: usize,
    /// The fitted ensemble (optimistic: chosen on this very set).
    pub ensemble: Score,
    /// The members averaged with equal weights and no bias, for comparison.
    pub uniform: Score,
    /// The fitting judged on pairs it did not see: 5 interleaved folds, each scored with
    /// weights (and bias) fitted on the other four. Absent when nothing is fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_fit: Option<Score>,
}

impl Fitted {
    /// A new record.
    pub fn new(
        config: EnsembleConfig,
        labels: Vec<String>,
        members: Vec<Member>,
        bias: Vec<f64>,
        validation: Option<Validation>,
    ) -> Self {
        Self {
            format: FORMAT,
            combine: config.combine,
            config,
            labels,
            members,
            bias,
            validation,
        }
    }

    /// The combiner it describes.
    pub fn combiner(&self) -> Combiner {
        let weights: Vec<f64> = self.members.iter().map(|m| m.weight).collect();
        Combiner::new(&weights, self.bias.clone(), self.combine)
    }

    /// Read `dir/ensemble.json` for `spec`: a missing file is "not trained", and a file
    /// fitted for another `ensemble_config` must be fitted again.
    pub fn read(dir: &Path, spec: &ModelSpec) -> Result<Self, SdkError> {
        let path = dir.join(FILE);
        let retrain = format!("run `clarity-host train --model {}`", spec.name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SdkError::not_trained(format!(
                    "{} does not exist: the ensemble's weights are fitted by `train`; {retrain}",
                    path.display()
                )))
            }
            Err(e) => return Err(SdkError::io(&path, e)),
        };
        let fitted: Fitted = serde_json::from_str(&text).map_err(|e| {
            SdkError::new(
                clarity_sdk::ErrorKind::InvalidConfig,
                format!("{}: {e}; {retrain} to write it again", path.display()),
            )
        })?;
        if fitted.format != FORMAT {
            return Err(SdkError::not_trained(format!(
                "{} has format {} (this build reads {FORMAT}); {retrain}",
                path.display(),
                fitted.format
            )));
        }
        if spec.ensemble_config.as_ref() != Some(&fitted.config) {
            return Err(SdkError::not_trained(format!(
                "ensemble_config of `{}` in models.yaml changed since {} was fitted; {retrain}",
                spec.name,
                path.display()
            )));
        }
        let labels = fitted.labels.len();
        if fitted.bias.len() != labels
            || fitted.members.iter().any(|m| m.labels.len() != labels)
            || fitted
                .members
                .iter()
                .any(|m| !(m.weight.is_finite() && m.weight >= 0.0))
        {
            return Err(SdkError::new(
                clarity_sdk::ErrorKind::InvalidConfig,
                format!("{} is inconsistent; {retrain}", path.display()),
            ));
        }
        Ok(fitted)
    }
}
