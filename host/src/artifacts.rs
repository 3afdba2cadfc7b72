//! Writing a model folder so it is either complete or absent.
//!
//! Training writes into a hidden staging folder beside the final one. Only after the plugin
//! returns, the host has written its own files and the staged model has loaded and scored
//! the validation set, [`Staging::commit`] swaps it into place. Any failure (an error, a
//! panic, Ctrl-C) drops the staging folder and leaves the previous model untouched.
//!
//! A `kill -9` at any moment leaves the final folder holding a whole model, old or new: the
//! staged files are flushed to disk first and the swap is one atomic `renameat2` exchange on
//! Linux. What the kill can leave behind is hidden (`.NAME.staging-PID`, `.NAME.old-PID`);
//! the next [`Staging::create`] puts back what belongs in the final folder (its checkpoints,
//! or the whole previous model when a non-atomic swap was cut in half) and removes the rest.

use clarity_sdk::durable;
use std::io;
use std::path::{Path, PathBuf};

/// Sub-folder of a model folder holding training checkpoints; it survives failed runs.
pub const CHECKPOINTS: &str = "checkpoints";

/// A model folder that cannot be written or swapped.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {}", path.display(), durable::explain(error))]
pub struct ArtifactError {
    /// What was being done ("write to", "create", "rename").
    pub action: &'static str,
    /// The file or folder.
    pub path: PathBuf,
    /// The OS error (said in the message, so not a `source` repeated after it).
    pub error: io::Error,
}

fn fail<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArtifactError + 'a {
    move |error| ArtifactError {
        action,
        path: path.to_path_buf(),
        error,
    }
}

/// A staging folder for one model folder.
#[derive(Debug)]
pub struct Staging {
    final_dir: PathBuf,
    staging_dir: PathBuf,
    committed: bool,
}

impl Staging {
    /// Create an empty staging folder for `final_dir`, after recovering what killed runs left
    /// and checking that the final folder (and its checkpoints) can be written, so a read-only
    /// `output_dir` fails now rather than after the training.
    pub fn create(final_dir: &Path) -> Result<Self, ArtifactError> {
        let parent = parent_of(final_dir);
        std::fs::create_dir_all(&parent).map_err(fail("create", &parent))?;
        let name = folder_name(final_dir);
        recover_leftovers(&parent, &name, final_dir);
        for dir in [final_dir.to_path_buf(), final_dir.join(CHECKPOINTS)] {
            if dir.is_dir() {
                check_writable(&dir)?;
            }
        }
        let staging_dir = parent.join(format!(".{name}.staging-{}", std::process::id()));
        std::fs::create_dir_all(&staging_dir).map_err(fail("write to", &parent))?;
        Ok(Self {
            final_dir: final_dir.to_path_buf(),
            staging_dir,
            committed: false,
        })
    }

    /// A staging folder for `final_dir` that is the complete model folder `model` (moved,
    /// so it must be on the same file system: a sibling of `final_dir`).
    pub fn adopt(final_dir: &Path, model: &Path) -> Result<Self, ArtifactError> {
        let staging = Self::create(final_dir)?;
        std::fs::remove_dir(&staging.staging_dir).map_err(fail("replace", &staging.staging_dir))?;
        std::fs::rename(model, &staging.staging_dir).map_err(fail("move", model))?;
        Ok(staging)
    }

    /// The folder to write into.
    pub fn path(&self) -> &Path {
        &self.staging_dir
    }

    /// Flush the staged model to disk and swap it into place, keeping the old folder's
    /// checkpoints.
    pub fn commit(mut self) -> Result<PathBuf, ArtifactError> {
        durable::sync_tree(&self.staging_dir).map_err(fail("flush", &self.staging_dir))?;
        let parent = parent_of(&self.final_dir);
        if self.final_dir.exists() {
            // From here on the final folder always holds a whole model, old or new.
            let old = swap(&self.staging_dir, &self.final_dir)?;
            self.committed = true;
            let old_checkpoints = old.join(CHECKPOINTS);
            let new_checkpoints = self.final_dir.join(CHECKPOINTS);
            if old_checkpoints.is_dir() && !new_checkpoints.exists() {
                std::fs::rename(&old_checkpoints, &new_checkpoints)
                    .map_err(fail("move the checkpoints into", &self.final_dir))?;
            }
            // A retired folder we cannot remove is cleared by the next run.
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.staging_dir, &self.final_dir)
                .map_err(fail("rename the staged model to", &self.final_dir))?;
            self.committed = true;
        }
        durable::sync_dir(&parent).map_err(fail("flush", &parent))?;
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

/// Put `staged` in `final_dir`'s place; returns where the previous folder now is.
///
/// Linux exchanges the two names atomically. Elsewhere (or on a file system without
/// `RENAME_EXCHANGE`) the old folder is renamed aside first: a kill between the two renames
/// leaves no final folder, and [`Staging::create`] then renames the old one back.
fn swap(staged: &Path, final_dir: &Path) -> Result<PathBuf, ArtifactError> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::errno::Errno;
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        match renameat2(
            AT_FDCWD,
            staged,
            AT_FDCWD,
            final_dir,
            RenameFlags::RENAME_EXCHANGE,
        ) {
            Ok(()) => return Ok(staged.to_path_buf()),
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
            Err(e) => {
                return Err(fail("swap the staged model into", final_dir)(
                    io::Error::from(e),
                ))
            }
        }
    }
    let retired = parent_of(final_dir).join(format!(
        ".{}.old-{}",
        folder_name(final_dir),
        std::process::id()
    ));
    std::fs::rename(final_dir, &retired).map_err(fail("move aside", final_dir))?;
    if let Err(e) = std::fs::rename(staged, final_dir) {
        // Put the previous model back rather than leave nothing.
        let _ = std::fs::rename(&retired, final_dir);
        return Err(fail("rename the staged model to", final_dir)(e));
    }
    Ok(retired)
}

