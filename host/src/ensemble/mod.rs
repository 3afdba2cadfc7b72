//! Ensembles (`type: ensemble`): the host combines the probability vectors of other entries
//! of `models.yaml` (its members); there is no plugin and no model code here.
//!
//! - [`combine`]: weights, bias and label alignment (the arithmetic).
//! - [`fit`]: weights and bias chosen on the validation set, maximising macro-F1.
//! - [`artifact`]: `ensemble.json`, what `train` writes and `test` / `serve` read.
//! - [`train`]: members trained first when they never were, then the fit.
//! - [`local`]: the ensemble with its members loaded in this process (`test`).
//! - [`serve`]: the ensemble's route, answered through its members' workers.

pub mod artifact;
pub mod combine;
pub mod fit;
pub mod local;
pub mod serve;
pub mod train;
