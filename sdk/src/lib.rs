//! The Clarity plugin SDK.
//!
//! `clarity-host` loads backends (`classic`, `encoder`, `lora`, or your own) from dynamic
//! libraries at run time. This crate is the contract between the two sides:
//!
//! - [`Classifier`]: the plain Rust trait a plugin author implements,
//! - [`export_plugin!`]: the one macro that turns that implementation into a loadable plugin,
//!   with every call guarded so a panic inside the plugin becomes an error,
//! - [`config`]: the `models.yaml` schema (the host parses it, the plugin receives it),
//! - [`train`]: training jobs, progress events and reports,
//! - [`metrics`]: accuracy, macro-F1, per-label scores and confusion matrices,
//! - [`abi`]: the `abi_stable` types that actually cross the library boundary. Plugin
//!   authors never need them; the host uses them to load plugins.
//!
//! # A minimal plugin
//!
//! ```
//! use clarity_sdk::{Classifier, Error, ModelInfo, PluginInit, TextPair, TrainContext, TrainJob, TrainReport};
//!
//! struct Constant { labels: Vec<String> }
//!
//! impl Classifier for Constant {
//!     fn new(init: PluginInit) -> Result<Self, Error> {
//!         Ok(Self { labels: init.spec.label_config.labels.clone() })
//!     }
//!     fn info(&self) -> ModelInfo {
//!         ModelInfo::new("constant", self.labels.clone())
//!     }
//!     fn load(&mut self) -> Result<ModelInfo, Error> {
//!         Ok(self.info())
//!     }
//!     fn classify_batch(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, Error> {
//!         let n = self.labels.len().max(1) as f32;
//!         Ok(pairs.iter().map(|_| vec![1.0 / n; self.labels.len()]).collect())
//!     }
//!     fn train(&mut self, job: TrainJob, _ctx: &mut TrainContext<'_>) -> Result<TrainReport, Error> {
//!         Ok(TrainReport::default())
//!     }
//! }
//!
//! clarity_sdk::export_plugin!(Constant, kinds = ["classic"]);
//! # fn main() {}
//! ```
#![deny(missing_docs)]
// abi_stable's derive macros generate code that newer rustc versions warn about.
#![allow(non_local_definitions, non_camel_case_types)]

pub mod abi;
pub mod config;
pub mod durable;
mod error;
pub mod groups;
pub mod input;
pub mod log;
pub mod metrics;
mod plugin;
pub mod selection;
pub mod train;

pub use abi::TextPair;
pub use config::{ModelSpec, PluginInit};
pub use error::{Error, ErrorKind};
pub use plugin::{Classifier, ModelInfo};
pub use train::{Example, Flow, TrainContext, TrainEvent, TrainJob, TrainReport};

/// The SDK version a plugin was built against. The host refuses plugins built against
/// another minor version (0.x) and says which version to rebuild against.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    //! Items the [`export_plugin!`](crate::export_plugin) macro expands to. Not public API.
    pub use crate::plugin::root_module_for;
    pub use abi_stable;
}
