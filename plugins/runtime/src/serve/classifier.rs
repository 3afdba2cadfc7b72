//! [`OrtClassifier`]: one ONNX Runtime session of a sequence classifier.
//!
//! The graph is inspected once at load: which of `input_ids`, `attention_mask` and
//! `token_type_ids` it takes (anything else it requires cannot be fed, so loading fails),
//! and which output holds the `[batch, num_labels]` logits. Graphs exported elsewhere
//! (optimum) load as long as they follow those names.

use super::provider::{self, Built, Provider};
use super::runtime::{catch_panic, environment};
use super::ServeError;
use crate::tokenize::Encoded;
use clarity_sdk::config::Device;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Token inputs Clarity can feed, in the order they are passed.
const TOKEN_INPUTS: [&str; 3] = ["input_ids", "attention_mask", "token_type_ids"];

/// A loaded classifier graph.
#[derive(Debug)]
pub struct OrtClassifier {
    /// `Session::run` takes `&mut self`; requests are serialised (batching happens upstream).
    session: Mutex<Session>,
    path: PathBuf,
    provider: Provider,
    /// Which of [`TOKEN_INPUTS`] the graph takes.
    feeds: [bool; 3],
    output: String,
    num_labels: Option<usize>,
    /// Intra-op threads of the session.
    threads: usize,
}

impl OrtClassifier {
    /// Load `onnx` on `device` with `threads` intra-op threads (default: all available
    /// cores). [`super::init_ort`] must have succeeded first.
    pub fn load(onnx: &Path, device: Device, threads: Option<usize>) -> Result<Self, ServeError> {
        let env = environment()?;
        let model_error = |message: String| ServeError::Model {
            path: onnx.to_path_buf(),
            message,
        };
        if !onnx.is_file() {
            return Err(model_error("no such file".into()));
        }
        let threads = threads.filter(|&n| n > 0).unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let plan = provider::plan(device, Built::this_build()).map_err(ServeError::Provider)?;
        let fixed = plan.len() == 1 && plan[0] != Provider::Cpu;
        let (provider, session) = provider::choose(&plan, |p| {
            catch_panic(|| open_session(env, onnx, p, threads)).and_then(|r| r)
        })
        .map_err(|why| {
            if fixed {
                ServeError::Provider(format!("cannot load {}: {why}", onnx.display()))
            } else {
                model_error(why)
            }
        })?;
        let (feeds, output, num_labels) = inspect(&session).map_err(model_error)?;
        Ok(Self {
            session: Mutex::new(session),
            path: onnx.to_path_buf(),
            provider,
            feeds,
            output,
            num_labels,
            threads,
        })
    }

    /// ONNX Runtime's intra-op threads for this session.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The execution provider actually in use: `cpu`, `cuda` or `coreml`.
    pub fn provider(&self) -> &str {
        self.provider.name()
    }

    /// Number of labels, when the graph's output shape fixes it.
    pub fn num_labels(&self) -> Option<usize> {
        self.num_labels
    }

