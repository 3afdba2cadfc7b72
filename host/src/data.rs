//! Training and evaluation data: reading records, checking labels, sampling and splitting.
//!
//! Records are question/context/label triples read from a JSON list (`.json`), JSON Lines
//! (`.jsonl`, `.ndjson`) or CSV (`.csv`, `.tsv`) file; the field names come from the model's
//! `data_config`. Every error names the file, the line and the record, so a bad record in a
//! large file is easy to find. Sampling and the validation split use a seeded ChaCha8 stream
//! and no other source of randomness, so the same seed picks the same records everywhere.

use crate::config::{quoted_list, Config};
use clarity_sdk::config::DataConfig;
use clarity_sdk::{Example, ModelSpec};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// The model has no `data_config.train_file`.
    #[error(
        "model \"{model}\" has no training data: add `train_file: <path>` under `data_config:` in its entry of {} (a JSON list, JSON Lines or CSV file; relative paths are relative to that file)",
        shown(config)
    )]
    NoTrainFile {
        /// The model.
        model: String,
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

/// The formats [`read_records`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    JsonList,
    JsonLines,
    Csv(u8),
}

fn detect_format(path: &Path, text: &str) -> Result<Format, DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let first = text.trim_start().chars().next();
    match ext.as_str() {
        "jsonl" | "ndjson" => Ok(Format::JsonLines),
        "csv" => Ok(Format::Csv(b',')),
        "tsv" => Ok(Format::Csv(b'\t')),
        // `.json` files written by `datasets` are JSON Lines: look before trusting the name.
        "json" => Ok(if first == Some('{') {
            Format::JsonLines
        } else {
            Format::JsonList
        }),
        _ => match first {
            Some('[') => Ok(Format::JsonList),
            Some('{') => Ok(Format::JsonLines),
            _ => Err(DataError::File {
                path: path.to_path_buf(),
                message: "unknown data format: use a JSON list (.json), JSON Lines (.jsonl, .ndjson) or CSV with a header row (.csv)".into(),
            }),
        },
    }
}

/// Read every record of a data file. Labels are mapped through `cfg.label_mapping`; a record
/// without a label gets `None` (callers that need labels check). The question and context
/// fields must be present and be strings.
pub fn read_records(path: &Path, cfg: &DataConfig) -> Result<Vec<Record>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|cause| DataError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match detect_format(path, text)? {
        Format::JsonList => read_json_list(path, text, cfg),
        Format::JsonLines => read_json_lines(path, text, cfg),
        Format::Csv(delimiter) => read_csv(path, text, delimiter, cfg),
    }
}

fn read_json_list(path: &Path, text: &str, cfg: &DataConfig) -> Result<Vec<Record>, DataError> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_error(path, &e, 0))?;
    let Value::Array(items) = value else {
        return Err(DataError::File {
            path: path.to_path_buf(),
            message: format!(
                "expected a JSON list of records ([{{...}}, ...]), found {}",
                json_kind(&value)
            ),
        });
    };
    let lines = element_lines(text);
    let lines = (lines.len() == items.len()).then_some(lines);
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let location = match &lines {
                Some(lines) => format!("{}:{}", shown(path), lines[i]),
                None => shown(path),
            };
            json_record(item, location, i + 1, cfg)
        })
        .collect()
}

fn read_json_lines(path: &Path, text: &str, cfg: &DataConfig) -> Result<Vec<Record>, DataError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i as u64 + 1;
        let value: Value =
            serde_json::from_str(line).map_err(|e| json_error(path, &e, line_no - 1))?;
        let location = format!("{}:{line_no}", shown(path));
        records.push(json_record(&value, location, records.len() + 1, cfg)?);
    }
    Ok(records)
}

