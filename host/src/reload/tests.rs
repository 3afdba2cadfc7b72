//! The reload plan: which entries keep their worker, start a new one, leave, or are
//! abandoned while still loading.

use super::plan::{plan, Plan};
use clarity_sdk::ModelSpec;
use serde_json::json;

fn spec(name: &str, batch: usize) -> ModelSpec {
    serde_json::from_value(json!({
        "name": name,
        "type": "classic",
        "serving_config": {"max_batch_size": batch},
    }))
    .expect("a valid entry")
}

fn names(specs: &[ModelSpec]) -> Vec<String> {
    specs.iter().map(|s| s.name.clone()).collect()
}

#[test]
fn equal_entries_keep_their_worker_and_the_rest_start_or_leave() {
    let served = [spec("same", 8), spec("changed", 8), spec("gone", 8)];
    let wanted = [spec("new", 8), spec("same", 8), spec("changed", 16)];
    let plan = plan(&served.iter().collect::<Vec<_>>(), &[], &wanted);
    assert_eq!(plan.unchanged, ["same"]);
    assert_eq!(names(&plan.start), ["new", "changed"], "file order");
    assert_eq!(
        plan.start[1].serving_config.max_batch_size, 16,
        "the new entry"
    );
    assert_eq!(plan.removed, ["gone"]);
    assert!(plan.still_pending.is_empty() && plan.abandoned.is_empty());
}

#[test]
fn pending_entries_are_kept_when_unchanged_and_abandoned_otherwise() {
    let served = [spec("a", 8)];
    let pending = [spec("a", 16), spec("training", 8), spec("dropped", 8)];
    // `a` went back to its served entry; `training` is as it was; `dropped` is gone.
    let wanted = [spec("a", 8), spec("training", 8)];
    let plan = plan(
        &served.iter().collect::<Vec<_>>(),
        &pending.iter().collect::<Vec<_>>(),
        &wanted,
    );
    assert_eq!(
        plan,
        Plan {
            unchanged: vec!["a".into()],
            still_pending: vec!["training".into()],
            start: vec![],
            removed: vec![],
            abandoned: vec!["a".into(), "dropped".into()],
        }
    );
}

#[test]
fn an_empty_file_removes_everything() {
    let served = [spec("a", 8), spec("b", 8)];
    let plan = plan(&served.iter().collect::<Vec<_>>(), &[], &[]);
    assert_eq!(plan.removed, ["a", "b"]);
    assert!(plan.start.is_empty() && plan.unchanged.is_empty());
}
