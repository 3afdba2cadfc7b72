//! The JSON files an ML plugin writes beside `model.onnx`: its own record of the trained model
//! (a [`MetaFile`], e.g. `encoder_meta.json`) and a transformers-style `config.json` whose
//! labels other tools read ([`write_hf_config`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The ONNX graph that is served.
pub const ONNX_FILE: &str = "model.onnx";
/// The dynamically quantized graph written beside it for `model_config.quantize: int8`.
pub const INT8_ONNX_FILE: &str = "model.int8.onnx";
/// The tokenizer that feeds it.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// transformers' config, with our labels.
pub const CONFIG_FILE: &str = "config.json";

/// Why a metadata file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not the JSON we write.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: serde_json::Error,
    },
    /// The file was written by another version of the plugin.
    #[error("{}: format {found} is not {expected} (written by another version: retrain)", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: u32,
        /// The one this build reads.
        expected: u32,
    },
    /// The value could not be turned into JSON.
    #[error("cannot encode {}: {source}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// What the serializer said.
        source: serde_json::Error,
    },
    /// The file could not be written.
    #[error("cannot write {}: {}", path.display(), clarity_sdk::durable::explain(source))]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A plugin's record of a trained model: one JSON file in the artifact folder with a
/// top-level `format` number, so a file from another version is named as such instead of
/// failing on whichever field changed.
pub trait MetaFile: Serialize + DeserializeOwned {
    /// File name in the artifact folder.
    const FILE: &'static str;
    /// The format this build writes and reads.
    const FORMAT: u32;
    /// Write keys in sorted order rather than field order (what some plugins have always
    /// written; kept so files stay byte-for-byte the same).
    const SORTED_KEYS: bool = false;

    /// Whether `dir` holds this file, i.e. a trained model.
    fn present(dir: &Path) -> bool {
        dir.join(Self::FILE).is_file()
    }

    /// Read `dir/FILE`, refusing another format.
    fn read(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| MetaError::Read {
            path: path.clone(),
            source,
        })?;
        let parse = |source| MetaError::Parse {
            path: path.clone(),
            source,
        };
        // The version first: another format may not parse as this one.
        let version: Version = serde_json::from_str(&text).map_err(parse)?;
        if version.format != Self::FORMAT {
            return Err(MetaError::Format {
                path,
                found: version.format,
                expected: Self::FORMAT,
            });
        }
        serde_json::from_str(&text).map_err(parse)
    }

    /// Write `dir/FILE`.
    fn write(&self, dir: &Path) -> Result<(), MetaError> {
        let path = dir.join(Self::FILE);
        if Self::SORTED_KEYS {
            // serde_json's map (without `preserve_order`) keeps its keys sorted.
            let value = serde_json::to_value(self).map_err(|source| MetaError::Encode {
                path: path.clone(),
                source,
            })?;
            write_json(&path, &value)
        } else {
            write_json(&path, self)
        }
    }
}

/// Just the `format` field of a [`MetaFile`].
#[derive(Deserialize)]
struct Version {
    format: u32,
}

/// Write `value` to `path` as pretty JSON with a final newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), MetaError> {
    let text = serde_json::to_string_pretty(value).map_err(|source| MetaError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|source| MetaError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Write `config` (a transformers `config.json`) to `path` with our head: `architectures`
/// set to `class` and `num_labels`, `id2label`, `label2id` from `labels`, so
/// `AutoModelForSequenceClassification` and `serve::hf_labels` read the same labels. A
/// config that is not a JSON object is written as it is.
pub fn write_hf_config(
    mut config: Value,
    class: &str,
    labels: &[String],
    path: &Path,
) -> Result<(), MetaError> {
    if let Some(obj) = config.as_object_mut() {
        obj.insert("architectures".into(), json!([class]));
        obj.insert("num_labels".into(), json!(labels.len()));
        obj.insert(
            "id2label".into(),
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), json!(l)))
                .collect(),
        );
        obj.insert(
            "label2id".into(),
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i)))
                .collect(),
        );
    }
    write_json(path, &config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        format: u32,
        zeta: String,
        alpha: Vec<u32>,
    }

    impl MetaFile for Record {
        const FILE: &'static str = "record_meta.json";
        const FORMAT: u32 = 3;
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sorted {
        format: u32,
        zeta: u32,
        alpha: u32,
    }

    impl MetaFile for Sorted {
        const FILE: &'static str = "sorted_meta.json";
        const FORMAT: u32 = 1;
        const SORTED_KEYS: bool = true;
    }

    fn record() -> Record {
        Record {
            format: Record::FORMAT,
            zeta: "z".into(),
            alpha: vec![1, 2],
        }
    }

    #[test]
    fn a_record_round_trips_in_field_order_with_a_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!Record::present(dir.path()));
        record().write(dir.path()).unwrap();
        assert!(Record::present(dir.path()));
        let text = std::fs::read_to_string(dir.path().join(Record::FILE)).unwrap();
        assert_eq!(
            text,
            "{\n  \"format\": 3,\n  \"zeta\": \"z\",\n  \"alpha\": [\n    1,\n    2\n  ]\n}\n"
        );
        assert_eq!(Record::read(dir.path()).unwrap(), record());
    }

    #[test]
    fn sorted_keys_are_written_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let value = Sorted {
            format: 1,
            zeta: 2,
            alpha: 3,
        };
        value.write(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(Sorted::FILE)).unwrap();
        assert_eq!(
            text,
            "{\n  \"alpha\": 3,\n  \"format\": 1,\n  \"zeta\": 2\n}\n"
        );
        assert_eq!(Sorted::read(dir.path()).unwrap(), value);
    }

    #[test]
    fn another_format_is_named_even_when_its_fields_differ() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Record::FILE);
        std::fs::write(&path, r#"{"format": 9, "renamed": true}"#).unwrap();
        let err = Record::read(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Format { found: 9, .. }), "{err}");
        assert!(err.to_string().contains("retrain"), "{err}");
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = Record::read(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Read { .. }), "{err}");
        assert!(err.to_string().contains(Record::FILE), "{err}");
        std::fs::write(dir.path().join(Record::FILE), "{not json").unwrap();
        let err = Record::read(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(Record::FILE), "{err}");
    }

    #[test]
    fn the_hf_config_names_the_labels_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let labels = ["yes".to_string(), "no".to_string()];
        write_hf_config(json!({"model_type": "bert"}), "BertX", &labels, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        let config: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(config["architectures"], json!(["BertX"]));
        assert_eq!(config["num_labels"], json!(2));
        assert_eq!(config["id2label"], json!({"0": "yes", "1": "no"}));
        assert_eq!(config["label2id"], json!({"yes": 0, "no": 1}));
        assert_eq!(config["model_type"], json!("bert"));
        assert_eq!(
            crate::serve::hf_labels(&path).unwrap(),
            Some(labels.to_vec())
        );
    }
}
