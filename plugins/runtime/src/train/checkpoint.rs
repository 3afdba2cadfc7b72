//! Checkpoints for `train --resume`: the trainable weights, the optimizer's moments and
//! where the run was, in `checkpoint_dir/step-NNNNNNNN/`.
//!
//! Each is written into a hidden temporary folder (state last), flushed to disk and renamed
//! into place only when complete, so a `kill -9` at any moment leaves whole checkpoints and
//! at most a hidden leftover, which the next run removes ([`remove_stale`]). Resuming takes
//! the newest checkpoint that reads back whole and skips any that does not.

use candle_core::{Device, Tensor};
use clarity_sdk::durable;
use clarity_sdk::metrics::Evaluation;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Trainable weights, by variable name.
pub const WEIGHTS: &str = "weights.safetensors";
/// AdamW moments (`m.NAME`, `v.NAME`).
pub const OPTIMIZER: &str = "optimizer.safetensors";
/// [`RunState`] as JSON.
pub const STATE: &str = "state.json";
/// The best weights so far (by `metric_for_best_model`), beside the step checkpoints.
pub const BEST: &str = "best.safetensors";

const PREFIX: &str = "step-";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {message}")]
pub struct CheckpointError {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

fn err(path: &Path, message: impl std::fmt::Display) -> CheckpointError {
    CheckpointError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// A failed write or read, with the cause and the fix when it is the disk's or the limits'.
fn io_err(path: &Path, error: &(dyn std::error::Error + 'static)) -> CheckpointError {
    err(path, durable::explain_chain(error))
}

/// The best evaluation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Epoch it was taken in (1-based; a mid-epoch evaluation counts as its epoch).
    pub epoch: u64,
    /// Optimizer step it was taken at.
    pub step: u64,
    /// Its scores.
    pub evaluation: Evaluation,
    /// Its mean validation loss (absent in checkpoints written before it was recorded).
    #[serde(default)]
    pub loss: Option<f64>,
}

/// Where a run is: everything besides tensors that resuming needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Layout version of this file.
    pub format: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Training examples of the current (unfinished) epoch already used.
    pub examples_in_epoch: u64,
    /// Optimizer updates (AdamW's bias-correction count).
    pub updates: u64,
    /// Training examples the run was started with (the epoch order depends on it).
    pub train_examples: u64,
    /// Shuffle seed.
    pub seed: u64,
    /// Labels, in output order.
    pub labels: Vec<String>,
    /// The best evaluation so far.
    pub best: Option<Best>,
    /// Evaluations since the best one (for early stopping).
    pub evals_since_best: u64,
    /// Mean training loss of the last completed epoch.
    pub train_loss: Option<f64>,
}

impl RunState {
    /// Current layout version.
    pub const FORMAT: u32 = 1;
}

/// A checkpoint read back.
pub struct Loaded {
    /// Its folder.
    pub dir: PathBuf,
    /// Where the run was.
    pub state: RunState,
    /// Trainable weights.
    pub weights: HashMap<String, Tensor>,
    /// Optimizer moments.
    pub optimizer: HashMap<String, Tensor>,
}

/// Step checkpoints in `dir`, oldest first.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix(PREFIX)?.parse::<u64>().ok()?;
            let path = e.path();
            is_complete(&path).then_some((step, path))
        })
        .collect();
    found.sort();
    found
}

/// Whether `dir` holds every file of a checkpoint (the state is written last).
fn is_complete(dir: &Path) -> bool {
    [WEIGHTS, OPTIMIZER, STATE]
        .iter()
        .all(|name| dir.join(name).is_file())
}

