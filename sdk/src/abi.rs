//! The types that cross the library boundary.
//!
//! Everything here is `#[repr(C)]` and checked by `abi_stable` when the host loads a plugin,
//! so a plugin built against an incompatible SDK is refused instead of crashing. Structured
//! data that is free to grow (configuration, model info, training jobs, events, reports)
//! crosses as JSON text; the hot path (`classify_batch`) uses typed slices.

use crate::error::{Error, ErrorKind};
use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RNone, ROk, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

/// One question/context pair to classify.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct TextPair {
    question: RString,
    context: RString,
}

impl TextPair {
    /// A pair from its two texts.
    pub fn new(question: impl Into<String>, context: impl Into<String>) -> Self {
        Self {
            question: RString::from(question.into()),
            context: RString::from(context.into()),
        }
    }

    /// The question asked.
    pub fn question(&self) -> &str {
        self.question.as_str()
    }

    /// The context: typically the full interview question and the answer.
    pub fn context(&self) -> &str {
        self.context.as_str()
    }
}

/// [`Error`] in its FFI form.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct PluginError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// The message for people.
    pub message: RString,
}

impl From<Error> for PluginError {
    fn from(e: Error) -> Self {
        Self {
            kind: e.kind,
            message: e.message.into(),
        }
    }
}

impl From<PluginError> for Error {
    fn from(e: PluginError) -> Self {
        Self {
            kind: e.kind,
            message: e.message.into_string(),
        }
    }
}

/// Log levels a plugin can log at through the host.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error,
    /// Something looks wrong but work goes on.
    Warn,
    /// Progress worth a line in the log.
    Info,
    /// Detail for debugging.
    Debug,
    /// Very fine detail.
    Trace,
}

/// What the host offers a plugin: for now, its logger (so plugin logs follow `logging.yaml`).
#[sabi_trait]
pub trait HostServices: Send + Sync {
    /// Write one log record through the host's logging setup.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
}

/// Where a training run sends its progress events (JSON-encoded [`crate::TrainEvent`]s).
#[sabi_trait]
pub trait EventSink {
    /// Deliver one event. Returns `false` when the host wants training to stop.
    #[sabi(last_prefix_field)]
    fn emit(&mut self, event_json: RStr<'_>) -> bool;
}

/// A loaded backend: one model of `models.yaml`, owned by the host.
#[sabi_trait]
pub trait Backend: Send {
    /// JSON [`crate::ModelInfo`].
    fn info(&self) -> RResult<RString, PluginError>;

    /// Load the trained artifacts for inference; returns JSON [`crate::ModelInfo`].
    fn load(&mut self) -> RResult<RString, PluginError>;

    /// One probability vector per pair, in the order of the model's labels.
    fn classify_batch(&self, pairs: RSlice<'_, TextPair>) -> RResult<RVec<RVec<f32>>, PluginError>;

    /// Run a JSON [`crate::TrainJob`], reporting to `events`; returns JSON [`crate::TrainReport`].
    #[sabi(last_prefix_field)]
    fn train(
        &mut self,
        job_json: RStr<'_>,
        events: EventSink_TO<'_, abi_stable::sabi_types::RMut<'_, ()>>,
    ) -> RResult<RString, PluginError>;

    /// Write the servable model (e.g. `model.onnx`) from the trained weights into the
    /// folder `out_dir`; returns a JSON list of the files written.
    fn export(&mut self, out_dir: RStr<'_>) -> RResult<RString, PluginError>;

    /// Each pair's untruncated length in tokens, or `None` when the model never truncates.
    /// Plugins built before this method existed answer `None` (this default).
    fn token_counts(
        &self,
        pairs: RSlice<'_, TextPair>,
    ) -> RResult<ROption<RVec<u64>>, PluginError> {
        let _ = pairs;
        ROk(RNone)
    }
}

/// A boxed backend as it crosses the boundary.
pub type BackendBox = Backend_TO<'static, RBox<()>>;

/// The host services as they cross the boundary.
pub type HostServicesBox = HostServices_TO<'static, RBox<()>>;

/// The constructor every plugin exports: JSON [`crate::PluginInit`] in, a backend out.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct NewBackendFn(
    pub  extern "C" fn(
        init_json: RStr<'_>,
        host: HostServicesBox,
    ) -> RResult<BackendBox, PluginError>,
);

/// The root module of a plugin library: what the host finds when it opens the file.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// [`crate::SDK_VERSION`] as the plugin was built.
    pub sdk_version: RStr<'static>,
    /// The plugin's crate name.
    pub name: RStr<'static>,
    /// The plugin's crate version.
    pub version: RStr<'static>,
    /// The model `type`s this plugin serves (`classic`, `encoder`, `lora`, ...).
    pub kinds: RSlice<'static, RStr<'static>>,
    /// Build a backend for one model.
    #[sabi(last_prefix_field)]
    pub new_backend: NewBackendFn,
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "clarity_plugin";
    const NAME: &'static str = "clarity_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
