//! Training progress for people: an indicatif bar per epoch on a terminal (steps, loss, rate,
//! ETA), plain log lines every `logging_steps` steps elsewhere (CI, Docker, log files).

use crate::console;
use clarity_sdk::TrainEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Bars on standard error.
    Bars,
    /// Log lines only.
    Lines,
}

impl ProgressMode {
    /// Bars when standard error is a terminal and `CI` is not set.
    pub fn detect() -> Self {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        if std::io::stderr().is_terminal() && !ci {
            Self::Bars
        } else {
            Self::Lines
        }
    }
}

/// Turns training events into bars or log lines.
pub struct Progress {
    model: String,
    mode: ProgressMode,
    every: u64,
    total_steps: Option<u64>,
    epochs: u64,
    start_step: u64,
    started: Instant,
    bar: Option<(u64, ProgressBar)>,
}

impl Progress {
    pub fn new(model: &str, every: usize, mode: ProgressMode) -> Self {
        Self {
            model: model.to_string(),
            mode,
            every: every.max(1) as u64,
            total_steps: None,
            epochs: 0,
            start_step: 0,
            started: Instant::now(),
            bar: None,
        }
    }

    pub fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                total_steps,
                epochs,
                train_examples,
                start_step,
            } => {
                self.total_steps = *total_steps;
                self.epochs = *epochs;
                self.start_step = *start_step;
                self.started = Instant::now();
                let resuming = if *start_step > 0 {
                    format!(", resuming at step {start_step}")
                } else {
                    String::new()
                };
                tracing::info!(
                    "`{}`: {train_examples} examples, {epochs} epochs, {} steps{resuming}",
                    self.model,
                    total_steps.map_or_else(|| "?".into(), |t| t.to_string()),
                );
            }
            TrainEvent::Step {
                step,
                epoch,
                loss,
                learning_rate,
            } => match self.mode {
                ProgressMode::Bars => self.advance_bar(*step, *epoch, *loss, *learning_rate),
                ProgressMode::Lines => self.log_step(*step, *epoch, *loss, *learning_rate),
            },
            TrainEvent::Eval {
                step,
                epoch,
                loss,
                metrics,
            } => {
                let loss = loss.map(|l| format!(" loss {l:.4}")).unwrap_or_default();
                tracing::info!(
                    "`{}`: eval at epoch {epoch} step {step}: accuracy {:.4} macro-F1 {:.4}{loss}",
                    self.model,
                    metrics.accuracy,
                    metrics.macro_f1
                );
            }
            TrainEvent::Checkpoint { step, path } => tracing::info!(
                "`{}`: checkpoint at step {step}: {}",
                self.model,
                path.display()
            ),
            TrainEvent::Message { text } => tracing::info!("`{}`: {text}", self.model),
        }
    }

    /// Steps per epoch, when the plan is known.
    fn epoch_len(&self) -> Option<u64> {
        let total = self.total_steps?;
        (self.epochs > 0).then(|| total.div_ceil(self.epochs))
    }

    fn advance_bar(&mut self, step: u64, epoch: u64, loss: f64, lr: Option<f64>) {
        if self.bar.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.finish_bar();
            let bar = match self.epoch_len() {
                Some(len) => ProgressBar::new(len),
                None => ProgressBar::no_length(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(bar_style());
            bar.set_prefix(format!("{} epoch {epoch}/{}", self.model, self.epochs));
            if let Some(len) = self.epoch_len() {
                // A resumed epoch starts part-way through.
                bar.set_position((step.saturating_sub(1)).saturating_sub((epoch - 1) * len));
                bar.reset_eta();
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            console::set_active_bar(Some(bar.clone()));
            self.bar = Some((epoch, bar));
        }
        if let Some((_, bar)) = &self.bar {
            bar.inc(1);
            let lr = lr.map(|l| format!(" lr {l:.2e}")).unwrap_or_default();
            bar.set_message(format!("loss {loss:.4}{lr}"));
        }
    }

    fn finish_bar(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            // Left where it stopped: an early stop shows 50/300, not a full bar.
            bar.abandon();
            console::set_active_bar(None);
        }
    }

    fn log_step(&self, step: u64, epoch: u64, loss: f64, lr: Option<f64>) {
        if !step.is_multiple_of(self.every) && Some(step) != self.total_steps {
            return;
        }
        let total = self
            .total_steps
            .map(|t| format!("/{t}"))
            .unwrap_or_default();
        let lr = lr.map(|l| format!(" lr {l:.2e}")).unwrap_or_default();
        let done = step.saturating_sub(self.start_step);
        let secs = self.started.elapsed().as_secs_f64();
        let mut pace = String::new();
        if done > 0 && secs > 0.0 {
            let rate = done as f64 / secs;
            pace = format!(" {}", format_rate(rate));
            if let Some(total) = self.total_steps {
                let left = total.saturating_sub(step) as f64 / rate;
                pace.push_str(&format!(" ETA {}", format_duration(left)));
            }
        }
        tracing::info!(
            "`{}`: epoch {epoch} step {step}{total} loss {loss:.4}{lr}{pace}",
            self.model
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish_bar();
    }
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {msg} {rate} ETA {eta}")
        .map(|s| {
            s.progress_chars("=> ").with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let rate = state.per_sec();
                    if rate.is_finite() && rate > 0.0 {
                        let _ = w.write_str(&format_rate(rate));
                    }
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// `2.5 steps/s`, or `4.0 s/step` when slower than one a second.
fn format_rate(steps_per_sec: f64) -> String {
    if steps_per_sec >= 1.0 {
        format!("{steps_per_sec:.1} steps/s")
    } else {
        format!("{:.1} s/step", 1.0 / steps_per_sec)
    }
}

/// `45s`, `3m05s`, `1h02m`.
fn format_duration(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_durations_read_well() {
        assert_eq!(format_rate(2.54), "2.5 steps/s");
        assert_eq!(format_rate(0.25), "4.0 s/step");
        assert_eq!(format_duration(45.2), "45s");
        assert_eq!(format_duration(185.0), "3m05s");
        assert_eq!(format_duration(3720.0), "1h02m");
    }

    #[test]
    fn a_bar_per_epoch_follows_the_steps_and_resumes_part_way() {
        let mut p = Progress::new("m", 1, ProgressMode::Bars);
        p.on_event(&TrainEvent::Started {
            total_steps: Some(10),
            epochs: 2,
            train_examples: 40,
            start_step: 2,
        });
        for step in 3..=6 {
            let epoch = if step <= 5 { 1 } else { 2 };
            p.on_event(&TrainEvent::Step {
                step,
                epoch,
                loss: 1.0,
                learning_rate: None,
            });
        }
        let (epoch, bar) = p.bar.as_ref().unwrap();
        assert_eq!((*epoch, bar.position(), bar.length()), (2, 1, Some(5)));
    }
}
