//! The error a plugin returns, on both sides of the library boundary.

use abi_stable::StableAbi;
use std::fmt;

/// What went wrong, so the host can choose a response (an HTTP status, "train first", ...).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The model's `models.yaml` entry is invalid for this plugin.
    InvalidConfig,
    /// There is no trained model to load yet: run `clarity-host train` first.
    NotTrained,
    /// The input (a text pair, a training example) is unusable.
    InvalidInput,
    /// A file could not be read or written.
    Io,
    /// The plugin panicked; the panic was caught at the library boundary.
    Panic,
    /// Training stopped because the host asked it to.
    Cancelled,
    /// The model is not loaded (call `load` first).
    NotLoaded,
    /// The plugin does not offer this operation.
    Unsupported,
    /// Anything else.
    Other,
}

impl ErrorKind {
    /// A short machine-readable name, used in JSON error bodies and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidConfig => "invalid_config",
            ErrorKind::NotTrained => "not_trained",
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::Io => "io",
            ErrorKind::Panic => "panic",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::NotLoaded => "not_loaded",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin error: a kind and a message for people.
///
/// `Display` shows both (`invalid_input: question is empty`), so an error that travels up
/// through `anyhow` contexts still says what kind it was; HTTP bodies use `message` alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// A one-line message that says what happened and, where possible, how to fix it.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for [`ErrorKind::InvalidConfig`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Shorthand for [`ErrorKind::InvalidInput`].
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for [`ErrorKind::NotTrained`].
    pub fn not_trained(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotTrained, message)
    }

    /// Shorthand for [`ErrorKind::Other`].
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// An [`ErrorKind::Io`] error that names the file.
    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{}: {err}", path.display()))
    }
}
