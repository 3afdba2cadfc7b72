//! What the host adds to every plugin's training run: progress on the terminal or in the log,
//! TensorBoard event files, and the report with its plot.
//!
//! - [`history`]: the steps and evaluations of a run, kept for the report.
//! - [`progress`]: indicatif bars on a terminal, log lines elsewhere.
//! - [`recorder`]: events as TensorBoard scalars in `runs/<model>/<time>/`.
//! - [`report`]: `report.json` and `curves.png` in the run folder.
//! - [`plot`]: the PNG, drawn with plotters.

pub mod history;
pub mod plot;
pub mod progress;
pub mod recorder;
pub mod report;

pub use history::History;
pub use progress::{Progress, ProgressMode};
pub use recorder::RunRecorder;
pub use report::RunReport;
