//! Each runtime error as a [`clarity_sdk::Error`] of the kind the host acts on, so plugins
//! use `?` and the kind survives: a refused input is a 422 ([`ErrorKind::InvalidInput`]), a
//! bad `models.yaml` entry is [`ErrorKind::InvalidConfig`], a failed read or write is
//! [`ErrorKind::Io`], anything else [`ErrorKind::Other`].
//!
//! A call site that knows better (a tokenizer that will not load while fine-tuning is the
//! configured model's fault) maps explicitly instead.

use crate::meta::MetaError;
use crate::onnx::OnnxError;
use crate::resolve::ResolveError;
use crate::serve::ServeError;
use crate::tokenize::TokenizeError;
use crate::train::checkpoint::CheckpointError;
use crate::train::TrainError;
use clarity_sdk::{Error, ErrorKind};

fn of(kind: ErrorKind, e: impl std::fmt::Display) -> Error {
    Error::new(kind, e.to_string())
}

/// A stop becomes `Cancelled` (the host then says how to resume); a tokenizer refusal keeps
/// its own kind.
impl From<TrainError> for Error {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Cancelled { checkpoint } => Error::new(
                ErrorKind::Cancelled,
                match checkpoint {
                    Some(path) => {
                        format!("training stopped; checkpoint saved at {}", path.display())
                    }
                    None => "training stopped".to_string(),
                },
            ),
            TrainError::Config(_) => of(ErrorKind::InvalidConfig, e),
            TrainError::Tokenize(e) => e.into(),
            TrainError::Checkpoint(e) => e.into(),
            TrainError::Diverged { .. } | TrainError::Tensor(_) => of(ErrorKind::Other, e),
        }
    }
}

/// Checkpoints are files: one that cannot be written or read is an I/O failure.
impl From<CheckpointError> for Error {
    fn from(e: CheckpointError) -> Self {
        of(ErrorKind::Io, e)
    }
}

/// The library and the execution provider are what `models.yaml` and the environment chose;
/// a batch the session refuses is the request's; a graph that will not load or run is not
/// the user's to fix from the config (for a trained folder it is a broken artifact, and
/// ONNX Runtime does not say whether a load failed on I/O or on the bytes), so `Other`.
impl From<ServeError> for Error {
    fn from(e: ServeError) -> Self {
        let kind = match &e {
            ServeError::OrtLibrary { .. }
            | ServeError::OrtAlreadyLoaded { .. }
            | ServeError::Provider(_)
            | ServeError::Labels { .. } => ErrorKind::InvalidConfig,
            ServeError::Input(_) => ErrorKind::InvalidInput,
            ServeError::Model { .. } | ServeError::Run(_) | ServeError::NotInitialized => {
                ErrorKind::Other
            }
        };
        of(kind, e)
    }
}

/// Text the tokenizer refuses is the input's fault; a tokenizer file that will not load is
/// the configured model's.
impl From<TokenizeError> for Error {
    fn from(e: TokenizeError) -> Self {
        let kind = match &e {
            TokenizeError::Load { .. } => ErrorKind::InvalidConfig,
            TokenizeError::Encode(_) => ErrorKind::InvalidInput,
        };
        of(kind, e)
    }
}

/// `ORT_DYLIB_PATH` and `model_name` are settings: what they do not find is a config error.
impl From<ResolveError> for Error {
    fn from(e: ResolveError) -> Self {
        let kind = match &e {
            ResolveError::OrtEnvMissing(_)
            | ResolveError::OrtNotFound { .. }
            | ResolveError::ModelNotFound { .. } => ErrorKind::InvalidConfig,
        };
        of(kind, e)
    }
}

/// A malformed graph (or model file) is our bug or a broken artifact; a file that cannot be
/// read or written is I/O.
impl From<OnnxError> for Error {
    fn from(e: OnnxError) -> Self {
        let kind = match &e {
            OnnxError::Io { .. } => ErrorKind::Io,
            OnnxError::Invalid(_) | OnnxError::BadPath(_) | OnnxError::Decode { .. } => {
                ErrorKind::Other
            }
        };
        of(kind, e)
    }
}

