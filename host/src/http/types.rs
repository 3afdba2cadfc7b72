//! Request and response bodies.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// One pair to classify: the seed's request body.
#[derive(Debug, Deserialize)]
pub struct PairRequest {
    /// The question asked.
    pub question: String,
    /// The interview question and answer (`answer` is accepted as an alias).
    #[serde(alias = "answer")]
    pub context: String,
    /// `false`: refuse (422) a pair longer than the model's `max_length` instead of
    /// truncating it, the default.
    #[serde(default)]
    pub truncate: Option<bool>,
}

/// One prediction: the seed's response body.
#[derive(Debug, Serialize)]
pub struct Prediction {
    /// The most probable label.
    pub clarity_label: String,
    /// Its probability.
    pub confidence: f32,
    /// Every label's probability, in the model's label order.
    pub scores: Scores,
}

/// Label -> probability, serialised as a JSON object in label order.
#[derive(Debug)]
pub struct Scores(pub Vec<(String, f32)>);

impl Serialize for Scores {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, p) in &self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

impl Prediction {
    /// A prediction from one probability vector and the model's labels.
    pub fn from_scores(labels: &[String], probabilities: &[f32]) -> Self {
        let best = clarity_sdk::metrics::argmax(probabilities);
        Self {
            clarity_label: labels.get(best).cloned().unwrap_or_default(),
            confidence: probabilities.get(best).copied().unwrap_or(0.0),
            scores: Scores(
                labels
                    .iter()
                    .cloned()
                    .zip(probabilities.iter().copied())
                    .collect(),
            ),
        }
    }
}

/// One model in `GET /`.
#[derive(Debug, Serialize)]
pub struct ModelSummary {
    /// Name in models.yaml.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its route.
    pub route: String,
    /// loading | training | ready | failed.
    pub status: &'static str,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its labels, once loaded.
    pub labels: Vec<String>,
    /// What the backend is.
    pub backend: Option<String>,
    /// Device in use.
    pub device: Option<String>,
    /// Longest pair in tokens, where the model has a limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// What the plugin reports beside (runtime, execution provider, sizes).
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Plugin library, by file name: where it lives on the machine is for the log (and
    /// `clarity-host list`), not for every client.
    pub plugin: String,
    /// Pairs waiting.
    pub queued: usize,
}
