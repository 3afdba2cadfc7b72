//! `clarity-host` as a library: train and serve the text classifiers declared in
//! `models.yaml`. The binary (`main.rs`) only parses arguments and calls [`run`].
//!
//! The host knows no machine learning: it reads `models.yaml`, loads each model's plugin
//! library, and talks to it only through `clarity-sdk`.
//!
//! - [`config`]: `models.yaml`, checked, with file/line/field in every error.
//! - [`plugins`]: plugin libraries and the models they build ([`plugins::Registry`]).
//! - [`backend`]: the [`backend::Classify`] seam and the shape-checked [`backend::LoadedModel`].
//! - [`training`]: one training run from data to a committed model folder.
//! - [`worker`] and [`http`]: batching per model, and the axum router over it.
//! - [`reload`]: hot reload of the served models from `models.yaml`.
//! - [`watchdog`]: restarts a model whose plugin call never returns.
//! - [`isolated`]: a model served from a process of its own (`isolation: process`).
//! - [`commands`]: the subcommands, thin adapters over the above.

pub mod artifacts;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod data;
pub mod ensemble;
pub mod http;
pub mod isolated;
pub mod logging;
pub mod metrics;
pub mod plugins;
pub mod reload;
pub mod runs;
pub mod sweep;
pub mod tensorboard;
pub mod training;
pub mod watchdog;
pub mod worker;

use std::process::ExitCode;

/// Set up logging from `logging.yaml`, run the subcommand, and turn its outcome into the
/// process's exit code (130 for an interrupted training, as shells report SIGINT).
pub fn run(args: cli::Args) -> ExitCode {
    let logging_path = args.logging.clone().unwrap_or_else(|| {
        args.config
            .parent()
            .map(|d| d.join("logging.yaml"))
            .unwrap_or_else(|| "logging.yaml".into())
    });
    // A model's process logs plain lines to stderr, which its server copies into its log.
    if let cli::Command::ModelProcess(_) = &args.command {
        logging::install_plain_stderr(args.log_level.as_deref());
        return match commands::run(args) {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let _log_guard = match logging::load_settings(&logging_path)
        .and_then(|settings| logging::install(&settings, args.log_level.as_deref()))
    {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            if e.is::<training::Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