/// A metadata file that cannot be read or written is I/O; one that does not parse or comes
/// from another version is a broken artifact.
impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        let kind = match &e {
            MetaError::Read { .. } | MetaError::Write { .. } => ErrorKind::Io,
            MetaError::Parse { .. } | MetaError::Format { .. } | MetaError::Encode { .. } => {
                ErrorKind::Other
            }
        };
        of(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn kind(e: impl Into<Error>) -> ErrorKind {
        e.into().kind
    }

    fn path() -> PathBuf {
        PathBuf::from("/x/model.onnx")
    }

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied")
    }

    fn json_error() -> serde_json::Error {
        serde_json::from_str::<u32>("{").unwrap_err()
    }

    #[test]
    fn serve_errors_keep_their_kind() {
        use ErrorKind::*;
        let cases = [
            (
                ServeError::OrtLibrary {
                    path: path(),
                    message: "m".into(),
                },
                InvalidConfig,
            ),
            (
                ServeError::OrtAlreadyLoaded {
                    loaded: path(),
                    requested: path(),
                },
                InvalidConfig,
            ),
            (ServeError::NotInitialized, Other),
            (ServeError::Provider("no cuda".into()), InvalidConfig),
            (
                ServeError::Model {
                    path: path(),
                    message: "m".into(),
                },
                Other,
            ),
            (ServeError::Input("ragged".into()), InvalidInput),
            (ServeError::Run("boom".into()), Other),
            (
                ServeError::Labels {
                    path: path(),
                    message: "m".into(),
                },
                InvalidConfig,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let got: Error = e.into();
            assert_eq!(got.kind, want, "{text}");
            assert_eq!(got.message, text, "the message is kept");
        }
    }

    #[test]
    fn tokenize_errors_keep_their_kind() {
        let load = TokenizeError::Load {
            path: path(),
            message: "m".into(),
        };
        assert_eq!(kind(load), ErrorKind::InvalidConfig);
        assert_eq!(
            kind(TokenizeError::Encode("refused".into())),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn resolve_errors_are_config_errors() {
        for e in [
            ResolveError::OrtEnvMissing(path()),
            ResolveError::OrtNotFound { searched: vec![] },
            ResolveError::ModelNotFound {
                name: "m".into(),
                reason: "r".into(),
                config_dir: path(),
                searched: vec![],
            },
        ] {
            assert_eq!(kind(e), ErrorKind::InvalidConfig);
        }
    }

    #[test]
    fn onnx_errors_are_io_or_other() {
        let io_error = OnnxError::Io {
            path: path(),
            source: io(),
        };
        assert_eq!(kind(io_error), ErrorKind::Io);
        assert_eq!(
            kind(OnnxError::Invalid("dangling".into())),
            ErrorKind::Other
        );
        assert_eq!(kind(OnnxError::BadPath(path())), ErrorKind::Other);
    }

    #[test]
    fn meta_errors_are_io_or_other() {
        use ErrorKind::*;
        let cases = [
            (
                MetaError::Read {
                    path: path(),
                    source: io(),
                },
                Io,
            ),
            (
                MetaError::Write {
                    path: path(),
                    source: io(),
                },
                Io,
            ),
            (
                MetaError::Parse {
                    path: path(),
                    source: json_error(),
                },
                Other,
            ),
            (
                MetaError::Encode {
                    path: path(),
                    source: json_error(),
                },
                Other,
            ),
            (
                MetaError::Format {
                    path: path(),
                    found: 2,
                    expected: 1,
                },
                Other,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(kind(e), want);
        }
    }

    #[test]
    fn train_errors_keep_their_kind() {
        use ErrorKind::*;
        let stopped: Error = TrainError::Cancelled {
            checkpoint: Some(PathBuf::from("/ck/step-8")),
        }
        .into();
        assert_eq!(stopped.kind, Cancelled);
        assert!(
            stopped.message.contains("/ck/step-8"),
            "{}",
            stopped.message
        );
        assert_eq!(kind(TrainError::Cancelled { checkpoint: None }), Cancelled);
        assert_eq!(kind(TrainError::Config("batch_size".into())), InvalidConfig);
        assert_eq!(
            kind(TrainError::Diverged {
                step: 3,
                loss: f32::NAN
            }),
            Other
        );
        assert_eq!(
            kind(TrainError::Tensor(candle_core::Error::Msg("t".into()))),
            Other
        );
        assert_eq!(
            kind(TrainError::Tokenize(TokenizeError::Encode("e".into()))),
            InvalidInput
        );
        let checkpoint = CheckpointError {
            path: path(),
            message: "m".into(),
        };
        assert_eq!(kind(TrainError::Checkpoint(checkpoint)), Io);
    }
}
