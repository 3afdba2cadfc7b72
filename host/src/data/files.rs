//! Which training and validation files a model reads: `train_file` / `valid_file`, or the
//! original's `train_files` / `valid_files` lists where the first existing file wins.
//!
//! The original looks each candidate up relative to the working directory only; we look
//! relative to the folder of `models.yaml` first (as every other path in it), then the
//! working directory, so a file that worked with the original still does.

use clarity_sdk::config::DataConfig;
use std::path::{Path, PathBuf};

/// The original's candidates when a model names no training file at all.
pub const DEFAULT_TRAIN_FILES: &[&str] = &[
    "/app/data/cleaned/train.json",
    "./data/cleaned/train.json",
    "../data/cleaned/train.json",
    "../../data/cleaned/train.json",
];

/// The original's candidates for validation, used with [`DEFAULT_TRAIN_FILES`].
pub const DEFAULT_VALID_FILES: &[&str] = &[
    "/app/data/cleaned/valid.json",
    "./data/cleaned/valid.json",
    "../data/cleaned/valid.json",
    "../../data/cleaned/valid.json",
];

/// Where one kind of data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// This file (it may not exist: reading it says so).
    File(PathBuf),
    /// None of the candidates exists; every path tried, in order.
    NotFound(Vec<PathBuf>),
    /// Nothing is configured.
    Unset,
}

/// The training data of `d`: `train_file`, else the first existing `train_files` entry,
/// else the first existing default candidate.
pub fn train_source(d: &DataConfig, config_dir: &Path) -> Source {
    match (&d.train_file, &d.train_files) {
        (Some(file), _) => Source::File(resolve(file, config_dir)),
        (None, Some(list)) => first_existing(list, config_dir),
        (None, None) => first_existing(&defaults(DEFAULT_TRAIN_FILES), config_dir),
    }
}

/// The validation data of `d`: `valid_file`, else the first existing `valid_files` entry;
/// the default candidates only when the training data is also left to the defaults (a model
/// that names its training file holds out `valid_split` of it instead).
pub fn valid_source(d: &DataConfig, config_dir: &Path) -> Source {
    match (&d.valid_file, &d.valid_files) {
        (Some(file), _) => Source::File(resolve(file, config_dir)),
        (None, Some(list)) => first_existing(list, config_dir),
        (None, None) if d.train_file.is_none() && d.train_files.is_none() => {
            match first_existing(&defaults(DEFAULT_VALID_FILES), config_dir) {
                Source::NotFound(_) => Source::Unset,
                found => found,
            }
        }
        (None, None) => Source::Unset,
    }
}

fn defaults(list: &[&str]) -> Vec<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

fn resolve(path: &Path, config_dir: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    }
}

/// The places `path` is looked for: itself when absolute, else beside `models.yaml`, then in
/// the working directory.
fn candidates(path: &Path, config_dir: &Path) -> Vec<PathBuf> {
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    let mut found = vec![config_dir.join(path)];
    if let Ok(cwd) = std::env::current_dir() {
        let in_cwd = cwd.join(path);
        if !found.contains(&in_cwd) {
            found.push(in_cwd);
        }
    }
    found
}

fn first_existing(list: &[PathBuf], config_dir: &Path) -> Source {
    let mut tried = Vec::new();
    for entry in list {
        for path in candidates(entry, config_dir) {
            if path.is_file() {
                return Source::File(path);
            }
            tried.push(path);
        }
    }
    Source::NotFound(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_existing_candidate_wins_and_a_miss_lists_every_path(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("b"))?;
        std::fs::write(dir.path().join("b/train.json"), "[]")?;
        let d = DataConfig {
            train_files: Some(vec!["a/train.json".into(), "b/train.json".into()]),
            ..DataConfig::default()
        };
        assert_eq!(
            train_source(&d, dir.path()),
            Source::File(dir.path().join("b/train.json"))
        );
        let d = DataConfig {
            train_files: Some(vec!["/nowhere/train.json".into(), "a/train.json".into()]),
            ..DataConfig::default()
        };
        let Source::NotFound(tried) = train_source(&d, dir.path()) else {
            panic!("expected no file to be found");
        };
        assert_eq!(tried[0], PathBuf::from("/nowhere/train.json"));
        assert_eq!(tried[1], dir.path().join("a/train.json"));
        assert_eq!(tried[2], std::env::current_dir()?.join("a/train.json"));
        Ok(())
    }

    #[test]
    fn defaults_apply_only_when_no_training_file_is_named() {
        let dir = Path::new("/nonexistent-config-dir");
        let Source::NotFound(tried) = train_source(&DataConfig::default(), dir) else {
            panic!("the defaults do not exist here");
        };
        assert_eq!(tried[0], PathBuf::from("/app/data/cleaned/train.json"));
        assert!(tried.contains(&dir.join("./data/cleaned/train.json")));
        // No validation default found: hold out valid_split instead.
        assert_eq!(valid_source(&DataConfig::default(), dir), Source::Unset);
        let named = DataConfig {
            train_file: Some("t.json".into()),
            ..DataConfig::default()
        };
        assert_eq!(valid_source(&named, dir), Source::Unset);
    }
}
