//! Training and evaluation data: reading records, checking labels, sampling and splitting.
//!
//! Records are question/context/label triples read from a JSON list (`.json`), JSON Lines
//! (`.jsonl`, `.ndjson`) or CSV (`.csv`, `.tsv`) file; the field names come from the model's
//! `data_config`. Every error names the file, the line and the record, so a bad record in a
//! large file is easy to find. Sampling and the validation split use a seeded ChaCha8 stream
//! and no other source of randomness, so the same seed picks the same records everywhere.

mod files;
mod labels;
mod read;
mod sample;

use crate::config::{quoted_list, Config};
use clarity_sdk::groups::LabelGroups;
use clarity_sdk::{Example, ModelSpec};
use labels::{label_indices, require_label};
pub(crate) use read::json_kind;
pub use read::read_records;
use sample::{
    percent, rng, sample_indices, split_stratified, STREAM_SPLIT, STREAM_TRAIN_SAMPLE,
    STREAM_VALID_SAMPLE,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One record of a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The question asked.
    pub question: String,
    /// The context (interview question and answer).
    pub context: String,
    /// The label after `data_config.label_mapping`; `None` when the record has none.
    pub label: Option<String>,
    /// `file:line` of the record, for messages.
    pub location: String,
    /// 1-based position of the record in the file.
    pub number: usize,
}

/// Training and validation examples, ready for a [`clarity_sdk::TrainJob`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingData {
    /// The labels in output order: `label_config.labels`, or the sorted labels of the
    /// training data when none are configured.
    pub labels: Vec<String>,
    /// The labels were derived from the training data (worth reporting to the user).
    pub labels_derived: bool,
    /// `label_config.groups` resolved: `labels` are then its fine labels.
    pub groups: Option<LabelGroups>,
    /// Training examples, sampled.
    pub train: Vec<Example>,
    /// Validation examples, sampled (empty when there is no validation data).
    pub valid: Vec<Example>,
    /// The training file, resolved.
    pub train_file: PathBuf,
    /// Where `valid` came from: a file path, `10% of <train file> ...`, or `none ...`.
    pub valid_source: String,
    /// Training records available before sampling (after the validation hold-out).
    pub train_available: usize,
    /// Validation records available before sampling.
    pub valid_available: usize,
}

/// Why data could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{}: cannot read the data file: {cause}", shown(path))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file is not valid JSON / JSON Lines / CSV.
    #[error("{}", at(path, *line, *column, message))]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<u64>,
        /// 1-based column, when known.
        column: Option<u64>,
        /// What the parser said.
        message: String,
    },
    /// Something about the file as a whole (format, emptiness, columns).
    #[error("{}: {message}", shown(path))]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One record is unusable: a field is missing or has the wrong type, or its label is unknown.
    #[error("{location}: {message}")]
    Record {
        /// `file:line` of the record.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// None of the model's candidate data files exists.
    #[error(
        "model \"{model}\" has no {what} data: none of these files exists: {}. Set `{key}: <path>` under `data_config:` in its entry of {} (a JSON list, JSON Lines or CSV file; relative paths are relative to that file, then to the working directory)",
        tried.iter().map(|p| shown(p)).collect::<Vec<_>>().join(", "),
        shown(config)
    )]
    NoDataFile {
        /// The model.
        model: String,
        /// `training` or `validation`.
        what: &'static str,
        /// The key to set.
        key: &'static str,
        /// Every path looked at, in order.
        tried: Vec<PathBuf>,
        /// The `models.yaml` it is declared in.
        config: PathBuf,
    },
    /// The label set does not work for the model.
    #[error("model \"{model}\": {message}")]
    Labels {
        /// The model.
        model: String,
        /// What is wrong.
        message: String,
    },
}

/// A path as the user most likely knows it: relative to the working folder when inside it.
fn shown(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir() {
        if let Ok(relative) = path.strip_prefix(&cwd) {
            if !relative.as_os_str().is_empty() {
                return relative.display().to_string();
            }
        }
    }
    path.display().to_string()
}

fn at(path: &Path, line: Option<u64>, column: Option<u64>, message: &str) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}: {message}", shown(path)),
        (Some(l), None) => format!("{}:{l}: {message}", shown(path)),
        _ => format!("{}: {message}", shown(path)),
    }
}

/// Read, check, split and sample the training and validation data of `spec`.
pub fn prepare_training(config: &Config, spec: &ModelSpec) -> Result<TrainingData, DataError> {
    let Some(groups) = &spec.label_config.groups else {
        return prepare_plain(config, spec);
    };
    // Fine-to-coarse: train on the fine labels (from `fine_label_field`), judge on the coarse.
    let groups = LabelGroups::resolve(groups, &spec.label_config.labels).map_err(|message| {
        DataError::Labels {
            model: spec.name.clone(),
            message: format!("label_config.groups: {message}"),
        }
    })?;
    let mut fine = spec.clone();
    fine.label_config.labels = groups.fine.clone();
    fine.label_config.groups = None;
    if let Some(field) = &spec.data_config.fine_label_field {
        fine.data_config.label_field = field.clone();
    }
    let mut data = prepare_plain(config, &fine)?;
    data.groups = Some(groups);
    Ok(data)
}

