//! Our own ONNX writer: plugins export their trained models without Python or `protoc`.
//!
//! - [`proto`]: the subset of `onnx.proto` we write, as hand-declared `prost` messages.
//! - [`GraphBuilder`]: inputs, weights and nodes with unique names, plus one helper per
//!   operator the exporters use (in `ops`).
//! - [`check`]: catches dangling or duplicate values before ONNX Runtime would.
//! - [`save`]: atomic write, with external data beside the model past ~1.8 GB.
//! - [`quantize`]: rewrite a written fp32 model into a dynamically quantized int8 one.

mod builder;
mod check;
mod ops;
pub mod proto;
pub mod quantize;
mod save;

pub use builder::{Attr, Dim, ElemType, GraphBuilder, CONTRIB_DOMAIN, IR_VERSION};
pub use check::check;
pub use save::{save, EXTERNAL_DATA_THRESHOLD};

#[cfg(test)]
pub(crate) use save::{save_with, Layout};

use std::path::{Path, PathBuf};

/// The default-domain opset our graphs target (the helpers emit opset-17 operator forms).
pub const OPSET: i64 = 17;

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The graph is malformed (a builder mistake), caught before writing.
    #[error("invalid ONNX graph: {0}")]
    Invalid(String),
    /// The target path has no file name.
    #[error("cannot write an ONNX model to {0}: the path has no file name")]
    BadPath(PathBuf),
    /// A model file could not be decoded.
    #[error("cannot read the ONNX model {path}: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        message: String,
    },
    /// Writing failed.
    #[error("cannot write {path}: {}", clarity_sdk::durable::explain(source))]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl OnnxError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        OnnxError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
