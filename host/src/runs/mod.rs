//! `clarity-host runs --model NAME`: the recorded training runs of a model side by side, for
//! when TensorBoard is not at hand.
//!
//! - [`collect`]: the runs under `<logdir>/<model>/` (sweep trials included) and what their
//!   `report.json` says, and which settings differ between them.
//! - [`page`]: one HTML file comparing their curves (SVG drawn by plotters) and confusion
//!   matrices.

pub mod collect;
pub mod page;

pub use collect::{collect, differing_settings, RecordedRun};
