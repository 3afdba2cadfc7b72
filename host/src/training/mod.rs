//! The host's side of training, for every plugin: the run itself, progress on the terminal
//! or in the log, TensorBoard event files, and the report with its plot.
//!
//! - [`driver`]: one run, from the data to the committed model folder ([`run`]).
//! - [`history`]: the steps and evaluations of a run, kept for the report.
//! - [`progress`]: indicatif bars on a terminal, log lines elsewhere.
//! - [`recorder`]: events as TensorBoard scalars in `runs/<model>/<time>/`.
//! - [`report`]: `report.json` and `curves.png` in the run folder.
//! - [`plot`]: the PNG, drawn with plotters.

pub mod driver;
pub mod history;
pub mod plot;
pub mod progress;
pub mod recorder;
pub mod report;

pub use driver::{classify_examples, run, Interrupted, TrainOptions, TrainOutcome, TrialRun};
pub use history::History;
pub use progress::{Progress, ProgressMode};
pub use recorder::RunRecorder;
pub use report::RunReport;
