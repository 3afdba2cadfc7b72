//! Which keys each model entry of `models.yaml` actually writes.
//!
//! The typed schema fills every absent key with a default, so after parsing "absent" and
//! "written with the default value" look alike. Per-type defaults and "both spellings set"
//! checks need the difference; this reads it from the text once.

use super::shape::Shape;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Keys written per model: `""` holds the entry's own keys, `"training_config"` etc. the
/// keys of that section.
#[derive(Debug, Default)]
pub(super) struct Presence {
    models: Vec<BTreeMap<String, BTreeSet<String>>>,
}

impl Presence {
    /// Read the keys of every model entry of `text` (already known to parse).
    pub(super) fn read(text: &str, shape: Shape) -> Self {
        let Ok(doc) = serde_yaml::from_str::<Value>(text) else {
            return Self::default();
        };
        let list = match shape {
            Shape::List => doc.as_sequence().cloned(),
            Shape::Mapping => doc.get("models").and_then(Value::as_sequence).cloned(),
        };
        let models = list
            .unwrap_or_default()
            .iter()
            .map(|entry| {
                let mut sections = BTreeMap::new();
                let Some(map) = entry.as_mapping() else {
                    return sections;
                };
                let own: BTreeSet<String> = map.keys().filter_map(key_name).collect();
                for (k, v) in map {
                    let (Some(name), Some(inner)) = (key_name(k), v.as_mapping()) else {
                        continue;
                    };
                    sections.insert(name, inner.keys().filter_map(key_name).collect());
                }
                sections.insert(String::new(), own);
                sections
            })
            .collect();
        Self { models }
    }

    /// Whether model `model` writes `key` in `section` (`""`: the entry itself).
    pub(super) fn has(&self, model: usize, section: &str, key: &str) -> bool {
        self.models
            .get(model)
            .and_then(|m| m.get(section))
            .is_some_and(|keys| keys.contains(key))
    }
}

fn key_name(k: &Value) -> Option<String> {
    k.as_str().map(str::to_string)
}
