//! Finding, opening and talking to plugin libraries.
//!
//! Each library is opened with `lib_header_from_path` + `init_root_module`, once per path
//! (never `RootModule::load_from_file`, which caches one library per process). Failures
//! become one clear line naming the path and the fix. Libraries are never unloaded.
//!
//! A library is only ever opened by an absolute path: the one `plugin:` names in models.yaml
//! (relative to its folder), or a shipped plugin's file in [`plugin_search_dirs`]. The system
//! loader's own search (LD_LIBRARY_PATH, the ld.so cache) is never asked, and no request can
//! name a library. Each is checked once for write access by other users ([`permissions`]).

mod permissions;

use crate::backend::{Classify, LoadedModel};
use crate::config::Config;
use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::sabi_types::{VersionNumber, VersionStrings};
use abi_stable::std_types::{RResult, RSlice, RStr};
use clarity_sdk::abi::{
    BackendBox, EventSink, EventSink_TO, HostServices, HostServices_TO, LogLevel, PluginMod_Ref,
};
use clarity_sdk::groups::LabelGroups;
use clarity_sdk::{Error as SdkError, ErrorKind, ModelInfo, ModelSpec, PluginInit, TextPair};
use clarity_sdk::{TrainEvent, TrainJob, TrainReport};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a plugin library could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginLoadError {
    /// No file at the path.
    #[error("plugin not found at {path}: {hint}")]
    NotFound {
        /// Where we looked.
        path: PathBuf,
        /// How to get it there.
        hint: String,
    },
    /// The file exists but the OS cannot load it as a library.
    #[error("{path} is not a loadable library ({reason}): point `plugin:` at a plugin built with `cargo build --release`")]
    NotALibrary {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A library without Clarity's root module.
    #[error("{path} is a library but not a Clarity plugin (it exports no root module): build it with `clarity_sdk::export_plugin!`")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Built against another SDK version.
    #[error("{path} was built against clarity-sdk {plugin_sdk}, this host uses {host_sdk}: rebuild the plugin against clarity-sdk {host_sdk}")]
    SdkMismatch {
        /// The file.
        path: PathBuf,
        /// SDK version in the plugin.
        plugin_sdk: String,
        /// SDK version in the host.
        host_sdk: String,
    },
    /// Same version number, different type layout (an SDK edited without a version bump).
    #[error("{path} uses an incompatible clarity-sdk ABI ({detail}): rebuild the plugin against clarity-sdk {host_sdk}")]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// First line of abi_stable's report.
        detail: String,
        /// SDK version in the host.
        host_sdk: String,
    },
    /// The plugin does not serve this model `type`.
    #[error("{path} ({name}) serves types [{kinds}], not `{kind}`: fix `type:` or `plugin:` in models.yaml")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// Plugin crate name.
        name: String,
        /// Types it serves.
        kinds: String,
        /// Type asked for.
        kind: String,
    },
}

/// An opened plugin library.
#[derive(Clone, Copy)]
pub struct Plugin {
    module: PluginMod_Ref,
}

impl Plugin {
    /// The plugin crate's name.
    pub fn name(&self) -> String {
        self.module.name().to_string()
    }

    /// The plugin crate's version.
    pub fn version(&self) -> String {
        self.module.version().to_string()
    }

    /// The model types it serves.
    pub fn kinds(&self) -> Vec<String> {
        self.module.kinds().iter().map(|k| k.to_string()).collect()
    }

    /// Build the backend for one model. A panic inside the plugin's constructor comes back
    /// as an error (the SDK's export glue catches it).
    pub fn instantiate(&self, init: &PluginInit) -> Result<Model, SdkError> {
        let json = serde_json::to_string(init)
            .map_err(|e| SdkError::other(format!("cannot encode model entry: {e}")))?;
        let host = HostServices_TO::from_value(HostLogger, TD_Opaque);
        let new_backend = self.module.new_backend();
        match (new_backend.0)(RStr::from_str(&json), host) {
            RResult::ROk(backend) => Ok(Model {
                backend,
                name: init.spec.name.clone(),
                groups: None,
            }),
            RResult::RErr(e) => Err(e.into()),
        }
    }
}

