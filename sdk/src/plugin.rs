//! The plain Rust side of a plugin: the [`Classifier`] trait and the glue that exports it.

use crate::abi::{
    Backend, BackendBox, Backend_TO, EventSink_TO, HostServicesBox, NewBackendFn, PluginError,
    PluginMod, PluginMod_Ref, TextPair,
};
use crate::config::PluginInit;
use crate::error::{Error, ErrorKind};
use crate::train::{TrainContext, TrainJob, TrainReport};
use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    sabi_types::RMut,
    std_types::{RErr, RNone, ROk, ROption, RResult, RSlice, RSome, RStr, RString, RVec},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// What a loaded model tells the host about itself (shown by `list`, `GET /` and logs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// What the backend is, e.g. `tfidf-logreg` or `bert-onnx`.
    pub backend: String,
    /// Labels in output order.
    pub labels: Vec<String>,
    /// Device in use, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// Maximum tokens per pair, where the model has a limit.
    pub max_length: Option<usize>,
    /// Whether trained artifacts are loaded and `classify_batch` will work.
    pub loaded: bool,
    /// Folder holding the trained model.
    pub artifact_dir: Option<PathBuf>,
    /// Files in it that make up the model.
    pub artifacts: Vec<String>,
    /// Anything else worth showing (sizes, versions, settings).
    pub details: BTreeMap<String, serde_json::Value>,
}

impl ModelInfo {
    /// Info for `backend` with `labels`, on the CPU, not yet loaded.
    pub fn new(backend: impl Into<String>, labels: Vec<String>) -> Self {
        Self {
            backend: backend.into(),
            labels,
            device: "cpu".into(),
            ..Self::default()
        }
    }
}

/// A classifier backend: implement this, then call [`export_plugin!`](crate::export_plugin).
///
/// The host creates one value per model entry with [`Classifier::new`], calls
/// [`Classifier::load`] before serving, and [`Classifier::train`] for `clarity-host train`.
/// All calls for one model come from one host thread at a time. A panic in any method is
/// caught at the boundary and reported as an [`ErrorKind::Panic`] error.
pub trait Classifier: Send + 'static {
    /// Build the backend for one `models.yaml` entry. Keep this cheap: validate the
    /// configuration, but load trained artifacts in [`Classifier::load`].
    fn new(init: PluginInit) -> Result<Self, Error>
    where
        Self: Sized;

    /// Describe the model as it is now.
    fn info(&self) -> ModelInfo;

    /// Load the trained model for inference. Return an [`ErrorKind::NotTrained`] error
    /// when there is nothing to load yet.
    fn load(&mut self) -> Result<ModelInfo, Error>;

    /// Score each pair: one probability per label, in label order, summing to 1.
    fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error>;

    /// Each pair's length in tokens as the model would read it before truncation, for
    /// models that truncate at `max_length` (the host refuses pairs that would be cut when
    /// a request says `"truncate": false`). `None`, the default: this model never truncates.
    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, Error> {
        let _ = pairs;
        Ok(None)
    }

    /// Train on `job`, writing the finished model to `job.output_dir` and reporting progress
    /// through `ctx`. When [`TrainContext::should_stop`] turns true, write a checkpoint to
    /// `job.checkpoint_dir` and return an [`ErrorKind::Cancelled`] error.
    fn train(&mut self, job: TrainJob, ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error>;

    /// Rebuild the servable model (for the ML plugins, `model.onnx`) from the trained
    /// weights into `out_dir`, a copy of the artifact folder; return the files written.
    /// `clarity-host export` calls it. Plugins whose trained file is already what they
    /// serve keep this default, which says so.
    fn export(&mut self, out_dir: &std::path::Path) -> Result<Vec<String>, Error> {
        let _ = out_dir;
        Err(Error::new(
            ErrorKind::Unsupported,
            "this plugin serves its trained file directly and has no export step",
        ))
    }
}

/// Run `f`, turning an error into [`PluginError`] and a panic into an
/// [`ErrorKind::Panic`] error, so nothing unwinds across the library boundary.
fn guard<R>(call: &str, f: impl FnOnce() -> Result<R, Error>) -> RResult<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(err)) => RErr(err.into()),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            RErr(
                Error::new(
                    ErrorKind::Panic,
                    format!("plugin panicked in {call}: {what}"),
                )
                .into(),
            )
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<RString, Error> {
    serde_json::to_string(value)
        .map(RString::from)
        .map_err(|e| Error::other(format!("cannot encode plugin output as JSON: {e}")))
}

/// The [`Backend`] the host sees, wrapping a plugin author's [`Classifier`].
struct Guarded<T>(T);

impl<T: Classifier> Backend for Guarded<T> {
    fn info(&self) -> RResult<RString, PluginError> {
        guard("info", || to_json(&self.0.info()))
    }

    fn load(&mut self) -> RResult<RString, PluginError> {
        guard("load", || to_json(&self.0.load()?))
    }

