//! The served models: an immutable table, swapped as a whole on reload.
//!
//! Requests look a model up in the current table and keep their own `Arc<ModelWorker>`, so
//! a request that started on a model finishes on it even after a reload replaced it; the old
//! worker's thread ends when its last handle is dropped.

use crate::worker::ModelWorker;
use arc_swap::ArcSwap;
use clarity_sdk::ModelSpec;
use std::sync::Arc;

/// The served models, in `models.yaml` order.
#[derive(Default)]
pub struct ModelTable {
    models: Vec<Arc<ModelWorker>>,
}

/// The table every handler reads and a reload swaps.
pub type SharedTable = Arc<ArcSwap<ModelTable>>;

impl ModelTable {
    /// A table of `models`.
    pub fn new(models: Vec<Arc<ModelWorker>>) -> Self {
        Self { models }
    }

    /// A shared, swappable table of `models`.
    pub fn shared(models: Vec<Arc<ModelWorker>>) -> SharedTable {
        Arc::new(ArcSwap::from_pointee(Self::new(models)))
    }

    /// The models, in order.
    pub fn workers(&self) -> &[Arc<ModelWorker>] {
        &self.models
    }

    /// The models, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Arc<ModelWorker>> {
        self.models.iter()
    }

    /// The model called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<ModelWorker>> {
        self.models.iter().find(|w| w.spec().name == name)
    }

    /// The model served at `route`.
    pub fn by_route(&self, route: &str) -> Option<&Arc<ModelWorker>> {
        self.models.iter().find(|w| w.spec().route() == route)
    }

    /// Every model's entry.
    pub fn specs(&self) -> Vec<&ModelSpec> {
        self.models.iter().map(|w| w.spec()).collect()
    }
}
