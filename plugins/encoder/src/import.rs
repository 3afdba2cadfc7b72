//! Serving a classifier fine-tuned elsewhere ([`HfClassifier`]): its weights are loaded into
//! candle, exported with our ONNX writer, and written as an artifact folder that serves like
//! one trained here (`encoder_meta.json` records the source and its fingerprint, and that
//! the model reads pairs as (context, question), as the Python Clarity trained it).
//!
//! The folder is written into a staging folder first and moved into place only when
//! complete. When the artifact folder *is* the fine-tuned folder (the Python Clarity's
//! `output_dir`), the new files are staged inside it and moved in with `encoder_meta.json`
//! last, so an interrupted import leaves no half-model that looks served.

use crate::hf_folder::HfClassifier;
use crate::meta::{self, EncoderMeta, Imported};
use crate::model::EncoderModel;
use crate::{export, weights};
use candle_core::Device;
use clarity_runtime::hf_tokenizer::{self, MERGES_TXT, SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG};
use clarity_runtime::meta::MetaFile;
use clarity_runtime::onnx;
use clarity_runtime::tokenize::PairOrder;
use clarity_sdk::Error;
use std::path::{Path, PathBuf};

/// Files of the source folder copied beside the exported model (those it has), so the
/// artifact folder also loads in transformers.
const COPIED: [&str; 5] = [
    meta::CONFIG_FILE,
    TOKENIZER_CONFIG,
    SPECIAL_TOKENS_MAP,
    hf_tokenizer::VOCAB_TXT,
    MERGES_TXT,
];

/// Import `hf` into `artifact_dir`, pairs cut at `max_length` tokens. Returns the meta
/// written.
pub fn import(
    hf: &HfClassifier,
    max_length: usize,
    ops: export::GraphOps,
    artifact_dir: &Path,
) -> Result<EncoderMeta, Error> {
    let model = load(hf)?;
    let tokenizer =
        hf_tokenizer::folder_tokenizer(&hf.dir).map_err(|e| Error::config(e.to_string()))?;
    if tokenizer.get_vocab_size(true) > hf.arch.vocab_size {
        return Err(Error::config(format!(
            "{}: the tokenizer has {} tokens but config.json's vocab_size is {}: the tokenizer \
             files are not this model's",
            hf.dir.display(),
            tokenizer.get_vocab_size(true),
            hf.arch.vocab_size
        )));
    }
    let in_place = same_folder(&hf.dir, artifact_dir);
    let staging = Staged::create(artifact_dir, in_place)?;
    let out = staging.path();
    export::export(&model, ops, &out.join(meta::ONNX_FILE))?;
    if !(in_place && hf.dir.join(meta::TOKENIZER_FILE).is_file()) {
        let path = out.join(meta::TOKENIZER_FILE);
        tokenizer
            .save(&path, false)
            .map_err(|e| Error::other(format!("cannot write {}: {e}", path.display())))?;
    }
    if !in_place {
        weights::save(model.varmap_ref(), &out.join(meta::WEIGHTS_FILE))
            .map_err(|e| Error::other(e.to_string()))?;
        for name in COPIED.into_iter().chain([hf_tokenizer::VOCAB_JSON]) {
            let from = hf.dir.join(name);
            if from.is_file() {
                std::fs::copy(&from, out.join(name)).map_err(|e| Error::io(&from, e))?;
            }
        }
    }
    let meta = EncoderMeta {
        format: EncoderMeta::FORMAT,
        labels: hf.labels.clone(),
        max_length: max_length.min(hf.arch.max_sequence()),
        arch: hf.arch.clone(),
        base_model: hf.dir.display().to_string(),
        opset: onnx::OPSET,
        pair_order: PairOrder::ContextQuestion,
        input: None,
        imported: Some(Imported {
            source: hf.dir.clone(),
            fingerprint: hf.fingerprint(),
        }),
        quantization: None,
    };
    meta.write(out)?;
    staging.commit()?;
    Ok(meta)
}

/// The classifier in candle, every tensor from the file (none may be missing).
pub fn load(hf: &HfClassifier) -> Result<EncoderModel, Error> {
    let device = Device::Cpu;
    let filled = weights::load_pretrained(&hf.arch, hf.labels.len(), &hf.dir, &device, 0)
        .map_err(|e| Error::config(e.to_string()))?;
    if !filled.initialised.is_empty() {
        return Err(Error::config(format!(
            "{}: a fine-tuned classifier, but its weights lack {:?}",
            hf.dir.display(),
            filled.initialised
        )));
    }
    EncoderModel::from_varmap(hf.arch.clone(), filled.varmap, device)
        .map_err(|e| Error::other(e.to_string()))
}

fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The staging folder of one import; removed unless committed.
struct Staged {
    dir: PathBuf,
    target: PathBuf,
    in_place: bool,
    committed: bool,
}

impl Staged {
    fn create(target: &Path, in_place: bool) -> Result<Self, Error> {
        let pid = std::process::id();
        let name = target
            .file_name()
            .map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        let dir = if in_place {
            target.join(format!(".import-{pid}"))
        } else {
            let parent = target.parent().unwrap_or(Path::new("."));
            parent.join(format!(".{name}.import-{pid}"))
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self {
            dir,
            target: target.to_path_buf(),
            in_place,
            committed: false,
        })
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn commit(mut self) -> Result<(), Error> {
        if self.in_place {
            // encoder_meta.json last: until it is in place, the folder is not served.
            let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            names.sort_by_key(|n| n == meta::META_FILE);
            for name in names {
                let from = self.dir.join(&name);
                std::fs::rename(&from, self.target.join(&name)).map_err(|e| Error::io(&from, e))?;
            }
            let _ = std::fs::remove_dir(&self.dir);
        } else {
            let old = self.dir.with_extension("old");
            let had_old = self.target.exists();
            if had_old {
                std::fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
            }
            if let Err(e) = std::fs::rename(&self.dir, &self.target) {
                if had_old {
                    let _ = std::fs::rename(&old, &self.target);
                }
                return Err(Error::io(&self.target, e));
            }
            if had_old {
                let _ = std::fs::remove_dir_all(&old);
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
