//! `clarity-host train --sweep KEY=V1,V2 ...`: a grid of trainings of one entry, run one
//! after another, each recorded in TensorBoard (a run per trial, with the HParams plugin's
//! session data), the best on validation kept as the model.
//!
//! - [`grid`]: the `--sweep` arguments, the grid and each trial's entry.
//! - [`run`]: the trials, the choice and the move of the kept model into place.

pub mod grid;
pub mod run;

pub use grid::{trials, Axis, SweepError, Trial};
pub use run::{run, SweepOutcome, TrialResult, SWEEP_FILE};