/// [`prepare_training`] for a model whose labels are its outputs.
fn prepare_plain(config: &Config, spec: &ModelSpec) -> Result<TrainingData, DataError> {
    let d = &spec.data_config;
    let missing = |what, key, tried| DataError::NoDataFile {
        model: spec.name.clone(),
        what,
        key,
        tried,
        config: config.path.clone(),
    };
    let train_file = match files::train_source(d, &config.dir) {
        files::Source::File(path) => path,
        files::Source::NotFound(tried) => return Err(missing("training", "train_file", tried)),
        files::Source::Unset => return Err(missing("training", "train_file", Vec::new())),
    };
    let valid_file = match files::valid_source(d, &config.dir) {
        files::Source::File(path) => Some(path),
        files::Source::NotFound(tried) => return Err(missing("validation", "valid_file", tried)),
        files::Source::Unset => None,
    };
    let train_records = read_records(&train_file, d)?;
    if train_records.is_empty() {
        return Err(DataError::File {
            path: train_file,
            message: "the training file has no records".into(),
        });
    }

    // The label set.
    let configured = &spec.label_config.labels;
    let (labels, labels_derived) = if configured.is_empty() {
        let mut found = BTreeSet::new();
        for record in &train_records {
            found.insert(require_label(record, d)?.to_string());
        }
        let labels: Vec<String> = found.into_iter().collect();
        if labels.len() < 2 {
            return Err(DataError::Labels {
                model: spec.name.clone(),
                message: format!(
                    "the training data in {} has only the label {}; a classifier needs at least two",
                    shown(&train_file),
                    quoted_list(&labels)
                ),
            });
        }
        if let Some(n) = spec.model_config.num_labels {
            if n != labels.len() {
                return Err(DataError::Labels {
                    model: spec.name.clone(),
                    message: format!(
                        "model_config.num_labels is {n} but the training data has {} labels ({}); list them in label_config.labels or fix num_labels",
                        labels.len(),
                        quoted_list(&labels)
                    ),
                });
            }
        }
        (labels, true)
    } else {
        (configured.clone(), false)
    };
    let (what, hint) = if labels_derived {
        (
            "the labels of the training data",
            "; map it with data_config.label_mapping or list every label in label_config.labels",
        )
    } else {
        (
            "label_config.labels",
            "; add it there or map it with data_config.label_mapping",
        )
    };
    let train_labels = label_indices(&train_records, &labels, d, what, hint)?;

    // Validation data.
    let seed = d.seed.unwrap_or(spec.training_config.seed);
    let (train_positions, valid_examples, valid_source) = match valid_file {
        Some(valid_file) => {
            let records = read_records(&valid_file, d)?;
            if records.is_empty() {
                return Err(DataError::File {
                    path: valid_file,
                    message: "the validation file has no records".into(),
                });
            }
            let indices = label_indices(&records, &labels, d, what, hint)?;
            let examples = to_examples(records, &indices);
            (
                (0..train_records.len()).collect(),
                examples,
                shown(&valid_file),
            )
        }
        None if d.valid_split > 0.0 => {
            let (train, valid) = split_stratified(
                &train_labels,
                labels.len(),
                d.valid_split,
                &mut rng(seed, STREAM_SPLIT),
            );
            let examples = valid
                .iter()
                .map(|&i| example(&train_records[i], train_labels[i]))
                .collect();
            let source = format!(
                "{} of {} (stratified by label, seed {seed})",
                percent(d.valid_split),
                shown(&train_file)
            );
            (train, examples, source)
        }
        None => (
            (0..train_records.len()).collect::<Vec<_>>(),
            Vec::new(),
            "none (no valid_file and valid_split is 0)".to_string(),
        ),
    };

    // Sampling.
    let train_available = train_positions.len();
    let train_positions: Vec<usize> = match d.train_sample_size {
        Some(k) => sample_indices(train_available, k, &mut rng(seed, STREAM_TRAIN_SAMPLE))
            .into_iter()
            .map(|i| train_positions[i])
            .collect(),
        None => train_positions,
    };
    let train = train_positions
        .iter()
        .map(|&i| example(&train_records[i], train_labels[i]))
        .collect();

    let valid_available = valid_examples.len();
    let valid = match d.valid_sample_size {
        Some(k) => sample_indices(valid_available, k, &mut rng(seed, STREAM_VALID_SAMPLE))
            .into_iter()
            .map(|i| valid_examples[i].clone())
            .collect(),
        None => valid_examples,
    };

    Ok(TrainingData {
        groups: None,
        labels,
        labels_derived,
        train,
        valid,
        train_file,
        valid_source,
        train_available,
        valid_available,
    })
}

/// Read labelled examples for evaluation. Every record needs a label (after
/// `label_mapping`) that is one of `labels`, the loaded model's labels. `path` is used as given.
pub fn load_labelled(
    path: &Path,
    spec: &ModelSpec,
    labels: &[String],
) -> Result<Vec<Example>, DataError> {
    let d = &spec.data_config;
    let records = read_records(path, d)?;
    if records.is_empty() {
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: "the file has no records".into(),
        });
    }
    let indices = label_indices(
        &records,
        labels,
        d,
        &format!("the labels of model \"{}\"", spec.name),
        "; map it with data_config.label_mapping",
    )?;
    Ok(to_examples(records, &indices))
}

fn example(record: &Record, label: usize) -> Example {
    Example {
        question: record.question.clone(),
        context: record.context.clone(),
        label,
    }
}

fn to_examples(records: Vec<Record>, labels: &[usize]) -> Vec<Example> {
    records
        .into_iter()
        .zip(labels)
        .map(|(r, &label)| Example {
            question: r.question,
            context: r.context,
            label,
        })
        .collect()
}

/// Count of each label in `examples`, by label name (for reports).
pub fn label_counts(examples: &[Example], labels: &[String]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = labels.iter().map(|l| (l.clone(), 0)).collect();
    for e in examples {
        if let Some(name) = labels.get(e.label) {
            *counts.entry(name.clone()).or_default() += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests;