/// Why a model's backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The plugin library could not be used.
    #[error(transparent)]
    Library(#[from] PluginLoadError),
    /// The plugin refused the model's entry.
    #[error("model `{model}`: plugin {path} refused its entry: {source}")]
    Refused {
        /// The model.
        model: String,
        /// The plugin library.
        path: PathBuf,
        /// What the plugin said.
        source: SdkError,
    },
}

/// Opens plugin libraries, each path once, and remembers the outcome.
#[derive(Default)]
pub struct Registry {
    opened: Mutex<HashMap<PathBuf, Result<Plugin, PluginLoadError>>>,
}

impl Registry {
    /// Build `spec`'s backend (not yet loaded) with the entry as `models.yaml` gives it.
    pub fn model_for(&self, config: &Config, spec: &ModelSpec) -> Result<Model, OpenError> {
        self.model_with(config, spec, &config.plugin_init(spec, None))
    }

    /// Build `spec`'s backend from `init` (training passes the data's labels; staging and
    /// export point `artifact_dir` elsewhere).
    pub fn model_with(
        &self,
        config: &Config,
        spec: &ModelSpec,
        init: &PluginInit,
    ) -> Result<Model, OpenError> {
        let path = plugin_path(spec, &config.dir);
        let plugin = self.open_for(&path, spec)?;
        tracing::debug!(
            "Model `{}`: plugin {} {} from {}",
            spec.name,
            plugin.name(),
            plugin.version(),
            path.display()
        );
        // Groups come from the entry itself: `init` carries the fine labels the plugin sees.
        plugin
            .instantiate(init)
            .map(|mut model| {
                model.groups = crate::config::label_groups(spec);
                model
            })
            .map_err(|source| OpenError::Refused {
                model: spec.name.clone(),
                path,
                source,
            })
    }

    /// Open the library at `path` (or return the earlier outcome for that path).
    pub fn open(&self, path: &Path) -> Result<Plugin, PluginLoadError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(outcome) = opened.get(&key) {
            return outcome.clone();
        }
        let outcome = open_library(path);
        opened.insert(key, outcome.clone());
        outcome
    }

    /// Open the plugin a model needs, checking it serves the model's `type`.
    pub fn open_for(&self, path: &Path, spec: &ModelSpec) -> Result<Plugin, PluginLoadError> {
        let plugin = self.open(path)?;
        let kinds = plugin.kinds();
        // A plugin named explicitly may serve any custom type it declares.
        if !kinds.iter().any(|k| k == &spec.kind) {
            return Err(PluginLoadError::WrongKind {
                path: path.to_path_buf(),
                name: plugin.name(),
                kinds: kinds.join(", "),
                kind: spec.kind.clone(),
            });
        }
        Ok(plugin)
    }
}

fn open_library(path: &Path) -> Result<Plugin, PluginLoadError> {
    let not_found = || PluginLoadError::NotFound {
        path: path.to_path_buf(),
        hint: build_hint(path),
    };
    if !path.is_file() {
        return Err(not_found());
    }
    // dlopen searches the loader's path for a name without a `/`: never give it one.
    let absolute = std::path::absolute(path).map_err(|_| not_found())?;
    permissions::warn_if_exposed(&absolute);
    let header = lib_header_from_path(&absolute).map_err(|e| classify_error(path, e))?;
    check_sdk_version(path, header.version_strings())?;
    let module = header
        .init_root_module::<PluginMod_Ref>()
        .map_err(|e| classify_error(path, e))?;
    Ok(Plugin { module })
}

/// Our version policy, checked before abi_stable's layout check so the message names both
/// versions: the same major version, and for 0.x the same minor version. (abi_stable itself
/// would accept a plugin with a newer 0.x minor, then fail on the layout.)
fn check_sdk_version(path: &Path, plugin: VersionStrings) -> Result<(), PluginLoadError> {
    let host_sdk = clarity_sdk::SDK_VERSION.to_string();
    let host = VersionNumber::new(PluginMod_Ref::VERSION_STRINGS);
    let plugin_version = VersionNumber::new(plugin);
    let (Ok(host), Ok(plugin_version)) = (host, plugin_version) else {
        return Err(PluginLoadError::AbiMismatch {
            path: path.to_path_buf(),
            detail: format!("unreadable SDK version `{plugin}`"),
            host_sdk,
        });
    };
    let compatible = host.major == plugin_version.major
        && (host.major != 0 || host.minor == plugin_version.minor);
    if compatible {
        Ok(())
    } else {
        Err(PluginLoadError::SdkMismatch {
            path: path.to_path_buf(),
            plugin_sdk: plugin_version.to_string(),
            host_sdk,
        })
    }
}

