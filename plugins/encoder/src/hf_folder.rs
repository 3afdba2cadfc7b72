//! Recognising a Hugging Face Trainer output folder: a `*ForSequenceClassification` model
//! fine-tuned elsewhere (e.g. by the Python Clarity), ready to serve without training.
//!
//! A folder is such a classifier when its weights hold the classification head's output
//! layer (`classifier.weight`, RoBERTa's `classifier.out_proj.weight`) and `config.json`
//! names the labels in `id2label`. Our head is the same as transformers' for each family
//! (BERT: pooler + classifier, RoBERTa: `classifier.dense` + `classifier.out_proj` on `<s>`,
//! DistilBERT: `pre_classifier` + `classifier`), under the same names, so the weights load
//! as they are and the logits match.

use crate::arch::Arch;
use crate::meta;
use crate::names;
use crate::weights;
use clarity_runtime::serve;
use clarity_sdk::Error;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// A fine-tuned classifier folder.
#[derive(Debug, Clone)]
pub struct HfClassifier {
    /// The folder.
    pub dir: PathBuf,
    /// Its architecture.
    pub arch: Arch,
    /// `id2label` ordered by id.
    pub labels: Vec<String>,
    /// Its weight files.
    pub weights: Vec<PathBuf>,
}

/// What a folder holds.
#[derive(Debug)]
pub enum Folder {
    /// A fine-tuned classifier.
    Classifier(HfClassifier),
    /// A pretrained base model (no classifier head): it must be fine-tuned first. The text
    /// says why.
    Base(String),
    /// Not a model folder (no `config.json` or no weights).
    Other,
}

/// Look at `dir`. Errors are a folder that is a classifier but cannot be served as one.
pub fn inspect(dir: &Path) -> Result<Folder, Error> {
    let config = dir.join(meta::CONFIG_FILE);
    if !config.is_file() {
        return Ok(Folder::Other);
    }
    let Ok(files) = weights::weight_files(dir) else {
        return Ok(Folder::Other);
    };
    let arch = Arch::from_file(&config).map_err(|e| Error::config(e.to_string()))?;
    let shapes = weights::tensor_shapes(&files).map_err(|e| Error::config(e.to_string()))?;
    let labels = serve::hf_labels(&config)?;
    let output = format!("{}.weight", names::head(arch.family).1);
    let Some(head) = shapes.get(&output) else {
        let labels_note = match &labels {
            Some(_) => "its config.json has id2label, but",
            None => "its config.json has no id2label, and",
        };
        return Ok(Folder::Base(format!(
            "{} is a pretrained base model, not a fine-tuned classifier: {labels_note} its \
             weights ({}) hold no classifier head `{output}`",
            dir.display(),
            files[0].display()
        )));
    };
    let rows = head.first().copied().unwrap_or(0);
    let Some(labels) = labels else {
        return Err(Error::config(format!(
            "{}: the weights hold a classifier head for {rows} labels (`{output}`), but \
             config.json has no id2label to name them: add \"id2label\": {{\"0\": ..., ...}}",
            config.display()
        )));
    };
    if rows != labels.len() {
        return Err(Error::config(format!(
            "{}: classifier head `{output}` in {} scores {rows} labels, but id2label names {} \
             ({labels:?}): the config is not this model's",
            config.display(),
            files[0].display(),
            labels.len()
        )));
    }
    Ok(Folder::Classifier(HfClassifier {
        dir: dir.to_path_buf(),
        arch,
        labels,
        weights: files,
    }))
}

impl HfClassifier {
    /// Size and modification time of `config.json` and each weight file: a change means the
    /// folder was retrained and must be imported again.
    pub fn fingerprint(&self) -> String {
        std::iter::once(self.dir.join(meta::CONFIG_FILE))
            .chain(self.weights.iter().cloned())
            .map(|path| {
                let (len, modified) = std::fs::metadata(&path)
                    .map(|m| {
                        let modified = m
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos());
                        (m.len(), modified)
                    })
                    .unwrap_or((0, 0));
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                format!("{}:{len}:{modified}", name.unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}