fn json_error(path: &Path, err: &serde_json::Error, line_offset: u64) -> DataError {
    let mut message = err.to_string();
    // serde_json appends " at line L column C"; the location is printed in front instead.
    if let Some(pos) = message.rfind(" at line ") {
        message.truncate(pos);
    }
    let (line, column) = if err.line() == 0 {
        (None, None)
    } else {
        (
            Some(err.line() as u64 + line_offset),
            Some(err.column() as u64),
        )
    };
    DataError::Malformed {
        path: path.to_path_buf(),
        line,
        column,
        message: format!("invalid JSON: {message}"),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// 1-based line on which each element of the top-level JSON list starts.
fn element_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped, mut expecting) = (false, false, false);
    for b in text.bytes() {
        if b == b'\n' {
            line += 1;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if depth == 1 && expecting && b != b']' && b != b',' {
            lines.push(line);
            expecting = false;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    lines
}

fn json_record(
    value: &Value,
    location: String,
    number: usize,
    cfg: &DataConfig,
) -> Result<Record, DataError> {
    let Value::Object(object) = value else {
        return Err(DataError::Record {
            location,
            message: format!(
                "record {number} is {}, expected an object",
                json_kind(value)
            ),
        });
    };
    let text_field = |field: &str, setting: &str| -> Result<String, DataError> {
        match object.get(field) {
            Some(Value::String(s)) => Ok(s.clone()),
            None => Err(DataError::Record {
                location: location.clone(),
                message: format!(
                    "record {number} has no field \"{field}\" (data_config.{setting}); its fields are: {}",
                    object.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }),
            Some(other) => Err(DataError::Record {
                location: location.clone(),
                message: format!(
                    "record {number}: field \"{field}\" (data_config.{setting}) is {}, expected a string",
                    json_kind(other)
                ),
            }),
        }
    };
    let question = text_field(&cfg.question_field, "question_field")?;
    let context = text_field(&cfg.context_field, "context_field")?;
    let raw = match object.get(&cfg.label_field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(DataError::Record {
                location,
                message: format!(
                "record {number}: field \"{}\" (data_config.label_field) is {}, expected a label",
                cfg.label_field,
                json_kind(other)
            ),
            })
        }
    };
    Ok(Record {
        question,
        context,
        label: raw.map(|l| map_label(l, cfg)),
        location,
        number,
    })
}

fn map_label(raw: String, cfg: &DataConfig) -> String {
    match cfg.label_mapping.get(&raw) {
        Some(mapped) => mapped.clone(),
        None => raw,
    }
}

fn read_csv(
    path: &Path,
    text: &str,
    delimiter: u8,
    cfg: &DataConfig,
) -> Result<Vec<Record>, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
    let column = |field: &str, setting: &str| -> Result<usize, DataError> {
        headers.iter().position(|h| h == field).ok_or_else(|| DataError::Malformed {
            path: path.to_path_buf(),
            line: Some(1),
            column: None,
            message: format!(
                "the header row has no column \"{field}\" (data_config.{setting}); its columns are: {}",
                headers.iter().collect::<Vec<_>>().join(", ")
            ),
        })
    };
    let question_col = column(&cfg.question_field, "question_field")?;
    let context_col = column(&cfg.context_field, "context_field")?;
    let label_col = headers.iter().position(|h| h == cfg.label_field);

    let mut records = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| csv_error(path, &e))?;
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let number = records.len() + 1;
        let location = format!("{}:{line}", shown(path));
        let get = |col: usize| row.get(col).unwrap_or_default().to_string();
        let label = label_col
            .map(get)
            .filter(|l| !l.is_empty())
            .map(|l| map_label(l, cfg));
        records.push(Record {
            question: get(question_col),
            context: get(context_col),
            label,
            location,
            number,
        });
    }
    Ok(records)
}

fn csv_error(path: &Path, err: &csv::Error) -> DataError {
    let line = err.position().map(|p| p.line());
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "invalid CSV: this record has {len} fields but the header row has {expected_len}"
        ),
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("invalid CSV: field {} is not valid UTF-8", err.field() + 1)
        }
        _ => format!("invalid CSV: {err}"),
    };
    DataError::Malformed {
        path: path.to_path_buf(),
        line,
        column: None,
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

fn require_label<'r>(record: &'r Record, cfg: &DataConfig) -> Result<&'r str, DataError> {
    record.label.as_deref().ok_or_else(|| DataError::Record {
        location: record.location.clone(),
        message: format!(
            "record {} has no label: field \"{}\" (data_config.label_field) is missing or empty",
            record.number, cfg.label_field
        ),
    })
}

