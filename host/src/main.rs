//! `clarity-host`: train and serve the text classifiers declared in `models.yaml`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    clarity_host::run(clarity_host::cli::Args::parse())
}
