//! Writing a model folder so it is either complete or absent.
//!
//! Training writes into a hidden staging folder beside the final one. Only after the plugin
//! returns, the host has written its own files and the staged model has loaded and scored
//! the validation set, [`Staging::commit`] swaps it into place. Any failure (an error, a
//! panic, Ctrl-C) drops the staging folder and leaves the previous model untouched.

use std::io;
use std::path::{Path, PathBuf};

/// Sub-folder of a model folder holding training checkpoints; it survives failed runs.
pub const CHECKPOINTS: &str = "checkpoints";

/// A staging folder for one model folder.
#[derive(Debug)]
pub struct Staging {
    final_dir: PathBuf,
    staging_dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Create an empty staging folder for `final_dir`, clearing leftovers of crashed runs.
    pub fn create(final_dir: &Path) -> io::Result<Self> {
        let parent = final_dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)?;
        let name = folder_name(final_dir);
        remove_leftovers(parent, &name);
        let staging_dir = parent.join(format!(".{name}.staging-{}", std::process::id()));
        std::fs::create_dir_all(&staging_dir)?;
        Ok(Self {
            final_dir: final_dir.to_path_buf(),
            staging_dir,
            committed: false,
        })
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.staging_dir
    }

    /// Move the staged model into place, keeping the old folder's checkpoints.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        let old_checkpoints = self.final_dir.join(CHECKPOINTS);
        let new_checkpoints = self.staging_dir.join(CHECKPOINTS);
        if old_checkpoints.is_dir() && !new_checkpoints.exists() {
            std::fs::rename(&old_checkpoints, &new_checkpoints)?;
        }
        let parent = self.final_dir.parent().unwrap_or(Path::new("."));
        let retired = parent.join(format!(
            ".{}.old-{}",
            folder_name(&self.final_dir),
            std::process::id()
        ));
        let had_old = self.final_dir.exists();
        if had_old {
            std::fs::rename(&self.final_dir, &retired)?;
        }
        if let Err(e) = std::fs::rename(&self.staging_dir, &self.final_dir) {
            if had_old {
                // Put the previous model back rather than leave nothing.
                let _ = std::fs::rename(&retired, &self.final_dir);
            }
            return Err(e);
        }
        self.committed = true;
        if had_old {
            let _ = std::fs::remove_dir_all(&retired);
        }
        Ok(self.final_dir.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging_dir);
        }
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Remove staging/retired folders of this model left by runs that were killed.
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let staging = format!(".{name}.staging-");
    let retired = format!(".{name}.old-");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with(&staging) || file_name.starts_with(&retired) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether `dir` holds a model (any file besides checkpoints).
pub fn has_model(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy() != CHECKPOINTS)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_staging_leaves_nothing_and_keeps_old_model() {
        let root = tempfile::tempdir().expect("tempdir");
        let final_dir = root.path().join("m");
        std::fs::create_dir_all(final_dir.join(CHECKPOINTS)).expect("mkdir");
        std::fs::write(final_dir.join("model.bin"), "old").expect("write");
        {
            let staging = Staging::create(&final_dir).expect("staging");
            std::fs::write(staging.path().join("model.bin"), "half").expect("write");
        }
        assert_eq!(
            std::fs::read_to_string(final_dir.join("model.bin"))
                .ok()
                .as_deref(),
            Some("old")
        );
        assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1);
    }

    #[test]
    fn commit_replaces_model_and_carries_checkpoints() {
        let root = tempfile::tempdir().expect("tempdir");
        let final_dir = root.path().join("m");
        std::fs::create_dir_all(final_dir.join(CHECKPOINTS)).expect("mkdir");
        std::fs::write(final_dir.join(CHECKPOINTS).join("step-1"), "ckpt").expect("write");
        std::fs::write(final_dir.join("model.bin"), "old").expect("write");
        let staging = Staging::create(&final_dir).expect("staging");
        std::fs::write(staging.path().join("model.bin"), "new").expect("write");
        staging.commit().expect("commit");
        assert_eq!(
            std::fs::read_to_string(final_dir.join("model.bin"))
                .ok()
                .as_deref(),
            Some("new")
        );
        assert!(final_dir.join(CHECKPOINTS).join("step-1").is_file());
        assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1);
        assert!(has_model(&final_dir));
    }
}