fn classify_error(path: &Path, err: LibraryError) -> PluginLoadError {
    let host_sdk = clarity_sdk::SDK_VERSION.to_string();
    match err {
        LibraryError::OpenError { err, .. } => PluginLoadError::NotALibrary {
            path: path.to_path_buf(),
            reason: first_line(&err.to_string()),
        },
        LibraryError::GetSymbolError { .. } => PluginLoadError::NotAPlugin {
            path: path.to_path_buf(),
        },
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            PluginLoadError::SdkMismatch {
                path: path.to_path_buf(),
                plugin_sdk: actual_version.to_string(),
                host_sdk,
            }
        }
        other => {
            let report = other.to_string();
            tracing::debug!("{}: abi_stable's full report:\n{report}", path.display());
            PluginLoadError::AbiMismatch {
                path: path.to_path_buf(),
                detail: layout_summary(&report),
                host_sdk,
            }
        }
    }
}

/// abi_stable's layout reports run to thousands of lines: name the first type that differs
/// and point at the full report.
fn layout_summary(report: &str) -> String {
    let differing = report
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("type:") && !l.contains("PrefixRef"))
        .map(|l| format!("{} differs", l.trim_start_matches("type:")));
    format!(
        "{}; run with --log-level debug for abi_stable's full report",
        differing.unwrap_or_else(|| "a type layout differs".into())
    )
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or(text).trim().to_string()
}

fn build_hint(path: &Path) -> String {
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    match shipped_crate_for(file) {
        Some(krate) => format!(
            "build it with `cargo build --release -p {krate}`, or set CLARITY_PLUGIN_DIR to the folder holding it"
        ),
        None => "build your plugin crate, then fix `plugin:` in models.yaml".into(),
    }
}

/// The crate that builds a shipped plugin library file, e.g. `libclarity_encoder.so` ->
/// `clarity-encoder`.
fn shipped_crate_for(file_name: &str) -> Option<String> {
    let stem = file_name
        .strip_prefix(std::env::consts::DLL_PREFIX)?
        .strip_suffix(std::env::consts::DLL_SUFFIX)?;
    stem.starts_with("clarity_").then(|| stem.replace('_', "-"))
}

/// The library file name of a shipped plugin: `encoder` -> `libclarity_encoder.so`.
pub fn shipped_file_name(name: &str) -> String {
    format!(
        "{}clarity_{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The shipped plugin for a model `type`.
pub fn default_plugin_for(kind: &str) -> &str {
    match kind {
        "classic" => "classic-example",
        other => other,
    }
}

/// Folders searched for shipped plugins: `$CLARITY_PLUGIN_DIR` (when set and not empty),
/// then the host's own folder (where `cargo build` puts both), then `<exe>/../lib/clarity`.
/// No other place: not the working folder, not the system loader's path.
pub fn plugin_search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CLARITY_PLUGIN_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("../lib/clarity"));
        dirs.insert(dirs.len() - 1, exe_dir);
    }
    dirs
}

/// Where the plugin of `spec` is: an explicit path (relative to `models.yaml`), a bare
/// shipped plugin name, or the shipped plugin for its `type`.
pub fn plugin_path(spec: &ModelSpec, config_dir: &Path) -> PathBuf {
    let name = match &spec.plugin {
        Some(p) if looks_like_path(p) => {
            // Drop `.` components so messages show the path people expect.
            return config_dir
                .join(p)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
        }
        Some(bare) => bare.as_str(),
        None => default_plugin_for(&spec.kind),
    };
    let file = shipped_file_name(name);
    let dirs = plugin_search_dirs();
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .unwrap_or_else(|| dirs.first().map(|d| d.join(&file)).unwrap_or(file.into()))
}

fn looks_like_path(p: &str) -> bool {
    p.contains('/') || p.contains('\\') || p.ends_with(std::env::consts::DLL_SUFFIX)
}

/// Forwards plugin log lines into the host's tracing setup.
struct HostLogger;

impl HostServices for HostLogger {
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let (target, message) = (target.as_str(), message.as_str());
        match level {
            LogLevel::Error => tracing::error!(plugin = target, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin = target, "{message}"),
            LogLevel::Info => tracing::info!(plugin = target, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin = target, "{message}"),
            LogLevel::Trace => tracing::trace!(plugin = target, "{message}"),
        }
    }
}

