//! Which graph is served for `model_config.quantize`, and writing the int8 one.
//!
//! `int8` serves `model.int8.onnx`, written beside the fp32 `model.onnx` by the exporters. A
//! model exported before `quantize` was set (or re-exported in fp32 since) gets its int8
//! graph written at load: the pass is deterministic, needs only `model.onnx`, and takes
//! seconds, so asking the user to run `export --quantize int8` first would only add a step.

use crate::meta::{INT8_ONNX_FILE, ONNX_FILE};
use crate::onnx::quantize::{self, QuantizeOptions};
use clarity_sdk::config::Quantize;
use clarity_sdk::Error;
use std::path::{Path, PathBuf};

/// The graph file served at `quantize`.
pub fn graph_file(quantize: Quantize) -> &'static str {
    match quantize {
        Quantize::None => ONNX_FILE,
        Quantize::Int8 => INT8_ONNX_FILE,
    }
}

/// `info`'s name of the precision (`fp32`, `int8`).
pub fn name(quantize: Quantize) -> &'static str {
    match quantize {
        Quantize::None => "fp32",
        Quantize::Int8 => "int8",
    }
}

/// Write `dir/model.int8.onnx` from `dir/model.onnx`; returns the description recorded in
/// the model's metadata (and meta file).
pub fn write_int8(dir: &Path) -> Result<String, Error> {
    let options = QuantizeOptions::default();
    let summary =
        quantize::quantize_file(&dir.join(ONNX_FILE), &dir.join(INT8_ONNX_FILE), &options)?;
    clarity_sdk::info!(
        "wrote {}: {} matmuls and {} embedding tables in int8, {} small matmuls kept fp32",
        dir.join(INT8_ONNX_FILE).display(),
        summary.matmuls,
        summary.gathers,
        summary.kept_f32
    );
    Ok(options.describe())
}

/// The graph to load from `dir` at `quantize`, writing the int8 one first when it is missing
/// or older than `model.onnx`.
pub fn graph_to_serve(dir: &Path, quantize: Quantize) -> Result<PathBuf, Error> {
    let path = dir.join(graph_file(quantize));
    if quantize == Quantize::Int8 && stale(&path, &dir.join(ONNX_FILE)) {
        write_int8(dir).map_err(|e| {
            Error::other(format!(
                "model_config.quantize is int8 but {} is missing or out of date, and writing \
                 it failed: {e} (run `clarity-host export --quantize int8 --model <name>`)",
                path.display()
            ))
        })?;
    }
    Ok(path)
}

/// `derived` is missing, or older than an existing `source`.
fn stale(derived: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(derived), modified(source)) {
        (None, _) => true,
        (Some(d), Some(s)) => d < s,
        (Some(_), None) => false,
    }
}

/// After an exporter wrote `dir/model.onnx`: write the int8 graph for `quantize: int8`
/// (returning its file name and description, for the artifact list and the meta file), or
/// remove an int8 graph of older weights for fp32.
pub fn after_export(dir: &Path, quantize: Quantize) -> Result<Option<(String, String)>, Error> {
    let int8 = dir.join(INT8_ONNX_FILE);
    match quantize {
        Quantize::Int8 => Ok(Some((INT8_ONNX_FILE.to_string(), write_int8(dir)?))),
        Quantize::None => match std::fs::remove_file(&int8) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&int8, e)),
            _ => Ok(None),
        },
    }
}
