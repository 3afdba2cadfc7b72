//! One module per subcommand.

mod export;
mod list;
mod report;
mod serve;
mod test;
mod train;

pub use train::Interrupted;

use crate::cli::{Args, Command};
use crate::config::{self, Config};
use crate::plugins::{self, Model, Registry};
use anyhow::Context;
use clarity_sdk::{ErrorKind, ModelInfo, ModelSpec};
use std::process::ExitCode;

/// Run the chosen subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    match args.command {
        Command::List(a) => list::run(&config, &a),
        Command::Train(a) => train::run(&config, &a),
        Command::Test(a) => test::run(&config, &a),
        Command::Serve(a) => serve::run(config, a),
        Command::Export(a) => export::run(&config, &a),
    }
}

/// Open `spec`'s plugin and build its backend (not yet loaded).
pub fn instantiate(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
    labels: Option<Vec<String>>,
) -> anyhow::Result<Model> {
    let path = plugins::plugin_path(spec, &config.dir);
    let plugin = registry.open_for(&path, spec)?;
    tracing::debug!(
        "Model `{}`: plugin {} {} from {}",
        spec.name,
        plugin.name(),
        plugin.version(),
        path.display()
    );
    let init = config.plugin_init(spec, labels);
    plugin.instantiate(&init).with_context(|| {
        format!(
            "model `{}`: plugin {} refused its entry",
            spec.name,
            path.display()
        )
    })
}

/// Open, build and load `spec` for inference, with a hint when it is not trained yet.
pub fn load_model(
    registry: &Registry,
    config: &Config,
    spec: &ModelSpec,
) -> anyhow::Result<(Model, ModelInfo)> {
    let mut model = instantiate(registry, config, spec, None)?;
    match model.load() {
        Ok(info) => Ok((model, info)),
        Err(e) if e.kind == ErrorKind::NotTrained => Err(anyhow::anyhow!(
            "model `{}` is not trained yet ({}): run `clarity-host train --model {}`",
            spec.name,
            e.message,
            spec.name
        )),
        Err(e) => Err(anyhow::anyhow!(
            "model `{}` failed to load: {}",
            spec.name,
            e.message
        )),
    }
}
