//! Which files of a hub repo make a model the plugins can load, in the order `transformers`
//! prefers them: `config.json`; the weights as `model.safetensors`, sharded safetensors (an
//! index naming its shards), `pytorch_model.bin` or sharded `.bin`; the tokenizer as
//! `tokenizer.json`, WordPiece `vocab.txt` or BPE `vocab.json` + `merges.txt`; and the
//! tokenizer's settings files when the repo has them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The model's configuration (required).
pub const CONFIG: &str = "config.json";

/// A way the weights can be stored.
#[derive(Debug, Clone, Copy)]
enum Weights {
    /// One file.
    Single(&'static str),
    /// An index whose `weight_map` names the shard files.
    Sharded(&'static str),
}

/// Weight layouts, preferred first.
const WEIGHTS: [Weights; 4] = [
    Weights::Single("model.safetensors"),
    Weights::Sharded("model.safetensors.index.json"),
    Weights::Single("pytorch_model.bin"),
    Weights::Sharded("pytorch_model.bin.index.json"),
];

/// Tokenizer file sets, preferred first.
const TOKENIZERS: [&[&str]; 3] = [
    &["tokenizer.json"],
    &["vocab.txt"],
    &["vocab.json", "merges.txt"],
];

/// Fetched when present, never required.
const EXTRAS: [&str; 2] = ["tokenizer_config.json", "special_tokens_map.json"];

/// What a missing weights layout is called in errors.
pub const WEIGHTS_TRIED: &str = "model.safetensors, model.safetensors.index.json + shards, \
     pytorch_model.bin or pytorch_model.bin.index.json + shards";
/// What a missing tokenizer is called in errors.
pub const TOKENIZER_TRIED: &str = "tokenizer.json, vocab.txt, or vocab.json + merges.txt";

/// Why the files of a repo do not make a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilesError {
    /// A required file or file set is not in the repo.
    #[error("the repo has no {0}")]
    Missing(String),
    /// A shard index that is not `{"weight_map": {tensor: file}}` or names a file outside
    /// the repo folder.
    #[error("{path}: {why}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where the files come from: the cache and the hub (or, in tests, anything).
pub trait Source {
    /// The error of a failed lookup.
    type Error;
    /// The local path of `file`, or None when the repo has no such file.
    fn get(&mut self, file: &str) -> Result<Option<PathBuf>, Self::Error>;
    /// `e` with this source's context (which repo, where).
    fn files_error(&self, e: FilesError) -> Self::Error;
}

/// Fetch every file the model needs (and the extras the repo has) from `source`; their
/// local paths, `config.json` first.
pub fn fetch_all<S: Source>(source: &mut S) -> Result<Vec<PathBuf>, S::Error> {
    let mut got = vec![required(source, CONFIG)?];
    got.extend(weights(source)?);
    for extra in EXTRAS {
        got.extend(source.get(extra)?);
    }
    got.extend(tokenizer(source)?);
    Ok(got)
}

fn required<S: Source>(source: &mut S, file: &str) -> Result<PathBuf, S::Error> {
    match source.get(file)? {
        Some(path) => Ok(path),
        None => Err(source.files_error(FilesError::Missing(file.to_string()))),
    }
}

fn weights<S: Source>(source: &mut S) -> Result<Vec<PathBuf>, S::Error> {
    for layout in WEIGHTS {
        match layout {
            Weights::Single(file) => {
                if let Some(path) = source.get(file)? {
                    return Ok(vec![path]);
                }
            }
            Weights::Sharded(index) => {
                if let Some(path) = source.get(index)? {
                    let mut got = Vec::new();
                    let names = shards(&path).map_err(|e| source.files_error(e))?;
                    for shard in names {
                        got.push(required(source, &shard)?);
                    }
                    got.push(path);
                    return Ok(got);
                }
            }
        }
    }
    Err(source.files_error(FilesError::Missing(format!("weights ({WEIGHTS_TRIED})"))))
}

fn tokenizer<S: Source>(source: &mut S) -> Result<Vec<PathBuf>, S::Error> {
    for set in TOKENIZERS {
        let mut got = Vec::new();
        for file in set {
            match source.get(file)? {
                Some(path) => got.push(path),
                None => break,
            }
        }
        if got.len() == set.len() {
            return Ok(got);
        }
    }
    Err(source.files_error(FilesError::Missing(format!(
        "tokenizer ({TOKENIZER_TRIED})"
    ))))
}

/// The shard files a `*.index.json` names, each once, sorted.
pub fn shards(index: &Path) -> Result<Vec<String>, FilesError> {
    let bad = |why: String| FilesError::BadIndex {
        path: index.to_path_buf(),
        why,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut files = BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map.{tensor} is not a file name")))?;
        if file.is_empty() || file.contains("..") || Path::new(file).is_absolute() {
            return Err(bad(format!(
                "weight_map.{tensor} names `{file}`, not a file in the repo"
            )));
        }
        files.insert(file.to_string());
    }
    if files.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    Ok(files.into_iter().collect())
}

/// A [`Source`] over a local folder: what a cached snapshot holds.
struct Folder<'a>(&'a Path);

impl Source for Folder<'_> {
    type Error = FilesError;
    fn get(&mut self, file: &str) -> Result<Option<PathBuf>, FilesError> {
        let path = self.0.join(file);
        Ok(path.is_file().then_some(path))
    }
    fn files_error(&self, e: FilesError) -> FilesError {
        e
    }
}