    fn classify_batch(&self, pairs: RSlice<'_, TextPair>) -> RResult<RVec<RVec<f32>>, PluginError> {
        guard("classify_batch", || {
            let scores = self.0.classify_batch(pairs.as_slice())?;
            if scores.len() != pairs.len() {
                return Err(Error::other(format!(
                    "plugin returned {} score vectors for {} pairs",
                    scores.len(),
                    pairs.len()
                )));
            }
            Ok(scores.into_iter().map(RVec::from).collect())
        })
    }

    fn train(
        &mut self,
        job_json: RStr<'_>,
        events: EventSink_TO<'_, RMut<'_, ()>>,
    ) -> RResult<RString, PluginError> {
        guard("train", || {
            let job: TrainJob = serde_json::from_str(job_json.as_str())
                .map_err(|e| Error::input(format!("malformed training job from host: {e}")))?;
            let mut events = events;
            let mut emit = |json: &str| events.emit(RStr::from_str(json));
            let mut ctx = TrainContext::new(&mut emit);
            to_json(&self.0.train(job, &mut ctx)?)
        })
    }

    fn export(&mut self, out_dir: RStr<'_>) -> RResult<RString, PluginError> {
        guard("export", || {
            to_json(&self.0.export(std::path::Path::new(out_dir.as_str()))?)
        })
    }

    fn token_counts(
        &self,
        pairs: RSlice<'_, TextPair>,
    ) -> RResult<ROption<RVec<u64>>, PluginError> {
        guard("token_counts", || {
            let counts = self.0.token_counts(pairs.as_slice())?;
            Ok(match counts {
                Some(c) if c.len() != pairs.len() => {
                    return Err(Error::other(format!(
                        "plugin returned {} token counts for {} pairs",
                        c.len(),
                        pairs.len()
                    )))
                }
                Some(c) => RSome(c.into_iter().map(|n| n as u64).collect()),
                None => RNone,
            })
        })
    }
}

extern "C" fn new_backend<T: Classifier>(
    init_json: RStr<'_>,
    host: HostServicesBox,
) -> RResult<BackendBox, PluginError> {
    guard("new", || {
        crate::log::install(host);
        let init: PluginInit = serde_json::from_str(init_json.as_str())
            .map_err(|e| Error::config(format!("malformed model entry from host: {e}")))?;
        let backend = T::new(init)?;
        Ok(Backend_TO::from_value(Guarded(backend), TD_Opaque))
    })
}

/// Build the root module for classifier `T`. Called by [`export_plugin!`](crate::export_plugin).
pub fn root_module_for<T: Classifier>(
    name: &'static str,
    version: &'static str,
    kinds: &'static [RStr<'static>],
) -> PluginMod_Ref {
    PluginMod {
        sdk_version: RStr::from_str(crate::SDK_VERSION),
        name: RStr::from_str(name),
        version: RStr::from_str(version),
        kinds: RSlice::from_slice(kinds),
        new_backend: NewBackendFn(new_backend::<T>),
    }
    .leak_into_prefix()
}

/// Export `$ty` (a [`Classifier`]) as a Clarity plugin serving the model `type`s in `kinds`.
///
/// ```ignore
/// clarity_sdk::export_plugin!(MyClassifier, kinds = ["classic"]);
/// ```
///
/// The plugin crate needs `crate-type = ["cdylib"]` and a dependency on `clarity-sdk` only.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty, kinds = [$($kind:literal),+ $(,)?] $(,)?) => {
        #[doc(hidden)]
        pub fn __clarity_plugin_root_module() -> $crate::abi::PluginMod_Ref {
            const KINDS: &[$crate::__private::abi_stable::std_types::RStr<'static>] =
                &[$($crate::__private::abi_stable::std_types::RStr::from_str($kind)),+];
            $crate::__private::root_module_for::<$ty>(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
                KINDS,
            )
        }

        // What `#[abi_stable::export_root_module]` expands to, spelled with `$crate` paths so
        // a plugin needs no direct `abi_stable` dependency. The symbol name is checked against
        // abi_stable's own constant in the SDK's tests.
        #[doc(hidden)]
        #[no_mangle]
        pub static _1as_0lib_1header_0root_bmodule_bloader:
            $crate::__private::abi_stable::library::LibHeader = {
            extern "C" fn erased() -> $crate::__private::abi_stable::library::RootModuleResult {
                $crate::__private::abi_stable::library::__call_root_module_loader(
                    __clarity_plugin_root_module,
                )
            }
            unsafe {
                $crate::__private::abi_stable::library::LibHeader::from_constructor::<
                    $crate::abi::PluginMod_Ref,
                >(
                    erased,
                    $crate::__private::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    /// `export_plugin!` names the root-module static by hand; it must be abi_stable's name.
    #[test]
    fn root_symbol_name_matches_abi_stable() {
        let macro_source = include_str!("plugin.rs");
        let name = abi_stable::library::ROOT_MODULE_LOADER_NAME;
        assert!(
            macro_source.contains(&format!("pub static {name}:")),
            "export_plugin! must name its static `{name}`"
        );
    }
}
