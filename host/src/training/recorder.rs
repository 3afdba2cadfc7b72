//! Training events as TensorBoard scalars in `runs/<model>/<time>/`, for every plugin.
//!
//! Tags: `train/loss`, `train/learning_rate`, `train/epoch`; `eval/accuracy`,
//! `eval/macro_f1`, `eval/loss`, `eval/f1/<label>`; the models.yaml entry as the text
//! summary `config/models.yaml`; at the end, `final/macro_f1` and `final/accuracy` of the
//! model kept. A sweep's trial is also an HParams session (its settings, then its status).
//! Writing event files is never worth failing a run for: an I/O error is logged once and
//! recording stops.

use crate::tensorboard::hparams::{self, Status};
use crate::tensorboard::writer::wall_time;
use crate::tensorboard::EventWriter;
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::{ModelSpec, TrainEvent};
use std::path::{Path, PathBuf};

/// The run folder and its event file.
pub struct RunRecorder {
    dir: PathBuf,
    writer: Option<EventWriter>,
    /// An HParams session was started and has not ended yet.
    session_open: bool,
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
        Self::create_at(dir, spec)
    }

    /// A run in the folder `dir` (a sweep's trial), created if missing.
    pub fn create_at(dir: PathBuf, spec: &ModelSpec) -> std::io::Result<Self> {
        let mut writer = EventWriter::create(&dir)?;
        let yaml = serde_yaml::to_string(spec).unwrap_or_default();
        writer.text(0, "config/models.yaml", &format!("```yaml\n{yaml}```"))?;
        Ok(Self {
            dir,
            writer: Some(writer),
            session_open: false,
        })
    }

    /// Start the HParams session of a trial with the settings it tries.
    pub fn start_session(&mut self, settings: &[(String, serde_json::Value)]) {
        let value = hparams::session_start(settings, wall_time());
        self.write(|w| w.summary(0, vec![value]));
        self.session_open = self.writer.is_some();
    }

    /// The scores of the model kept, as the run's last scalars (the HParams metrics).
    pub fn final_scores(&mut self, step: u64, valid: &Evaluation) {
        self.write(|w| {
            w.scalars(
                step,
                &[
                    ("final/macro_f1", valid.macro_f1),
                    ("final/accuracy", valid.accuracy),
                ],
            )
        });
    }

    /// End the HParams session, if one was started.
    pub fn end_session(&mut self, status: Status) {
        if std::mem::take(&mut self.session_open) {
            let value = hparams::session_end(status, wall_time());
            self.write(|w| w.summary(0, vec![value]));
        }
    }

    fn write(&mut self, op: impl FnOnce(&mut EventWriter) -> std::io::Result<()>) {
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        if let Err(e) = op(writer) {
            tracing::warn!(
                "TensorBoard events stop here: cannot write {}: {e}",
                writer.path().display()
            );
            self.writer = None;
        }
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Record `event` (steps and evaluations; the rest is not a scalar).
    pub fn on_event(&mut self, event: &TrainEvent) {
        match event {
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
                self.write(|w| w.scalars(*step, &values));
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
                self.write(|w| w.scalars(*step, &values));
            }
            _ => {}
        }
    }
}

impl Drop for RunRecorder {
    /// A session still open when the run is dropped ended in an error.
    fn drop(&mut self) {
        self.end_session(Status::Failure);
    }
}
