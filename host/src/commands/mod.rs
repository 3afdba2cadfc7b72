//! One module per subcommand: each parses nothing and decides little, it calls the
//! library ([`crate::training`], [`crate::plugins::Registry`], [`crate::http`]) and prints.

mod export;
mod interactive;
mod list;
mod report;
mod runs;
mod serve;
mod test;
mod train;

use crate::backend::LoadedModel;
use crate::cli::{Args, Command};
use crate::config::{self, Config};
use crate::plugins::Registry;
use anyhow::Context;
use clarity_sdk::{ErrorKind, ModelSpec};
use std::process::ExitCode;

/// Run the chosen subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let whole_file = || config::load(&args.config);
    match args.command {
        Command::List(a) => list::run(&whole_file()?, &a),
        Command::Train(a) => train::run(&whole_file()?, &a),
        Command::Test(a) => test::run(&whole_file()?, &a),
        Command::Export(a) => export::run(&whole_file()?, &a),
        Command::Runs(a) => runs::run(&whole_file()?, &a),
        Command::ModelProcess(_) => crate::isolated::child::run(),
        Command::Serve(a) => {
            // A server serves the good entries of a file where some are broken.
            let (config, broken) = config::load_tolerant(&args.config)?;
            serve::run(config, broken, a)
        }
    }
}

/// The model `--model` names or, without it, the first enabled one (as the Python Clarity
/// did, saying which).
fn chosen_model<'c>(config: &'c Config, name: Option<&str>) -> anyhow::Result<&'c ModelSpec> {
    if let Some(name) = name {
        return Ok(config.model(name)?);
    }
    let spec = config.enabled().next().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no enabled model to use; name one with --model NAME, or set `enabled: true` \
             on an entry",
            config.path.display()
        )
    })?;
    tracing::info!("Using first enabled model: {}", spec.name);
    Ok(spec)
}

/// Open, build and load `spec` for inference, with a hint when it is not trained yet.
fn load_model(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
) -> anyhow::Result<LoadedModel> {
    if config::is_ensemble(spec) {
        return crate::ensemble::local::load(registry, config, spec);
    }
    let model = registry.model_for(config, spec)?;
    match model.into_loaded() {
        Ok(loaded) => Ok(loaded),
        Err(e) if e.kind == ErrorKind::NotTrained => Err(e).with_context(|| {
            format!(
                "model `{}` is not trained yet: run `clarity-host train --model {}`",
                spec.name, spec.name
            )
        }),
        Err(e) => Err(e).with_context(|| format!("model `{}` failed to load", spec.name)),
    }
}
