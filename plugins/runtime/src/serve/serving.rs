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
    /// `serving_config.max_batch_tokens`: most padded tokens in one run.
    max_batch_tokens: usize,
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
        let max_batch_tokens = init
            .spec
            .serving_config
            .max_batch_tokens
            .unwrap_or_else(|| default_batch_tokens(session.provider(), folder.max_length));
        Ok(Self {
            session,
            folder,
            max_batch_tokens,
            quantize,
        })
    }

    /// Label probabilities, one row per pair. A pair the tokenizer refuses is
    /// [`ErrorKind::InvalidInput`]. A batch whose padded size passes `max_batch_tokens` is
    /// run in several parts of similar lengths (see [`token_budget_runs`]).
    pub fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
        let encoded = self.folder.tokenizer.encode(&pairs)?;
        if encoded.batch * encoded.seq <= self.max_batch_tokens {
            return Ok(self.session.classify(&encoded)?);
        }
        let lengths: Vec<usize> = (0..encoded.batch).map(|i| encoded.length(i)).collect();
        let mut scores: Vec<Vec<f32>> = vec![Vec::new(); encoded.batch];
        for rows in token_budget_runs(&lengths, self.max_batch_tokens) {
            let part = self.session.classify(&encoded.select(&rows))?;
            for (row, score) in rows.into_iter().zip(part) {
                scores[row] = score;
            }
        }
        Ok(scores)
    }

    /// Each pair's untruncated length in tokens, as this model builds its input.
    pub fn token_counts(&self, pairs: &[TextPair]) -> Result<Vec<usize>, Error> {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|p| (p.question(), p.context())).collect();
        Ok(self.folder.tokenizer.token_counts(&pairs)?)
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
            .insert("intra_op_threads".into(), self.session.threads().into());
        info.details
            .insert("max_batch_tokens".into(), self.max_batch_tokens.into());
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

/// Tokens per run on a CPU when `max_batch_tokens` is unset. Measured on MiniLM at 128
/// tokens (bench/serve_encoder.py, AVX2): per-pair throughput falls as runs grow past a few
/// pairs, because their activations leave the cache (int8 at 16 clients on two cores: 85
/// pairs/s with runs of 512 tokens, 58 with 16384).
pub const CPU_BATCH_TOKENS: usize = 512;

/// Tokens per run on an accelerator when `max_batch_tokens` is unset (TEI's default): a GPU
/// wants large runs.
pub const ACCELERATOR_BATCH_TOKENS: usize = 16_384;

/// `max_batch_tokens` when unset: by execution provider, never below one full pair.
pub fn default_batch_tokens(provider: &str, max_length: usize) -> usize {
    let budget = match provider {
        "cpu" => CPU_BATCH_TOKENS,
        _ => ACCELERATOR_BATCH_TOKENS,
    };
    budget.max(max_length)
}

/// Rows grouped into runs whose padded size (rows x longest row) stays within `budget`
/// tokens: rows sorted by length, so each run pads little. A row longer than the budget
/// runs alone.
pub fn token_budget_runs(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    // Sorted longest first: a run's first row sets its padded width.
    let mut width = 0;
    for i in order {
        if !current.is_empty() && (current.len() + 1) * width > budget {
            runs.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            width = lengths[i];
        }
        current.push(i);
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
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
