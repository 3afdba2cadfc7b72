//! Training events as TensorBoard scalars in `runs/<model>/<time>/`, for every plugin.
//!
//! Tags: `train/loss`, `train/learning_rate`, `train/epoch`; `eval/accuracy`,
//! `eval/macro_f1`, `eval/loss`, `eval/f1/<label>`; the models.yaml entry as the text
//! summary `config/models.yaml`. Writing event files is never worth failing a run for: an
//! I/O error is logged once and recording stops.

use crate::tensorboard::EventWriter;
use clarity_sdk::{ModelSpec, TrainEvent};
use std::path::{Path, PathBuf};

/// The run folder and its event file.
pub struct RunRecorder {
    dir: PathBuf,
    writer: Option<EventWriter>,
}

impl RunRecorder {
    /// A new run folder `<logdir>/<model>/<YYYYmmdd-HHMMSS>` (suffixed `-2`, `-3`... when
    /// taken) with an event file holding the entry.
    pub fn create(logdir: &Path, spec: &ModelSpec) -> std::io::Result<Self> {
        let parent = logdir.join(&spec.name);
        std::fs::create_dir_all(&parent)?;
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        let mut dir = parent.join(&stamp);
        let mut n = 2;
        // create_dir (not _all) fails on an existing folder, so two runs never share one.
        while let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e);
            }
            dir = parent.join(format!("{stamp}-{n}"));
            n += 1;
        }
        let mut writer = EventWriter::create(&dir)?;
        let yaml = serde_yaml::to_string(spec).unwrap_or_default();
        writer.text(0, "config/models.yaml", &format!("```yaml\n{yaml}```"))?;
        Ok(Self {
            dir,
            writer: Some(writer),
        })
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Record `event` (steps and evaluations; the rest is not a scalar).
    pub fn on_event(&mut self, event: &TrainEvent) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        let result = match event {
            TrainEvent::Step {
                step,
                epoch,
                loss,
                learning_rate,
            } => {
                let mut values = vec![("train/loss", *loss), ("train/epoch", *epoch as f64)];
                if let Some(lr) = learning_rate {
                    values.push(("train/learning_rate", *lr));
                }
                writer.scalars(*step, &values)
            }
            TrainEvent::Eval {
                step,
                loss,
                metrics,
                ..
            } => {
                let tags: Vec<String> = metrics
                    .per_label
                    .iter()
                    .map(|l| format!("eval/f1/{}", l.label))
                    .collect();
                let mut values = vec![
                    ("eval/accuracy", metrics.accuracy),
                    ("eval/macro_f1", metrics.macro_f1),
                ];
                if let Some(loss) = loss {
                    values.push(("eval/loss", *loss));
                }
                for (tag, label) in tags.iter().zip(&metrics.per_label) {
                    values.push((tag.as_str(), label.f1));
                }
                writer.scalars(*step, &values)
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(
                "TensorBoard events stop here: cannot write {}: {e}",
                writer.path().display()
            );
            self.writer = None;
        }
    }
}
