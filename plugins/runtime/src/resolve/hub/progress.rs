//! Download progress: an indicatif bar on a terminal, plain log lines (through the host's
//! logger) elsewhere, and a [`Beat`] on every chunk so the watchdog knows bytes still flow.

use super::watchdog::Beat;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// How often a log line reports a download still running.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Progress of one file's download; hf-hub calls it through [`hf_hub::api::Progress`].
pub struct Reporter {
    repo: String,
    beat: Beat,
    bar: Option<ProgressBar>,
    file: String,
    size: usize,
    done: usize,
    started: Instant,
    last_line: Instant,
}

impl Reporter {
    /// A reporter for one file of `repo`; a bar when `bar`, log lines otherwise.
    pub fn new(repo: &str, beat: Beat, bar: bool) -> Self {
        let bar = bar.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self {
            repo: repo.to_string(),
            beat,
            bar,
            file: String::new(),
            size: 0,
            done: 0,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }
}

impl hf_hub::api::Progress for Reporter {
    fn init(&mut self, size: usize, filename: &str) {
        self.beat.now();
        // hf-hub calls init twice per file (then `update` with any resumed bytes).
        if self.file != filename {
            self.file = filename.to_string();
            self.started = Instant::now();
            self.last_line = Instant::now();
            if self.bar.is_none() {
                clarity_sdk::info!(
                    "downloading {}/{} ({})",
                    self.repo,
                    filename,
                    HumanBytes(size as u64)
                );
            }
        }
        self.size = size;
        self.done = 0;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}/{}", self.repo, filename));
            bar.set_length(size as u64);
            bar.set_position(0);
        }
    }

    fn update(&mut self, size: usize) {
        self.beat.now();
        self.done += size;
        match &self.bar {
            Some(bar) => bar.inc(size as u64),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                let percent = (self.done * 100).checked_div(self.size).unwrap_or(100);
                clarity_sdk::info!(
                    "downloading {}/{}: {percent}% of {}",
                    self.repo,
                    self.file,
                    HumanBytes(self.size as u64)
                );
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        self.beat.now();
        match &self.bar {
            Some(bar) => bar.finish(),
            None => clarity_sdk::info!(
                "downloaded {}/{} ({} in {:.1} s)",
                self.repo,
                self.file,
                HumanBytes(self.done as u64),
                self.started.elapsed().as_secs_f64()
            ),
        }
    }
}