/// Whether `dir` (a cached snapshot) holds a whole model; else what it lacks.
pub fn complete(dir: &Path) -> Result<(), FilesError> {
    fetch_all(&mut Folder(dir)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(tmp.path().join(name), text).unwrap();
        }
        tmp
    }

    #[test]
    fn preferred_layouts_first_and_extras_when_present() {
        let dir = folder(&[
            ("config.json", "{}"),
            ("model.safetensors", "w"),
            ("pytorch_model.bin", "w"),
            ("tokenizer.json", "{}"),
            ("vocab.txt", "v"),
            ("tokenizer_config.json", "{}"),
        ]);
        let got = fetch_all(&mut Folder(dir.path())).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "config.json",
                "model.safetensors",
                "tokenizer_config.json",
                "tokenizer.json"
            ]
        );
    }

    #[test]
    fn sharded_weights_need_every_shard() {
        let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#;
        let dir = folder(&[
            ("config.json", "{}"),
            ("model.safetensors.index.json", index),
            ("model-00001-of-00002.safetensors", "w"),
            ("vocab.json", "{}"),
            ("merges.txt", "#"),
        ]);
        let err = complete(dir.path()).unwrap_err();
        assert_eq!(
            err,
            FilesError::Missing("model-00002-of-00002.safetensors".into())
        );
        fs::write(dir.path().join("model-00002-of-00002.safetensors"), "w").unwrap();
        complete(dir.path()).unwrap();
    }

    #[test]
    fn what_is_missing_is_named() {
        let dir = folder(&[("config.json", "{}"), ("tokenizer.json", "{}")]);
        let err = complete(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("weights") && err.contains("pytorch_model.bin"),
            "{err}"
        );
        let dir = folder(&[
            ("config.json", "{}"),
            ("pytorch_model.bin", "w"),
            ("vocab.json", "{}"),
        ]);
        let err = complete(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer") && err.contains("merges.txt"),
            "{err}"
        );
        let dir = folder(&[]);
        assert_eq!(
            complete(dir.path()).unwrap_err(),
            FilesError::Missing("config.json".into())
        );
    }

    #[test]
    fn an_index_escaping_the_repo_is_refused() {
        let dir = folder(&[("i.json", r#"{"weight_map": {"a": "../../etc/passwd"}}"#)]);
        let err = shards(&dir.path().join("i.json")).unwrap_err().to_string();
        assert!(err.contains("not a file in the repo"), "{err}");
        let dir = folder(&[("i.json", r#"{"metadata": {}}"#)]);
        let err = shards(&dir.path().join("i.json")).unwrap_err().to_string();
        assert!(err.contains("weight_map"), "{err}");
    }
}