/// Remove the hidden leftovers of checkpoints whose writing was cut short (a killed run):
/// `.step-*` folders and `.best.safetensors.tmp`. Returns how many were removed.
pub fn remove_stale(dir: &Path) -> Result<usize, CheckpointError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name.starts_with(&format!(".{PREFIX}")) || name == format!(".{BEST}.tmp");
        if !stale {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.map_err(|e| io_err(&path, &e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Write a checkpoint for `state.step`, then remove all but the newest `keep`
/// (`training_config.save_total_limit`).
///
/// At least the newest is always kept, whatever `keep` says: it is what `--resume` continues
/// from. The best weights live beside the checkpoints in [`BEST`], so pruning never loses the
/// model `load_best_model_at_end` exports. (The original deletes every checkpoint once
/// training ends; ours stay so a later `train --resume` with more epochs can continue.)
pub fn save(
    dir: &Path,
    state: &RunState,
    weights: &HashMap<String, Tensor>,
    optimizer: &HashMap<String, Tensor>,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let name = format!("{PREFIX}{:08}", state.step);
    let final_dir = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, &e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, &e))?;
    let write = || -> Result<(), CheckpointError> {
        save_tensors(weights, &tmp.join(WEIGHTS))?;
        save_tensors(optimizer, &tmp.join(OPTIMIZER))?;
        // The state goes last: a folder without it is never taken for a checkpoint.
        let path = tmp.join(STATE);
        let json = serde_json::to_string_pretty(state).map_err(|e| err(&path, e))?;
        std::fs::write(&path, json).map_err(|e| io_err(&path, &e))?;
        durable::sync_file(&path).map_err(|e| io_err(&path, &e))?;
        durable::sync_dir(&tmp).map_err(|e| io_err(&tmp, &e))
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if final_dir.exists() {
        // Rewriting a step (a resumed run stopped where it started): the older checkpoints
        // stay until the new one is in place.
        remove(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir).map_err(|e| io_err(&final_dir, &e))?;
    durable::sync_dir(dir).map_err(|e| io_err(dir, &e))?;
    let all = list(dir);
    for (_, old) in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        // A checkpoint we cannot remove costs disk space, not correctness.
        let _ = remove(old);
    }
    Ok(final_dir)
}

/// Remove a checkpoint folder so that a kill part-way never leaves it half-deleted under its
/// own name: it is renamed to a hidden name first (one atomic step), then deleted.
fn remove(checkpoint: &Path) -> Result<(), CheckpointError> {
    let name = checkpoint
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hidden = checkpoint.with_file_name(format!(".{name}.old"));
    if hidden.exists() {
        std::fs::remove_dir_all(&hidden).map_err(|e| io_err(&hidden, &e))?;
    }
    std::fs::rename(checkpoint, &hidden).map_err(|e| io_err(checkpoint, &e))?;
    std::fs::remove_dir_all(&hidden).map_err(|e| io_err(&hidden, &e))
}

/// Write `tensors` to `path` and flush it to disk.
fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), CheckpointError> {
    candle_core::safetensors::save(tensors, path).map_err(|e| io_err(path, &e))?;
    durable::sync_file(path).map_err(|e| io_err(path, &e))
}

/// Write the best weights so far, atomically.
pub fn save_best(dir: &Path, weights: &HashMap<String, Tensor>) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, &e))?;
    let path = dir.join(BEST);
    let tmp = dir.join(format!(".{BEST}.tmp"));
    if let Err(e) = save_tensors(weights, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path).map_err(|e| io_err(&path, &e))?;
    durable::sync_dir(dir).map_err(|e| io_err(dir, &e))
}

/// The best weights saved beside the checkpoints, if any.
pub fn load_best(
    dir: &Path,
    device: &Device,
) -> Result<Option<HashMap<String, Tensor>>, CheckpointError> {
    let path = dir.join(BEST);
    if !path.is_file() {
        return Ok(None);
    }
    candle_core::safetensors::load(&path, device)
        .map(Some)
        .map_err(|e| io_err(&path, &e))
}

/// The newest checkpoint in `dir` that reads back whole, if any, and the newer ones that did
/// not (with why). Fails only when there are checkpoints and none of them reads.
pub fn load_latest(
    dir: &Path,
    device: &Device,
) -> Result<Option<(Loaded, Vec<CheckpointError>)>, CheckpointError> {
    let mut skipped = Vec::new();
    for (_, path) in list(dir).into_iter().rev() {
        match load(&path, device) {
            Ok(loaded) => return Ok(Some((loaded, skipped))),
            Err(e) => skipped.push(e),
        }
    }
    match skipped.into_iter().next() {
        Some(newest) => Err(newest),
        None => Ok(None),
    }
}

/// The checkpoint in folder `path`.
fn load(path: &Path, device: &Device) -> Result<Loaded, CheckpointError> {
    let state_path = path.join(STATE);
    let text = std::fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, &e))?;
    let state: RunState = serde_json::from_str(&text).map_err(|e| err(&state_path, e))?;
    if state.format != RunState::FORMAT {
        return Err(err(
            &state_path,
            format!(
                "format {} (this build reads {})",
                state.format,
                RunState::FORMAT
            ),
        ));
    }
    let load = |name: &str| {
        candle_core::safetensors::load(path.join(name), device)
            .map_err(|e| io_err(&path.join(name), &e))
    };
    Ok(Loaded {
        weights: load(WEIGHTS)?,
        optimizer: load(OPTIMIZER)?,
        state,
        dir: path.to_path_buf(),
    })
}

