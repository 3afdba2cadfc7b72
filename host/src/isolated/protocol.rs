//! What the server and a model's process say to each other: one JSON object per line.
//!
//! The server's first line is a [`Hello`]; the child answers it with [`FromChild::Ready`] or [`FromChild::LoadFailed`], then
//! one reply per request, in order.

use clarity_sdk::{Error as SdkError, ErrorKind, ModelInfo, TextPair};
use serde::{Deserialize, Serialize};

/// The first line the server sends: the model to load, as the server's `models.yaml` has it
/// now (the process never reads the file, which may have changed since).
#[derive(Debug, Serialize, Deserialize)]
pub struct Hello {
    /// `models.yaml`, for messages.
    pub config_path: std::path::PathBuf,
    /// Its folder: relative paths in the entry are relative to it.
    pub config_dir: std::path::PathBuf,
    /// The model's entry.
    pub spec: clarity_sdk::ModelSpec,
    /// Inference threads it may use (`None`: all cores).
    pub threads: Option<usize>,
}

/// A request to the model's process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToChild {
    /// Score these `(question, context)` pairs.
    Classify { pairs: Vec<(String, String)> },
    /// Count these pairs' tokens.
    TokenCounts { pairs: Vec<(String, String)> },
}

/// What the model's process says.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum FromChild {
    /// Loaded and warmed up.
    Ready { info: ModelInfo },
    /// Could not load; the process then exits.
    LoadFailed { error: WireError },
    /// The scores of a `Classify`.
    Scores { scores: Vec<Vec<f32>> },
    /// The counts of a `TokenCounts`.
    TokenCounts { counts: Option<Vec<usize>> },
    /// The request failed.
    Failed { error: WireError },
}

/// An SDK error on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    /// [`ErrorKind::as_str`].
    pub kind: String,
    pub message: String,
}

impl From<&SdkError> for WireError {
    fn from(e: &SdkError) -> Self {
        Self {
            kind: e.kind.as_str().to_string(),
            message: e.message.to_string(),
        }
    }
}

impl From<WireError> for SdkError {
    fn from(e: WireError) -> Self {
        let kind = [
            ErrorKind::InvalidConfig,
            ErrorKind::NotTrained,
            ErrorKind::InvalidInput,
            ErrorKind::Io,
            ErrorKind::Panic,
            ErrorKind::Cancelled,
            ErrorKind::NotLoaded,
            ErrorKind::Unsupported,
        ]
        .into_iter()
        .find(|k| k.as_str() == e.kind)
        .unwrap_or(ErrorKind::Other);
        SdkError::new(kind, e.message)
    }
}

/// Pairs as plain tuples.
pub fn to_wire(pairs: &[TextPair]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|p| (p.question().to_string(), p.context().to_string()))
        .collect()
}

/// Tuples back to pairs.
pub fn from_wire(pairs: Vec<(String, String)>) -> Vec<TextPair> {
    pairs
        .into_iter()
        .map(|(q, c)| TextPair::new(q, c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_kind_across_the_wire() {
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::Panic,
            ErrorKind::NotTrained,
        ] {
            let sent = SdkError::new(kind, "why");
            let line = serde_json::to_string(&FromChild::Failed {
                error: WireError::from(&sent),
            })
            .expect("encode");
            let FromChild::Failed { error } = serde_json::from_str(&line).expect("decode") else {
                panic!("not a failure: {line}");
            };
            let got = SdkError::from(error);
            assert_eq!((got.kind, got.message.as_str()), (kind, "why"));
        }
    }
}