/// Fail with the path and the OS error when `dir` does not take a new file.
fn check_writable(dir: &Path) -> Result<(), ArtifactError> {
    const PROBE: &str = ".clarity-write-check-";
    // Probes of killed runs.
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(PROBE) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let probe = dir.join(format!("{PROBE}{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail("write to", dir))?;
    std::fs::remove_file(&probe).map_err(fail("write to", dir))
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// Clear the staging and retired folders of this model that killed runs left, first putting
/// back what the final folder lacks: the previous model (a swap cut in half) or its
/// checkpoints (a commit killed before it moved them).
fn recover_leftovers(parent: &Path, name: &str, final_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let staging = format!(".{name}.staging-");
    let retired = format!(".{name}.old-");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let is_retired = file_name.starts_with(&retired);
        if !(is_retired || file_name.starts_with(&staging)) {
            continue;
        }
        let leftover = entry.path();
        if is_retired
            && !final_dir.exists()
            && has_model(&leftover)
            && std::fs::rename(&leftover, final_dir).is_ok()
        {
            tracing::warn!(
                "put back the previous model in {} (a run was killed while replacing it)",
                final_dir.display()
            );
            continue;
        }
        let checkpoints = leftover.join(CHECKPOINTS);
        let home = final_dir.join(CHECKPOINTS);
        if checkpoints.is_dir()
            && final_dir.is_dir()
            && !home.exists()
            && std::fs::rename(&checkpoints, &home).is_ok()
        {
            tracing::warn!(
                "put back the checkpoints in {} (a run was killed while committing its model)",
                home.display()
            );
        }
        let _ = std::fs::remove_dir_all(&leftover);
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
    fn a_swap_cut_in_half_puts_the_previous_model_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let final_dir = root.path().join("m");
        // Killed between moving the old folder aside and renaming the new one in.
        let retired = root.path().join(".m.old-1");
        std::fs::create_dir_all(retired.join(CHECKPOINTS)).expect("mkdir");
        std::fs::write(retired.join("model.bin"), "old").expect("write");
        let half = root.path().join(".m.staging-1");
        std::fs::create_dir_all(&half).expect("mkdir");
        std::fs::write(half.join("model.bin"), "new").expect("write");
        let staging = Staging::create(&final_dir).expect("staging");
        assert_eq!(
            std::fs::read_to_string(final_dir.join("model.bin"))
                .ok()
                .as_deref(),
            Some("old")
        );
        assert!(final_dir.join(CHECKPOINTS).is_dir());
        drop(staging);
        assert_eq!(std::fs::read_dir(root.path()).expect("ls").count(), 1);
    }

    #[test]
    fn a_commit_killed_before_moving_the_checkpoints_puts_them_back() {
        let root = tempfile::tempdir().expect("tempdir");
        let final_dir = root.path().join("m");
        std::fs::create_dir_all(&final_dir).expect("mkdir");
        std::fs::write(final_dir.join("model.bin"), "new").expect("write");
        // After the exchange the staging name holds the old model and its checkpoints.
        let old = root.path().join(".m.staging-1");
        std::fs::create_dir_all(old.join(CHECKPOINTS)).expect("mkdir");
        std::fs::write(old.join(CHECKPOINTS).join("step-1"), "ckpt").expect("write");
        std::fs::write(old.join("model.bin"), "old").expect("write");
        drop(Staging::create(&final_dir).expect("staging"));
        assert!(final_dir.join(CHECKPOINTS).join("step-1").is_file());
        assert_eq!(
            std::fs::read_to_string(final_dir.join("model.bin"))
                .ok()
                .as_deref(),
            Some("new")
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