/// Remove the step checkpoints and best weights of an earlier run (a fresh run must not
/// leave them for a later `--resume` to pick up).
pub fn clear(dir: &Path) -> Result<usize, CheckpointError> {
    let old = list(dir);
    for (_, path) in &old {
        remove(path)?;
    }
    let best = dir.join(BEST);
    if best.is_file() {
        std::fs::remove_file(&best).map_err(|e| io_err(&best, &e))?;
    }
    Ok(old.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64) -> RunState {
        RunState {
            format: RunState::FORMAT,
            step,
            epoch: 1,
            examples_in_epoch: 8,
            updates: step,
            train_examples: 64,
            seed: 42,
            labels: vec!["a".into(), "b".into()],
            best: None,
            evals_since_best: 0,
            train_loss: Some(0.5),
        }
    }

    #[test]
    fn save_load_and_keep_only_the_newest() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let w: HashMap<String, Tensor> =
            [("x".to_string(), Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?)].into();
        for step in [3, 6, 9] {
            save(dir.path(), &state(step), &w, &HashMap::new(), 2)?;
        }
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![6, 9]);
        let (loaded, skipped) = load_latest(dir.path(), &Device::Cpu)?.ok_or("no checkpoint")?;
        assert!(skipped.is_empty());
        assert_eq!(loaded.state, state(9));
        assert_eq!(loaded.weights["x"].to_vec1::<f32>()?, vec![1.0, 2.0]);
        // No temporary folder is left behind.
        let hidden = std::fs::read_dir(dir.path())?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count();
        assert_eq!(hidden, 0);
        save_best(dir.path(), &w)?;
        assert!(load_best(dir.path(), &Device::Cpu)?.is_some());
        assert_eq!(clear(dir.path())?, 2);
        assert!(load_latest(dir.path(), &Device::Cpu)?.is_none());
        assert!(load_best(dir.path(), &Device::Cpu)?.is_none());
        Ok(())
    }

    #[test]
    fn save_total_limit_bounds_the_checkpoints_kept() -> Result<(), Box<dyn std::error::Error>> {
        let w: HashMap<String, Tensor> =
            [("x".to_string(), Tensor::new(&[1.0f32], &Device::Cpu)?)].into();
        for (keep, expected) in [(1, vec![9]), (3, vec![3, 6, 9]), (0, vec![9])] {
            let dir = tempfile::tempdir()?;
            for step in [3, 6, 9] {
                save(dir.path(), &state(step), &w, &HashMap::new(), keep)?;
            }
            let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
            assert_eq!(steps, expected, "save_total_limit {keep}");
        }
        Ok(())
    }

    #[test]
    fn a_broken_newest_checkpoint_is_skipped_and_leftovers_removed(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let w: HashMap<String, Tensor> =
            [("x".to_string(), Tensor::new(&[1.0f32], &Device::Cpu)?)].into();
        for step in [3, 6] {
            save(dir.path(), &state(step), &w, &HashMap::new(), 5)?;
        }
        // Step 6's weights cut short (written by hand: our writer never leaves this).
        std::fs::write(dir.path().join("step-00000006").join(WEIGHTS), b"\x10\x00")?;
        // What a killed run leaves: a half-written hidden folder.
        std::fs::create_dir_all(dir.path().join(".step-00000009.tmp"))?;
        std::fs::write(dir.path().join(".step-00000009.tmp").join(WEIGHTS), b"half")?;
        let (loaded, skipped) = load_latest(dir.path(), &Device::Cpu)?.ok_or("no checkpoint")?;
        assert_eq!(loaded.state.step, 3);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].path.ends_with(WEIGHTS), "{}", skipped[0]);
        assert_eq!(remove_stale(dir.path())?, 1);
        assert!(!dir.path().join(".step-00000009.tmp").exists());
        Ok(())
    }

    #[test]
    fn a_folder_without_state_is_not_a_checkpoint() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("step-00000005"))?;
        assert!(list(dir.path()).is_empty());
        Ok(())
    }
}
