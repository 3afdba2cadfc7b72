//! What a reload changes: the served entries compared with the re-read `models.yaml`.
//!
//! An entry equal to the served one keeps its worker; a new or changed one gets a new worker
//! (which replaces the old one only once it is ready); a served entry the file no longer has
//! leaves the table. Entries still loading from an earlier reload (pending) are kept when the
//! file still says the same, and abandoned otherwise.

use clarity_sdk::ModelSpec;

/// The outcome of comparing the served and pending entries with the wanted ones.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Served as they are.
    pub unchanged: Vec<String>,
    /// Still loading from an earlier reload, with the same entry: left to finish.
    pub still_pending: Vec<String>,
    /// New or changed: start a worker for each.
    pub start: Vec<ModelSpec>,
    /// Served, but no longer in the file: they leave the table.
    pub removed: Vec<String>,
    /// Pending from an earlier reload, but the file changed or dropped them: abandoned.
    pub abandoned: Vec<String>,
}

/// Compare `served` and `pending` entries with `wanted` (in file order).
pub fn plan(served: &[&ModelSpec], pending: &[&ModelSpec], wanted: &[ModelSpec]) -> Plan {
    let mut plan = Plan::default();
    for spec in wanted {
        if pending.contains(&spec) {
            plan.still_pending.push(spec.name.clone());
        } else if served.contains(&spec) {
            plan.unchanged.push(spec.name.clone());
        } else {
            plan.start.push(spec.clone());
        }
    }
    let wanted_named = |name: &str| wanted.iter().any(|w| w.name == name);
    plan.removed = served
        .iter()
        .filter(|s| !wanted_named(&s.name))
        .map(|s| s.name.clone())
        .collect();
    plan.abandoned = pending
        .iter()
        .filter(|p| !plan.still_pending.contains(&p.name))
        .map(|p| p.name.clone())
        .collect();
    plan
}
