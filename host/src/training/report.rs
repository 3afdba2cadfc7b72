//! The training report: `report.json` and `curves.png` in the run folder, and the same JSON
//! as `train_report.json` in the model folder.

use super::history::History;
use super::plot::{self, Curves};
use clarity_sdk::metrics::Evaluation;
use clarity_sdk::TrainReport;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// File names in the run folder.
pub const REPORT_FILE: &str = "report.json";
pub const PLOT_FILE: &str = "curves.png";

/// Everything about one finished run.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    pub model: &'a str,
    /// The models.yaml entry the run trained (what `clarity-host runs` compares).
    pub entry: &'a clarity_sdk::ModelSpec,
    pub seconds: f64,
    pub train_examples: usize,
    pub valid_examples: usize,
    pub valid_source: &'a str,
    pub resumed: bool,
    /// Epoch of the kept model (the plugin's word, else the best evaluation's).
    pub best_epoch: Option<u64>,
    /// The committed model on the validation set, confusion matrix included.
    pub valid: Option<&'a Evaluation>,
    pub majority_baseline: Option<&'a Evaluation>,
    /// What the plugin returned.
    pub report: &'a TrainReport,
    pub history: &'a History,
    pub artifact_dir: &'a Path,
    pub run_dir: Option<&'a Path>,
}

impl RunReport<'_> {
    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    /// Write `report.json` and `curves.png` into the run folder; returns the files written.
    /// The plot is best effort (a run with no steps has nothing to draw).
    pub fn write_run_files(&self, run_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let json = self.json().map_err(std::io::Error::other)?;
        let report = run_dir.join(REPORT_FILE);
        write_atomically(&report, json.as_bytes())?;
        let mut written = vec![report];
        let plot_path = run_dir.join(PLOT_FILE);
        match plot::write_curves_png(&plot_path, &self.curves_data().as_curves()) {
            Ok(()) => written.push(plot_path),
            Err(e) => tracing::warn!("no training plot: {e}"),
        }
        Ok(written)
    }

    fn curves_data(&self) -> CurvesData {
        let h = self.history;
        CurvesData {
            title: format!("{}: training curves", self.model),
            train_loss: h.steps.iter().map(|s| (s.step, s.loss)).collect(),
            valid_loss: h
                .evaluations
                .iter()
                .filter_map(|e| e.loss.map(|l| (e.step, l)))
                .collect(),
            macro_f1: h.evaluations.iter().map(|e| (e.step, e.macro_f1)).collect(),
        }
    }
}

struct CurvesData {
    title: String,
    train_loss: Vec<(u64, f64)>,
    valid_loss: Vec<(u64, f64)>,
    macro_f1: Vec<(u64, f64)>,
}

impl CurvesData {
    fn as_curves(&self) -> Curves<'_> {
        Curves {
            title: &self.title,
            train_loss: &self.train_loss,
            valid_loss: &self.valid_loss,
            macro_f1: &self.macro_f1,
        }
    }
}

/// Write to `<path>.tmp`, then rename: a crash leaves the old file or none, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