/// One model's backend, with typed calls. Every call returns errors, never panics: the
/// plugin side catches its own panics.
pub struct Model {
    backend: BackendBox,
    name: String,
    /// `label_config.groups`: the plugin answers fine labels, the model the coarse ones.
    groups: Option<LabelGroups>,
}

impl Model {
    /// The model's name in `models.yaml`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Load the trained model for inference.
    pub fn load(&mut self) -> Result<ModelInfo, SdkError> {
        decode(self.backend.load())
    }

    /// Load the trained model and hand it over for scoring.
    pub fn into_loaded(mut self) -> Result<LoadedModel, SdkError> {
        let info = self.load()?;
        let groups = self.groups.take();
        LoadedModel::new(Box::new(self), info).with_groups(groups)
    }

    /// Train, passing every event to `on_event`; it returns `false` to ask for a stop.
    pub fn train(
        &mut self,
        job: &TrainJob,
        mut on_event: impl FnMut(TrainEvent) -> bool,
    ) -> Result<TrainReport, SdkError> {
        let json = serde_json::to_string(job)
            .map_err(|e| SdkError::other(format!("cannot encode training job: {e}")))?;
        let mut sink = EventForwarder(&mut on_event);
        let events = EventSink_TO::from_ptr(&mut sink, TD_Opaque);
        decode(self.backend.train(RStr::from_str(&json), events))
    }

    /// Write the servable model from the trained weights into `out_dir`.
    pub fn export(&mut self, out_dir: &std::path::Path) -> Result<Vec<String>, SdkError> {
        let dir = out_dir.to_string_lossy();
        decode(self.backend.export(RStr::from_str(&dir)))
    }
}

impl Classify for Model {
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        match self.backend.classify_batch(RSlice::from_slice(pairs)) {
            RResult::ROk(scores) => Ok(scores.into_iter().map(|s| s.into_vec()).collect()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, SdkError> {
        match self.backend.token_counts(RSlice::from_slice(pairs)) {
            RResult::ROk(counts) => Ok(counts
                .into_option()
                .map(|c| c.into_iter().map(|n| n as usize).collect())),
            RResult::RErr(e) => Err(e.into()),
        }
    }
}

struct EventForwarder<'a, F: FnMut(TrainEvent) -> bool>(&'a mut F);

impl<F: FnMut(TrainEvent) -> bool> EventSink for EventForwarder<'_, F> {
    fn emit(&mut self, event_json: RStr<'_>) -> bool {
        match serde_json::from_str::<TrainEvent>(event_json.as_str()) {
            Ok(event) => (self.0)(event),
            Err(e) => {
                tracing::warn!("ignoring a malformed training event from the plugin: {e}");
                true
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(
    result: RResult<abi_stable::std_types::RString, clarity_sdk::abi::PluginError>,
) -> Result<T, SdkError> {
    match result {
        RResult::ROk(json) => serde_json::from_str(json.as_str()).map_err(|e| {
            SdkError::new(
                ErrorKind::Other,
                format!("plugin sent malformed JSON ({e}): is it built against this clarity-sdk?"),
            )
        }),
        RResult::RErr(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_names_round_trip() {
        let file = shipped_file_name("classic-example");
        assert!(file.contains("clarity_classic_example"));
        assert_eq!(
            shipped_crate_for(&file).as_deref(),
            Some("clarity-classic-example")
        );
        assert_eq!(default_plugin_for("classic"), "classic-example");
        assert_eq!(default_plugin_for("encoder"), "encoder");
    }

    #[test]
    fn missing_file_names_path_and_fix() {
        let path = PathBuf::from("/nonexistent/libclarity_encoder.so");
        let err = Registry::default().open(&path).err().map(|e| e.to_string());
        let msg = err.unwrap_or_default();
        assert!(msg.contains("/nonexistent/libclarity_encoder.so"), "{msg}");
        assert!(
            msg.contains("cargo build --release -p clarity-encoder"),
            "{msg}"
        );
    }

    #[test]
    fn layout_summary_names_the_differing_type() {
        let report = "\nCompared <this>:\n  type:PrefixRef<'a, PluginMod>\n  type:PluginMod\n";
        assert!(layout_summary(report).starts_with("PluginMod differs"));
    }
}
