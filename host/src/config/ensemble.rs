//! Checks of `type: ensemble` entries: their members are other, non-ensemble entries of the
//! same file that predict the same labels, and given weights fit the members.

use super::locate::{key, Seg};
use super::quoted_list;
use super::validate::Issue;
use clarity_sdk::config::EnsembleWeights;
use clarity_sdk::ModelSpec;
use std::collections::BTreeSet;

/// The model type the host combines itself.
pub const ENSEMBLE_KIND: &str = "ensemble";

/// Fewest and most members: fitting weights searches a grid over the members' simplex,
/// which grows fast with their count.
pub const MEMBERS: std::ops::RangeInclusive<usize> = 2..=6;

/// Whether `spec` is an ensemble.
pub fn is_ensemble(spec: &ModelSpec) -> bool {
    spec.kind == ENSEMBLE_KIND
}

/// Every problem of the ensemble entries of `models` (and of `ensemble_config` where it does
/// not belong).
pub(super) fn check(models: &[ModelSpec], issues: &mut Vec<Issue>) {
    for (i, m) in models.iter().enumerate() {
        if !is_ensemble(m) {
            if m.ensemble_config.is_some() {
                issues.push(Issue::new(
                    i,
                    vec![key("ensemble_config")],
                    format!(
                        "ensemble_config is only read for `type: ensemble`, and this entry is \
                         `type: {}`; remove it, or set `type: ensemble`",
                        m.kind
                    ),
                ));
            }
            continue;
        }
        if m.plugin.is_some() {
            issues.push(Issue::new(
                i,
                vec![key("plugin")],
                "an ensemble has no plugin (the server combines its members' probabilities); \
                 remove `plugin:`",
            ));
        }
        let Some(e) = &m.ensemble_config else {
            issues.push(Issue::new(
                i,
                vec![key("type")],
                "`type: ensemble` needs `ensemble_config:` with its members, e.g. \
                 `ensemble_config: {members: [model-a, model-b]}`",
            ));
            continue;
        };
        let members_field = vec![key("ensemble_config"), key("members")];
        if !MEMBERS.contains(&e.members.len()) {
            issues.push(Issue::new(
                i,
                members_field.clone(),
                format!(
                    "an ensemble combines {} to {} members; this one lists {}",
                    MEMBERS.start(),
                    MEMBERS.end(),
                    e.members.len()
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        // The first member with configured labels, for the label check.
        let mut reference: Option<(&str, BTreeSet<&str>)> = own_labels(m).map(|l| ("", l));
        for (j, name) in e.members.iter().enumerate() {
            let field = || {
                let mut f = members_field.clone();
                f.push(Seg::Index(j));
                f
            };
            if !seen.insert(name.as_str()) {
                issues.push(Issue::new(
                    i,
                    field(),
                    format!("member \"{name}\" is listed twice"),
                ));
                continue;
            }
            if *name == m.name {
                issues.push(Issue::new(
                    i,
                    field(),
                    format!("an ensemble cannot be its own member (\"{name}\")"),
                ));
                continue;
            }
            let Some(member) = models.iter().find(|other| other.name == *name) else {
                let names: Vec<String> = models
                    .iter()
                    .filter(|o| !is_ensemble(o))
                    .map(|o| o.name.clone())
                    .collect();
                issues.push(Issue::new(
                    i,
                    field(),
                    format!(
                        "member \"{name}\" is not an entry of this file; members are the names \
                         of other entries ({})",
                        quoted_list(&names)
                    ),
                ));
                continue;
            };
            if is_ensemble(member) {
                issues.push(Issue::new(
                    i,
                    field(),
                    format!(
                        "member \"{name}\" is itself an ensemble; list its members here instead"
                    ),
                ));
                continue;
            }
            let Some(labels) = own_labels(member) else {
                continue; // derived from its data: checked when the ensemble is trained
            };
            match &reference {
                Some((other, expected)) if *expected != labels => {
                    let whose = if other.is_empty() {
                        "the ensemble's label_config.labels".to_string()
                    } else {
                        format!("member \"{other}\"")
                    };
                    issues.push(Issue::new(
                        i,
                        field(),
                        format!(
                            "member \"{name}\" predicts {} but {whose} lists {}; the members of \
                             an ensemble must predict the same labels (their order may differ)",
                            quoted_list(&member.label_config.labels),
                            quoted_list(
                                &expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                            )
                        ),
                    ));
                }
                Some(_) => {}
                None => reference = Some((name.as_str(), labels)),
            }
        }
        if let EnsembleWeights::Given(weights) = &e.weights {
            let field = vec![key("ensemble_config"), key("weights")];
            if weights.len() != e.members.len() {
                issues.push(Issue::new(
                    i,
                    field,
                    format!(
                        "weights lists {} numbers for {} members; give one per member, in the \
                         order of `members`, or write `weights: fit`",
                        weights.len(),
                        e.members.len()
                    ),
                ));
            } else if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
                || weights.iter().sum::<f64>() <= 0.0
            {
                issues.push(Issue::new(
                    i,
                    field,
                    "weights must be numbers of at least 0, not all 0",
                ));
            }
        }
    }
}

/// The labels an entry configures, as a set (`None` when they come from its data).
fn own_labels(spec: &ModelSpec) -> Option<BTreeSet<&str>> {
    let labels = &spec.label_config.labels;
    (!labels.is_empty()).then(|| labels.iter().map(String::as_str).collect())
}
