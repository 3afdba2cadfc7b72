//! Fine-to-coarse labels (`label_config.groups` with `data_config.fine_label_field`): a model
//! trains on the fine labels and answers with the coarse ones, each coarse probability the sum
//! of its fine labels' probabilities.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `label_config.groups` resolved: the fine labels a model trains on and the coarse label
/// each one counts toward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelGroups {
    /// Coarse labels, in answer order.
    pub coarse: Vec<String>,
    /// Fine labels, in the model's output order: each group's in turn, in coarse order.
    pub fine: Vec<String>,
    /// For each fine label, the index of its coarse label.
    pub coarse_of: Vec<usize>,
}

impl LabelGroups {
    /// Resolve `groups` (coarse -> fine labels). `order` is `label_config.labels` when given
    /// (it must name exactly the groups); otherwise the coarse labels are sorted.
    pub fn resolve(
        groups: &BTreeMap<String, Vec<String>>,
        order: &[String],
    ) -> Result<Self, String> {
        if groups.len() < 2 {
            return Err("name at least two coarse labels, each with its fine labels".into());
        }
        let coarse: Vec<String> = if order.is_empty() {
            groups.keys().cloned().collect()
        } else {
            let mut sorted = order.to_vec();
            sorted.sort();
            if sorted.iter().ne(groups.keys()) {
                return Err(format!(
                    "label_config.labels {order:?} must list exactly the groups' coarse labels {:?}",
                    groups.keys().collect::<Vec<_>>()
                ));
            }
            order.to_vec()
        };
        let mut fine = Vec::new();
        let mut coarse_of = Vec::new();
        for (c, name) in coarse.iter().enumerate() {
            let members = &groups[name];
            if members.is_empty() {
                return Err(format!("group {name:?} has no fine labels"));
            }
            for label in members {
                if let Some(other) = fine.iter().position(|f| f == label) {
                    return Err(format!(
                        "fine label {label:?} is in both {:?} and {name:?}",
                        coarse[coarse_of[other]]
                    ));
                }
                fine.push(label.clone());
                coarse_of.push(c);
            }
        }
        Ok(Self {
            coarse,
            fine,
            coarse_of,
        })
    }

    /// The coarse probabilities of one row of fine probabilities.
    pub fn coarse_scores(&self, fine: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; self.coarse.len()];
        for (p, &c) in fine.iter().zip(&self.coarse_of) {
            out[c] += p;
        }
        out
    }

    /// The coarse label index of fine label index `fine`.
    pub fn coarse_index(&self, fine: usize) -> Option<usize> {
        self.coarse_of.get(fine).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([
            ("yes".to_string(), vec!["explicit".to_string()]),
            (
                "partly".to_string(),
                vec!["dodging".to_string(), "general".to_string()],
            ),
            ("no".to_string(), vec!["declining".to_string()]),
        ])
    }

    #[test]
    fn fine_labels_follow_the_coarse_order() {
        let order = ["yes", "no", "partly"].map(String::from);
        let g = LabelGroups::resolve(&groups(), &order).unwrap();
        assert_eq!(g.coarse, order);
        assert_eq!(g.fine, ["explicit", "declining", "dodging", "general"]);
        assert_eq!(g.coarse_of, [0, 1, 2, 2]);
        let sorted = LabelGroups::resolve(&groups(), &[]).unwrap();
        assert_eq!(sorted.coarse, ["no", "partly", "yes"]);
    }

    #[test]
    fn coarse_scores_sum_their_fine_scores() {
        let g =
            LabelGroups::resolve(&groups(), &["yes", "no", "partly"].map(String::from)).unwrap();
        let coarse = g.coarse_scores(&[0.1, 0.2, 0.3, 0.4]);
        assert_eq!(coarse.len(), 3);
        for (got, want) in coarse.iter().zip([0.1, 0.2, 0.7]) {
            assert!((got - want).abs() < 1e-6, "{coarse:?}");
        }
        assert_eq!(g.coarse_index(3), Some(2));
        assert_eq!(g.coarse_index(4), None);
    }

    #[test]
    fn bad_groups_are_explained() {
        let mut twice = groups();
        twice.get_mut("no").unwrap().push("dodging".into());
        let err = LabelGroups::resolve(&twice, &[]).unwrap_err();
        assert!(err.contains("\"dodging\" is in both"), "{err}");
        let err = LabelGroups::resolve(&groups(), &["yes".to_string()]).unwrap_err();
        assert!(err.contains("exactly the groups"), "{err}");
        let mut empty = groups();
        empty.insert("maybe".into(), vec![]);
        assert!(LabelGroups::resolve(&empty, &[])
            .unwrap_err()
            .contains("no fine labels"));
    }
}
