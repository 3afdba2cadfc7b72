//! [`OnnxServing`]: the serving half every ML plugin shares. A plugin reads its own folder
//! (labels, tokenizer) into a [`ServedFolder`]; from there, starting ONNX Runtime, loading
//! the graph, `classify_batch` and `info` are the same for every backend.

use super::{init_ort, OrtClassifier};
use super::{precision, spec};
use crate::resolve;
use crate::tokenize::EncodePairs;
use clarity_sdk::config::Quantize;
use clarity_sdk::{Error, ErrorKind, ModelInfo, PluginInit, TextPair};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A folder holding `model.onnx`, and what a plugin knows about feeding it.
#[derive(Debug)]
pub struct ServedFolder<T> {
    /// The folder (the artifact folder, or one exported elsewhere).
    pub dir: PathBuf,
    /// Turns request pairs into the graph's inputs.
    pub tokenizer: T,
    /// Labels in output order.
    pub labels: Vec<String>,
    /// Longest input in tokens, as `tokenizer` cuts them.
    pub max_length: usize,
    /// The folder's files that make up the model, for `info`.
    pub artifacts: Vec<String>,
    /// Plugin-specific `info` details (where the model came from, adapter settings).
    pub details: BTreeMap<String, serde_json::Value>,
}

/// A model being served by ONNX Runtime.
#[derive(Debug)]
pub struct OnnxServing<T> {
    session: OrtClassifier,
    folder: ServedFolder<T>,
    quantize: Quantize,
}

impl<T: EncodePairs> OnnxServing<T> {
    /// Load ONNX Runtime (once per process) and `folder/model.onnx` (`model.int8.onnx` for
    /// `quantize: int8`, written first if missing) on the configured device and threads;
    /// the graph's label count, when it fixes one, must match the labels.
    pub fn start(init: &PluginInit, mut folder: ServedFolder<T>) -> Result<Self, Error> {
        let library = resolve::ort_library(&init.config_dir)?;
        init_ort(&library)?;
        let quantize = init.spec.model_config.quantize;
        let onnx = precision::graph_to_serve(&folder.dir, quantize)?;
        let file = precision::graph_file(quantize);
        if !folder.artifacts.iter().any(|a| a == file) {
            folder.artifacts.insert(0, file.to_string());
        }
        let session = OrtClassifier::load(&onnx, spec::device(init), spec::threads(init)?)?;
        if let Some(n) = session.num_labels() {
            if n != folder.labels.len() {
                return Err(Error::config(format!(
                    "{}: the graph scores {n} labels but {} are named",
                    onnx.display(),
                    folder.labels.len()
                )));
            }
        }
        Ok(Self {
            session,
            folder,
            quantize,
        })
    }

    /// Label probabilities, one row per pair. A pair the tokenizer refuses is
    /// [`ErrorKind::InvalidInput`].
    pub fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
        let encoded = self.folder.tokenizer.encode(&pairs)?;
        Ok(self.session.classify(&encoded)?)
    }

    /// What `info` says once loaded, as `backend`.
    pub fn info(&self, backend: &str) -> ModelInfo {
        let folder = &self.folder;
        let mut info = ModelInfo::new(backend, folder.labels.clone());
        info.loaded = true;
        info.device = self.provider().to_string();
        info.max_length = Some(folder.max_length);
        info.artifact_dir = Some(folder.dir.clone());
        info.artifacts = folder.artifacts.clone();
        info.details.insert("runtime".into(), "onnxruntime".into());
        info.details
            .insert("execution_provider".into(), self.provider().into());
        info.details
            .insert("precision".into(), precision::name(self.quantize).into());
        info.details
            .insert("graph".into(), precision::graph_file(self.quantize).into());
        info.details.extend(folder.details.clone());
        info
    }

    /// The execution provider in use: `cpu`, `cuda` or `coreml`.
    pub fn provider(&self) -> &str {
        self.session.provider()
    }

    /// The folder served.
    pub fn dir(&self) -> &Path {
        &self.folder.dir
    }
}

/// What `info` says before `load`, as `backend`: the configured labels and `max_length`.
pub fn idle_info(backend: &str, init: &PluginInit) -> ModelInfo {
    let mut info = ModelInfo::new(backend, init.labels().to_vec());
    info.artifact_dir = Some(init.artifact_dir.clone());
    info.max_length = Some(spec::max_length(init));
    let quantize = init.spec.model_config.quantize;
    info.details
        .insert("precision".into(), precision::name(quantize).into());
    info
}

/// The model `classify_batch` runs, or [`ErrorKind::NotLoaded`].
pub fn loaded<T>(serving: &Option<OnnxServing<T>>) -> Result<&OnnxServing<T>, Error> {
    serving
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::NotLoaded, "model not loaded"))
}

/// `load`'s error when the artifact folder holds no trained model: [`ErrorKind::NotTrained`],
/// which the host answers with "train first" (or trains, with `auto_train`).
pub fn not_trained(init: &PluginInit) -> Error {
    Error::not_trained(format!(
        "no trained model at {} (run `clarity-host train --model {}`)",
        init.artifact_dir.display(),
        init.spec.name
    ))
}
