//! Reading records from JSON list, JSON Lines and CSV files.

use super::{shown, DataError, Record};
use clarity_sdk::config::DataConfig;
use serde_json::Value;
use std::path::Path;

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

/// "a string", "a list", ...: how a JSON value is named in error messages.
pub(crate) fn json_kind(value: &Value) -> &'static str {
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