/// Label indices of `records`, which must all carry one of `labels`. `what` describes the
/// label list for the message ("label_config.labels", "the model's labels").
fn label_indices(
    records: &[Record],
    labels: &[String],
    cfg: &DataConfig,
    what: &str,
    hint: &str,
) -> Result<Vec<usize>, DataError> {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut first_bad: Option<(&Record, &str)> = None;
    let mut bad_labels = BTreeSet::new();
    let mut bad_count = 0usize;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let label = require_label(record, cfg)?;
        match index.get(label) {
            Some(&i) => out.push(i),
            None => {
                bad_count += 1;
                bad_labels.insert(label);
                if first_bad.is_none() {
                    first_bad = Some((record, label));
                }
            }
        }
    }
    match first_bad {
        None => Ok(out),
        Some((record, label)) => {
            let mut message = format!(
                "record {} has label \"{label}\", which is not one of {what} ({})",
                record.number,
                quoted_list(labels)
            );
            if bad_count > 1 {
                let others: Vec<String> = bad_labels.iter().map(|l| l.to_string()).collect();
                message.push_str(&format!(
                    "; {bad_count} records in this file have such labels: {}",
                    quoted_list(&others)
                ));
            }
            message.push_str(hint);
            Err(DataError::Record {
                location: record.location.clone(),
                message,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Deterministic sampling
// ---------------------------------------------------------------------------------------------

/// Independent random streams for the separate draws, so that e.g. changing
/// `train_sample_size` does not change which records are held out for validation.
const STREAM_SPLIT: u64 = 1;
const STREAM_TRAIN_SAMPLE: u64 = 2;
const STREAM_VALID_SAMPLE: u64 = 3;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A uniform number below `n` (n > 0), by rejection: defined only by the ChaCha8 stream.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let n = n as u64;
    let limit = u64::MAX - u64::MAX % n;
    loop {
        let x = rng.next_u64();
        if x < limit {
            return (x % n) as usize;
        }
    }
}

fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// `k` distinct indices below `n`, in increasing order (all of them when `k >= n`).
fn sample_indices(n: usize, k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut all: Vec<usize> = (0..n).collect();
    if k >= n {
        return all;
    }
    for i in 0..k {
        let j = i + below(rng, n - i);
        all.swap(i, j);
    }
    all.truncate(k);
    all.sort_unstable();
    all
}

/// Hold out `fraction` of each label's records (at least one record of each label stays in
/// training). Returns (train, valid) positions, each in increasing order.
fn split_stratified(
    label_of: &[usize],
    n_labels: usize,
    fraction: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n_labels];
    for (i, &label) in label_of.iter().enumerate() {
        if let Some(group) = groups.get_mut(label) {
            group.push(i);
        }
    }
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for mut group in groups {
        shuffle(&mut group, rng);
        let held =
            ((group.len() as f64 * fraction).round() as usize).min(group.len().saturating_sub(1));
        valid.extend_from_slice(&group[..held]);
        train.extend_from_slice(&group[held..]);
    }
    train.sort_unstable();
    valid.sort_unstable();
    (train, valid)
}

fn percent(fraction: f64) -> String {
    format!("{}%", (fraction * 10_000.0).round() / 100.0)
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Read, check, split and sample the training and validation data of `spec`.
pub fn prepare_training(config: &Config, spec: &ModelSpec) -> Result<TrainingData, DataError> {
    let d = &spec.data_config;
    let train_file =
        config.resolve(
            d.train_file
                .as_ref()
                .ok_or_else(|| DataError::NoTrainFile {
                    model: spec.name.clone(),
                    config: config.path.clone(),
                })?,
        );
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
    let (train_positions, valid_examples, valid_source) = match &d.valid_file {
        Some(valid_file) => {
            let valid_file = config.resolve(valid_file);
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
mod tests {
    use super::*;
    use std::fs;

    fn cfg() -> DataConfig {
        DataConfig::default()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn spec(yaml_extra: &str) -> ModelSpec {
        let text = format!("name: m\ntype: classic\n{yaml_extra}");
        serde_yaml::from_str(&text).unwrap()
    }

    fn config_in(dir: &Path, spec: &ModelSpec) -> Config {
        Config {
            path: dir.join("models.yaml"),
            dir: dir.to_path_buf(),
            models: vec![spec.clone()],
        }
    }

    /// `n` records per label, JSON list.
    fn dataset(labels: &[(&str, usize)]) -> String {
        let mut items = Vec::new();
        for (label, n) in labels {
            for i in 0..*n {
                items.push(serde_json::json!({
                    "question": format!("q {label} {i}"),
                    "context": format!("c {label} {i}"),
                    "clarity_label": label,
                }));
            }
        }
        serde_json::to_string_pretty(&items).unwrap()
    }

    #[test]
    fn json_list_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.json",
            "[\n  {\"question\": \"q1\", \"context\": \"c1\", \"clarity_label\": \"A\"},\n  {\n    \"question\": \"q2 [with] {brackets} \\\"quoted\\\"\",\n    \"context\": \"c2\",\n    \"clarity_label\": 3\n  },\n  {\"question\": \"q3\", \"context\": \"c3\"}\n]\n",
        );
        let records = read_records(&path, &cfg()).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].label.as_deref(), Some("A"));
        assert_eq!(records[1].question, "q2 [with] {brackets} \"quoted\"");
        assert_eq!(records[1].label.as_deref(), Some("3"));
        assert_eq!(records[2].label, None);
        assert!(
            records[0].location.ends_with("t.json:2"),
            "{}",
            records[0].location
        );
        assert!(records[1].location.ends_with("t.json:3"));
        assert!(records[2].location.ends_with("t.json:8"));
        assert_eq!(records[2].number, 3);
    }

    #[test]
    fn json_lines_and_sniffing() {
        let dir = tempfile::tempdir().unwrap();
        let text = "{\"question\": \"q1\", \"context\": \"c1\", \"clarity_label\": true}\n\n{\"question\": \"q2\", \"context\": \"c2\", \"clarity_label\": \"B\"}\r\n";
        for name in ["t.jsonl", "t.ndjson", "t.json", "t.data"] {
            let path = write(dir.path(), name, text);
            let records = read_records(&path, &cfg()).unwrap();
            assert_eq!(records.len(), 2, "{name}");
            assert_eq!(records[0].label.as_deref(), Some("true"));
            assert!(
                records[1].location.ends_with(&format!("{name}:3")),
                "{}",
                records[1].location
            );
            assert_eq!(records[1].number, 2);
        }
        let path = write(
            dir.path(),
            "list.data",
            "[{\"question\": \"q\", \"context\": \"c\"}]",
        );
        assert_eq!(read_records(&path, &cfg()).unwrap().len(), 1);
        let path = write(dir.path(), "t.txt", "question,context\nq,c\n");
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(err.contains("unknown data format"), "{err}");
        let path = write(dir.path(), "empty.json", " \n");
        assert!(read_records(&path, &cfg()).unwrap().is_empty());
    }

    #[test]
    fn csv_with_quoted_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let text = "question,context,clarity_label,extra\n\"q1, really?\",\"Q: a\nA: \"\"b\"\"\",A,x\nq2,c2,,y\nq3,c3,B,z\n";
        let path = write(dir.path(), "t.csv", text);
        let records = read_records(&path, &cfg()).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].question, "q1, really?");
        assert_eq!(records[0].context, "Q: a\nA: \"b\"");
        assert_eq!(records[1].label, None);
        assert!(records[0].location.ends_with("t.csv:2"));
        assert!(
            records[1].location.ends_with("t.csv:4"),
            "{}",
            records[1].location
        );
        assert!(records[2].location.ends_with("t.csv:5"));

        let path = write(
            dir.path(),
            "t.tsv",
            "question\tcontext\tclarity_label\nq\tc\tA\n",
        );
        assert_eq!(
            read_records(&path, &cfg()).unwrap()[0].label.as_deref(),
            Some("A")
        );
    }

    #[test]
    fn field_renaming_and_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.question_field = "text".into();
        c.context_field = "ctx".into();
        c.label_field = "sentiment".into();
        c.label_mapping.insert("1".into(), "positive".into());
        c.label_mapping.insert("neg".into(), "negative".into());
        let path = write(
            dir.path(),
            "t.jsonl",
            "{\"text\": \"a\", \"ctx\": \"b\", \"sentiment\": 1}\n{\"text\": \"c\", \"ctx\": \"d\", \"sentiment\": \"neg\"}\n{\"text\": \"e\", \"ctx\": \"f\", \"sentiment\": \"other\"}\n",
        );
        let labels: Vec<_> = read_records(&path, &c)
            .unwrap()
            .into_iter()
            .map(|r| r.label.unwrap())
            .collect();
        assert_eq!(labels, ["positive", "negative", "other"]);

        let path = write(dir.path(), "t.csv", "text,ctx,sentiment\na,b,neg\n");
        assert_eq!(
            read_records(&path, &c).unwrap()[0].label.as_deref(),
            Some("negative")
        );
        let path = write(dir.path(), "bad.csv", "question,ctx,sentiment\na,b,neg\n");
        let err = read_records(&path, &c).unwrap_err().to_string();
        assert!(
            err.ends_with("bad.csv:1: the header row has no column \"text\" (data_config.question_field); its columns are: question, ctx, sentiment"),
            "{err}"
        );
    }

    #[test]
    fn missing_and_wrong_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.jsonl",
            "{\"question\": \"q\", \"context\": \"c\"}\n{\"context\": \"c\", \"label\": \"A\"}\n",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with("t.jsonl:2: record 2 has no field \"question\" (data_config.question_field); its fields are: context, label"),
            "{err}"
        );
        let path = write(
            dir.path(),
            "t.json",
            "[\n{\"question\": \"q\", \"context\": \"c\"},\n{\"question\": \"q\", \"context\": 5}\n]",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with("t.json:3: record 2: field \"context\" (data_config.context_field) is a number, expected a string"),
            "{err}"
        );
        let path = write(dir.path(), "t2.json", "[1]");
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with("t2.json:1: record 1 is a number, expected an object"),
            "{err}"
        );
        let path = write(
            dir.path(),
            "t3.json",
            "{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": [1]}",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.contains("t3.json:1: record 1: field \"clarity_label\""),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_have_locations() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.json",
            "[\n  {\"question\": \"q\",\n   \"context\": }\n]",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with("t.json:3:15: invalid JSON: expected value"),
            "{err}"
        );
        let path = write(dir.path(), "t.jsonl", "{\"question\": \"q\", \"context\": \"c\"}\n\n{\"question\": \"q\" \"context\": \"c\"}\n");
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with("t.jsonl:3:18: invalid JSON: expected `,` or `}`"),
            "{err}"
        );
        let path = write(
            dir.path(),
            "t.csv",
            "question,context,clarity_label\nq,c,A\nq,c\n",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(
            err.ends_with(
                "t.csv:3: invalid CSV: this record has 2 fields but the header row has 3"
            ),
            "{err}"
        );
        let path = write(
            dir.path(),
            "obj.json",
            "[{\"question\": \"q\", \"context\": \"c\"}",
        );
        let err = read_records(&path, &cfg()).unwrap_err().to_string();
        assert!(err.contains("obj.json:1:"), "{err}");
        let missing = dir.path().join("nope.json");
        let err = read_records(&missing, &cfg()).unwrap_err().to_string();
        assert!(
            err.contains("nope.json: cannot read the data file"),
            "{err}"
        );
    }

    #[test]
    fn unknown_labels_are_reported_with_location() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train.jsonl",
            "{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"A\"}\n{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"Z\"}\n{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"Y\"}\n",
        );
        let s = spec("label_config: {labels: [A, B]}\ndata_config: {train_file: train.jsonl}\n");
        let config = config_in(dir.path(), &s);
        let err = prepare_training(&config, &s).unwrap_err().to_string();
        assert!(
            err.ends_with("train.jsonl:2: record 2 has label \"Z\", which is not one of label_config.labels (\"A\", \"B\"); 2 records in this file have such labels: \"Y\", \"Z\"; add it there or map it with data_config.label_mapping"),
            "{err}"
        );

        let s = spec("label_config: {labels: [A, B]}\ndata_config: {train_file: train.jsonl, label_mapping: {Z: B, Y: A}}\n");
        let data = prepare_training(&config_in(dir.path(), &s), &s).unwrap();
        assert_eq!(data.labels, ["A", "B"]);
        assert!(!data.labels_derived);
    }

    #[test]
    fn missing_labels_and_train_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train.json",
            "[{\"question\": \"q\", \"context\": \"c\", \"clarity_label\": \"A\"},\n {\"question\": \"q\", \"context\": \"c\"}]",
        );
        let s = spec("data_config: {train_file: train.json}\n");
        let err = prepare_training(&config_in(dir.path(), &s), &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("train.json:2: record 2 has no label: field \"clarity_label\" (data_config.label_field) is missing or empty"),
            "{err}"
        );
        let s = spec("");
        let err = prepare_training(&config_in(dir.path(), &s), &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "model \"m\" has no training data: add `train_file: <path>` under `data_config:`"
            ),
            "{err}"
        );
    }

    #[test]
    fn derived_labels_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train.json",
            &dataset(&[("b", 5), ("c", 5), ("a", 5)]),
        );
        let s = spec("data_config: {train_file: train.json, valid_split: 0}\n");
        let data = prepare_training(&config_in(dir.path(), &s), &s).unwrap();
        assert_eq!(data.labels, ["a", "b", "c"]);
        assert!(data.labels_derived);
        assert_eq!(data.train.len(), 15);
        assert!(data.valid.is_empty());
        assert_eq!(data.train[0].label, 1);
        assert!(data.valid_source.starts_with("none"));

        let s = spec("model_config: {num_labels: 2}\ndata_config: {train_file: train.json}\n");
        let err = prepare_training(&config_in(dir.path(), &s), &s)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num_labels is 2 but the training data has 3 labels"),
            "{err}"
        );

        write(dir.path(), "one.json", &dataset(&[("a", 5)]));
        let s = spec("data_config: {train_file: one.json}\n");
        let err = prepare_training(&config_in(dir.path(), &s), &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has only the label \"a\""), "{err}");
    }

    #[test]
    fn stratified_split() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train.json",
            &dataset(&[("a", 60), ("b", 30), ("c", 10), ("d", 1)]),
        );
        let s = spec("data_config: {train_file: train.json, valid_split: 0.2}\n");
        let config = config_in(dir.path(), &s);
        let data = prepare_training(&config, &s).unwrap();
        let valid = label_counts(&data.valid, &data.labels);
        let train = label_counts(&data.train, &data.labels);
        assert_eq!(valid.values().copied().collect::<Vec<_>>(), [12, 6, 2, 0]);
        assert_eq!(train.values().copied().collect::<Vec<_>>(), [48, 24, 8, 1]);
        assert!(
            data.valid_source.starts_with("20% of "),
            "{}",
            data.valid_source
        );
        assert!(data.valid_source.contains("train.json"));
        assert_eq!((data.train_available, data.valid_available), (81, 20));
        // No overlap, nothing lost.
        let mut all: Vec<_> = data
            .train
            .iter()
            .chain(&data.valid)
            .map(|e| e.question.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 101);
        // Deterministic.
        assert_eq!(prepare_training(&config, &s).unwrap(), data);
        // Another seed holds out other records.
        let s2 = spec("data_config: {train_file: train.json, valid_split: 0.2, seed: 7}\n");
        assert_ne!(prepare_training(&config, &s2).unwrap().valid, data.valid);
    }

    #[test]
    fn sampling_is_seeded() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "train.json", &dataset(&[("a", 50), ("b", 50)]));
        write(dir.path(), "valid.json", &dataset(&[("a", 20), ("b", 20)]));
        let yaml = |seed: &str| {
            spec(&format!(
                "training_config: {{seed: {seed}}}\ndata_config: {{train_file: train.json, valid_file: valid.json, train_sample_size: 10, valid_sample_size: 5}}\n"
            ))
        };
        let s = yaml("1");
        let config = config_in(dir.path(), &s);
        let a = prepare_training(&config, &s).unwrap();
        assert_eq!((a.train.len(), a.valid.len()), (10, 5));
        assert_eq!((a.train_available, a.valid_available), (100, 40));
        assert!(a.valid_source.ends_with("valid.json"));
        assert_eq!(prepare_training(&config, &s).unwrap(), a);
        let b = prepare_training(&config, &yaml("2")).unwrap();
        assert_ne!(a.train, b.train);
        assert_ne!(a.valid, b.valid);
        // The sample keeps file order.
        let numbers: Vec<usize> = a
            .train
            .iter()
            .map(|e| {
                let i: usize = e.question.rsplit(' ').next().unwrap().parse().unwrap();
                i + if e.label == 1 { 50 } else { 0 }
            })
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        // data_config.seed wins over training_config.seed.
        let c = spec("training_config: {seed: 1}\ndata_config: {seed: 2, train_file: train.json, valid_file: valid.json, train_sample_size: 10, valid_sample_size: 5}\n");
        assert_eq!(prepare_training(&config, &c).unwrap().train, b.train);
        // A sample larger than the data keeps everything.
        let d = spec("data_config: {train_file: train.json, valid_file: valid.json, train_sample_size: 1000}\n");
        assert_eq!(prepare_training(&config, &d).unwrap().train.len(), 100);
    }

    #[test]
    fn sampling_values_are_stable() {
        // Pin the exact draws so a dependency update cannot silently change every sample.
        assert_eq!(
            sample_indices(100, 5, &mut rng(42, STREAM_TRAIN_SAMPLE)),
            SAMPLE_42
        );
        let mut items: Vec<usize> = (0..8).collect();
        shuffle(&mut items, &mut rng(42, STREAM_SPLIT));
        assert_eq!(items, SHUFFLE_42);
    }

    const SAMPLE_42: [usize; 5] = [46, 57, 63, 78, 90];
    const SHUFFLE_42: [usize; 8] = [1, 2, 3, 7, 6, 5, 4, 0];

    #[test]
    fn load_labelled_checks_against_model_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "test.csv",
            "question,context,clarity_label\nq,c,B\nq,c,A\nq,c,X\n",
        );
        let labels = vec!["A".to_string(), "B".to_string()];
        let s = spec("data_config: {label_mapping: {X: A}}\n");
        let examples = load_labelled(&path, &s, &labels).unwrap();
        assert_eq!(
            examples.iter().map(|e| e.label).collect::<Vec<_>>(),
            [1, 0, 0]
        );
        let err = load_labelled(&path, &spec(""), &labels)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("test.csv:4: record 3 has label \"X\", which is not one of the labels of model \"m\" (\"A\", \"B\")"),
            "{err}"
        );
    }

    #[test]
    fn sample_dataset_files_agree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
        if !root.join("valid.csv").exists() {
            return;
        }
        let c = cfg();
        let json = read_records(&root.join("valid.json"), &c).unwrap();
        let jsonl = read_records(&root.join("valid.jsonl"), &c).unwrap();
        let csv = read_records(&root.join("valid.csv"), &c).unwrap();
        assert!(!json.is_empty());
        let strip = |rs: Vec<Record>| {
            rs.into_iter()
                .map(|r| (r.question, r.context, r.label))
                .collect::<Vec<_>>()
        };
        let json = strip(json);
        assert_eq!(json, strip(jsonl));
        assert_eq!(json, strip(csv));
        assert!(json.iter().all(|r| r.2.is_some()));

        let s = spec("data_config: {train_file: train.json, valid_file: valid.csv}\n");
        let config = config_in(&root, &s);
        let data = prepare_training(&config, &s).unwrap();
        assert_eq!(
            data.labels,
            ["Ambivalent", "Clear Non-Reply", "Clear Reply"]
        );
        assert!(!data.train.is_empty() && !data.valid.is_empty());
        let test = load_labelled(&root.join("test.json"), &s, &data.labels).unwrap();
        assert!(!test.is_empty());
    }
}
