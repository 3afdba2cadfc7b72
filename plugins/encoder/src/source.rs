//! Which classifier fine-tuned elsewhere an entry serves, and when its import is redone.
//!
//! Candidates, in order: the artifact folder itself (the Python Clarity's `output_dir` is the
//! Trainer folder), then the folder `model_config.model_name` names: a local folder, else a
//! pip package or a hub id as the pretrained-model search resolves it (a classifier someone
//! fine-tuned and pushed serves straight from the hub cache). A folder we trained is never a
//! source; a pretrained base model there is the "train first" error.

use crate::hf_folder::{self, Folder, HfClassifier};
use crate::import;
use crate::meta::EncoderMeta;
use clarity_runtime::meta::MetaFile;
use clarity_runtime::resolve;
use clarity_runtime::serve::spec;
use clarity_sdk::{Error, PluginInit};
use std::path::{Path, PathBuf};

/// The fine-tuned classifier `init`'s entry points at, if any.
pub fn fine_tuned(init: &PluginInit) -> Result<Option<HfClassifier>, Error> {
    let mut base = None;
    let artifact = &init.artifact_dir;
    let named = init.spec.model_config.model_name.as_deref();
    let candidates =
        std::iter::once(artifact.clone()).chain(named.and_then(|n| named_dir(init, n)));
    for dir in candidates {
        // Our own trained folder is not a source, even though it looks like one.
        if EncoderMeta::present(&dir) && !imported_in_place(&dir) {
            continue;
        }
        match hf_folder::inspect(&dir)? {
            Folder::Classifier(hf) => return checked_labels(init, hf).map(Some),
            Folder::Base(why) => base = base.or(Some(why)),
            Folder::Other => {}
        }
    }
    match base {
        Some(why) if !EncoderMeta::present(artifact) => Err(Error::not_trained(format!(
            "{why}; fine-tune it first: `clarity-host train --model {}`",
            init.spec.name
        ))),
        _ => Ok(None),
    }
}

/// The folder `model_name` stands for. A name that resolves nowhere (a typo, or the hub out
/// of reach) is no candidate here: the entry is then "not trained", and `train` reports the
/// search in full.
fn named_dir(init: &PluginInit, name: &str) -> Option<PathBuf> {
    let local = init.resolve(Path::new(name));
    if local.is_dir() {
        return Some(local);
    }
    match resolve::model_dir(name, &init.config_dir) {
        Ok(dir) => Some(dir),
        Err(e) => {
            clarity_sdk::debug!("{}: no fine-tuned classifier to serve: {e}", init.spec.name);
            None
        }
    }
}

/// `label_config.labels`, when set, must be `id2label` in the same order: serving one model
/// under the other's names would mislabel every answer.
fn checked_labels(init: &PluginInit, hf: HfClassifier) -> Result<HfClassifier, Error> {
    let configured = init.labels();
    if !configured.is_empty() && configured != hf.labels.as_slice() {
        return Err(Error::config(format!(
            "{}: id2label {:?} differs from label_config.labels {configured:?}: make them the \
             same labels in the same order (or drop label_config)",
            hf.dir.join("config.json").display(),
            hf.labels
        )));
    }
    Ok(hf)
}

/// Whether `dir` holds a model we imported from itself (the fine-tuned folder is its own
/// artifact folder), so it is still a source to check for changes.
fn imported_in_place(dir: &Path) -> bool {
    EncoderMeta::read(dir)
        .ok()
        .and_then(|m| m.imported)
        .is_some_and(|i| i.source == dir)
}

/// The max_length an imported model is served with.
fn max_length(init: &PluginInit, hf: &HfClassifier) -> usize {
    spec::max_length(init).min(hf.arch.max_sequence())
}

/// Whether the imported artifact no longer matches its source (retrained, another folder,
/// another max_length): it is imported again.
pub fn stale(init: &PluginInit, meta: &EncoderMeta, hf: &HfClassifier) -> bool {
    match &meta.imported {
        Some(imported) => {
            imported.source != hf.dir
                || imported.fingerprint != hf.fingerprint()
                || meta.max_length != max_length(init, hf)
        }
        None => false,
    }
}

/// Import `hf` into the entry's artifact folder (ONNX export, tokenizer.json, meta).
pub fn import(init: &PluginInit, hf: &HfClassifier) -> Result<(), Error> {
    clarity_sdk::info!(
        "{}: importing the fine-tuned classifier {} ({} labels: {}) into {}",
        init.spec.name,
        hf.dir.display(),
        hf.labels.len(),
        hf.labels.join(", "),
        init.artifact_dir.display()
    );
    let ops = crate::export::GraphOps::of(init)?;
    import::import(hf, max_length(init, hf), ops, &init.artifact_dir)?;
    Ok(())
}
