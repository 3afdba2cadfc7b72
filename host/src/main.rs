//! `clarity-host`: train and serve the text classifiers declared in `models.yaml`.
//!
//! The host knows no machine learning: it reads `models.yaml`, loads each model's plugin
//! library, and talks to it only through `clarity-sdk`.

mod artifacts;
mod cli;
mod commands;
mod config;
mod console;
mod data;
mod http;
mod logging;
mod metrics;
mod plugins;
mod tensorboard;
mod training;
mod worker;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let logging_path = args.logging.clone().unwrap_or_else(|| {
        args.config
            .parent()
            .map(|d| d.join("logging.yaml"))
            .unwrap_or_else(|| "logging.yaml".into())
    });
    let _log_guard = match logging::load_config(&logging_path)
        .and_then(|cfg| logging::init(&cfg, args.log_level.as_deref()))
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
            if e.is::<commands::Interrupted>() {
                // What shells report for a run ended by SIGINT.
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
