//! `clarity-host export`: rebuild a trained model's servable file (for the ML plugins,
//! `model.onnx`) from its saved weights, in place or into another folder.
//!
//! The export is written into a staging copy of the model folder, loaded and run once, and
//! only then swapped into place: a failed export leaves the previous model untouched.

use crate::artifacts::{self, Staging, CHECKPOINTS};
use crate::cli::ExportArgs;
use crate::config::Config;
use crate::plugins::Registry;
use anyhow::{bail, Context};
use clarity_sdk::TextPair;
use std::path::Path;
use std::process::ExitCode;

pub fn run(config: &Config, args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let spec = config.model(&args.model)?;
    if let Some(ensemble) = &spec.ensemble_config {
        bail!(
            "`{}` is an ensemble: it has no servable file of its own; export its members ({})",
            spec.name,
            ensemble.members.join(", ")
        );
    }
    let source = config.artifact_dir(spec);
    if !artifacts::has_model(&source) {
        bail!(
            "model `{}` has no trained model in {} to export: run `clarity-host train --model {}`",
            spec.name,
            source.display(),
            spec.name
        );
    }
    let target = args.output.clone().unwrap_or_else(|| source.clone());
    let staging = Staging::create(&target)
        .with_context(|| format!("cannot export into {}", target.display()))?;
    copy_model_files(&source, staging.path())?;

    let registry = Registry::default();
    let mut init = config.plugin_init(spec, None);
    init.artifact_dir = staging.path().to_path_buf();
    if let Some(quantize) = args.quantize {
        init.spec.model_config.quantize = quantize;
    }
    let mut model = registry.model_with(config, spec, &init)?;
    let files = model
        .export(staging.path())
        .with_context(|| format!("export of `{}` failed", spec.name))?;
    drop(model);

    // The exported model must load and score before it replaces anything.
    let check = registry
        .model_with(config, spec, &init)?
        .into_loaded()
        .context("the exported model does not load")?;
    check
        .classify(&[TextPair::new(
            "Is the export complete?",
            "It loads and scores.",
        )])
        .context("the exported model fails to score")?;
    drop(check);

    let dir = staging
        .commit()
        .with_context(|| format!("cannot move the export into {}", target.display()))?;
    tracing::info!(
        "Exported `{}` to {}: {}",
        spec.name,
        dir.display(),
        files.join(", ")
    );
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Copy the model's files (not its checkpoints) into the staging folder.
fn copy_model_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name() == CHECKPOINTS || !path.is_file() {
            continue;
        }
        let dest = to.join(entry.file_name());
        std::fs::copy(&path, &dest)
            .with_context(|| format!("copying {} to {}", path.display(), dest.display()))?;
    }
    Ok(())
}