    /// The graph takes `token_type_ids` (BERT does; RoBERTa and DistilBERT exports do not).
    pub fn wants_token_type_ids(&self) -> bool {
        self.feeds[2]
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Raw scores, one row of `num_labels` per pair.
    pub fn logits(&self, batch: &Encoded) -> Result<Vec<Vec<f32>>, ServeError> {
        let columns = [
            &batch.input_ids,
            &batch.attention_mask,
            &batch.token_type_ids,
        ];
        let cells = batch.batch * batch.seq;
        for (i, column) in columns.iter().enumerate() {
            if self.feeds[i] && column.len() != cells {
                return Err(ServeError::Input(format!(
                    "{} has {} ids, expected batch {} x seq {}",
                    TOKEN_INPUTS[i],
                    column.len(),
                    batch.batch,
                    batch.seq
                )));
            }
        }
        if batch.batch == 0 {
            return Ok(Vec::new());
        }
        let shape = [batch.batch as i64, batch.seq as i64];
        let run = || -> Result<Vec<Vec<f32>>, String> {
            let mut inputs: Vec<(Cow<str>, SessionInputValue)> = Vec::new();
            for (i, column) in columns.iter().enumerate() {
                if self.feeds[i] {
                    let tensor = TensorRef::from_array_view((shape, column.as_slice()))
                        .map_err(|e| e.to_string())?;
                    inputs.push((Cow::Borrowed(TOKEN_INPUTS[i]), tensor.into()));
                }
            }
            let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
            let outputs = session.run(inputs).map_err(|e| e.to_string())?;
            let value = outputs
                .get(&self.output)
                .ok_or_else(|| format!("the run returned no `{}`", self.output))?;
            let (out_shape, data) = value
                .try_extract_tensor::<f32>()
                .map_err(|e| e.to_string())?;
            rows(out_shape, data, batch.batch)
        };
        catch_panic(run)
            .and_then(|r| r)
            .map_err(|e| ServeError::Run(format!("{}: {e}", self.path.display())))
    }

    /// Label probabilities (softmax of [`Self::logits`]), one row per pair.
    pub fn classify(&self, batch: &Encoded) -> Result<Vec<Vec<f32>>, ServeError> {
        Ok(self.logits(batch)?.iter().map(|r| softmax(r)).collect())
    }

    /// Numerically stable softmax of one row (same as [`super::softmax`]).
    pub fn softmax(row: &[f32]) -> Vec<f32> {
        softmax(row)
    }
}

/// Numerically stable softmax: shifted by the row maximum so `exp` cannot overflow.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // Empty, all -inf, or NaN: nothing meaningful to normalise.
        return row.iter().map(|_| f32::NAN).collect();
    }
    let exps: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn open_session(
    env: &ort::environment::Environment,
    onnx: &Path,
    provider: Provider,
    threads: usize,
) -> Result<Session, String> {
    let text = |e: ort::Error<_>| e.to_string();
    let builder = Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(text)?
        .with_intra_threads(threads)
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?;
    provider::register(provider, builder)?
        .commit_from_file(onnx)
        .map_err(|e| e.to_string())
}

/// Which token inputs the graph takes, its logits output, and the label count if fixed.
fn inspect(session: &Session) -> Result<([bool; 3], String, Option<usize>), String> {
    let mut feeds = [false; 3];
    for input in session.inputs() {
        let name = input.name();
        let Some(i) = TOKEN_INPUTS.iter().position(|&t| t == name) else {
            return Err(format!(
                "the graph requires input `{name}`, which Clarity cannot feed (it feeds \
                 input_ids, attention_mask and token_type_ids)"
            ));
        };
        if input.dtype().tensor_type() != Some(TensorElementType::Int64) {
            return Err(format!(
                "input `{name}` must be int64, the graph declares {:?}",
                input.dtype()
            ));
        }
        feeds[i] = true;
    }
    if !feeds[0] {
        return Err("the graph has no `input_ids` input".into());
    }
    let outputs = session.outputs();
    let output = outputs
        .iter()
        .find(|o| o.name() == "logits")
        .or_else(|| outputs.first())
        .ok_or("the graph has no outputs")?;
    let dtype = output.dtype();
    let shape = dtype.tensor_shape().map(|s| s.to_vec());
    match (dtype.tensor_type(), shape.as_deref()) {
        (Some(TensorElementType::Float32), Some([_, labels])) => Ok((
            feeds,
            output.name().to_string(),
            usize::try_from(*labels).ok().filter(|&n| n > 0),
        )),
        _ => Err(format!(
            "output `{}` must be float [batch, num_labels], the graph declares {dtype:?}",
            output.name()
        )),
    }
}

/// Split a `[batch, labels]` result into rows.
fn rows(shape: &[i64], data: &[f32], batch: usize) -> Result<Vec<Vec<f32>>, String> {
    match shape {
        [b, n] if *b == batch as i64 && *n > 0 && data.len() == batch * *n as usize => {
            Ok(data.chunks(*n as usize).map(<[f32]>::to_vec).collect())
        }
        _ => Err(format!(
            "logits of shape {shape:?}, expected [{batch}, num_labels]"
        )),
    }
}
