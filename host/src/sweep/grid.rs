//! `--sweep KEY=V1,V2,...`: the axes of a grid, resolved against one models.yaml entry, and
//! the entries its trials train.
//!
//! A key is a dotted path from the entry (`training_config.learning_rate`,
//! `model_config.options.c`) or a bare name looked up in the entry's sections
//! (`learning_rate`), which must then name exactly one key. Values are YAML scalars or
//! flow collections (`[1, 2]`), separated by commas outside brackets.

use clarity_sdk::ModelSpec;
use serde_json::{Map, Value};

/// Sections a bare key is looked up in.
const SECTIONS: &[&str] = &[
    "training_config",
    "model_config",
    "lora_config",
    "data_config",
    "label_config",
    "serving_config",
    "tensorboard_config",
];

/// Free-form maps: any key may be set in them (the plugin checks it).
const FREE_MAPS: &[&str] = &["model_config.options"];

/// A bad `--sweep` argument or a trial entry that does not hold.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("--sweep {arg}: {message}")]
    Axis { arg: String, message: String },
    #[error("--sweep: the trial {trial} is not a valid entry: {message}")]
    Trial { trial: String, message: String },
    #[error(
        "--sweep: the grid has {trials} trials, more than --max-trials {max}; narrow the grid or raise --max-trials"
    )]
    TooBig { trials: usize, max: usize },
}

/// One swept key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The key as written (`learning_rate`): the column and hyperparameter name.
    pub name: String,
    /// Its full path in the entry (`training_config.learning_rate`).
    pub path: String,
    /// The values in the order given, with the text each was written as.
    pub values: Vec<(String, Value)>,
}

impl Axis {
    /// Parse `KEY=V1,V2,...` against `entry` (the entry as JSON, every key present).
    pub fn parse(arg: &str, entry: &Value) -> Result<Self, SweepError> {
        let fail = |message: String| SweepError::Axis {
            arg: arg.to_string(),
            message,
        };
        let (key, list) = arg
            .split_once('=')
            .ok_or_else(|| fail("expected KEY=V1,V2,... (e.g. learning_rate=2e-5,5e-5)".into()))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(fail("the key is empty".into()));
        }
        let path = resolve(key, entry).map_err(fail)?;
        let mut values = Vec::new();
        for text in split_values(list) {
            let text = text.trim();
            if text.is_empty() {
                return Err(fail("a value is empty".into()));
            }
            let value: Value = serde_yaml::from_str(text)
                .map_err(|e| fail(format!("value `{text}` is not YAML: {e}")))?;
            if values.iter().any(|(_, v)| *v == value) {
                return Err(fail(format!("value `{text}` is listed twice")));
            }
            values.push((text.to_string(), value));
        }
        Ok(Self {
            name: key.to_string(),
            path,
            values,
        })
    }
}

/// One trial: a value for every axis, in axis order.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// `(axis name, value as written, value)`.
    pub settings: Vec<(String, String, Value)>,
    paths: Vec<String>,
}

impl Trial {
    /// `learning_rate=2e-5 max_length=128`.
    pub fn describe(&self) -> String {
        self.settings
            .iter()
            .map(|(name, text, _)| format!("{name}={text}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The swept keys and values, for the HParams session.
    pub fn hparams(&self) -> Vec<(String, Value)> {
        self.settings
            .iter()
            .map(|(name, _, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// `path: value` lines, for models.yaml.
    pub fn as_yaml_keys(&self) -> Vec<String> {
        self.paths
            .iter()
            .zip(&self.settings)
            .map(|(path, (_, text, _))| format!("{path}: {text}"))
            .collect()
    }

    /// A folder name: `03-learning_rate=2e-5,max_length=128`, file-name safe.
    pub fn folder_name(&self, index: usize) -> String {
        let settings: String = self
            .settings
            .iter()
            .map(|(name, text, _)| {
                // The last key is enough to tell the trials apart (the index keeps names unique).
                let short = name.rsplit('.').next().unwrap_or(name);
                format!("{short}={text}")
            })
            .collect::<Vec<_>>()
            .join(",")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '=' | ',' | '+') {
                    c
                } else {
                    '_'
                }
            })
            .take(100)
            .collect();
        format!("{:02}-{settings}", index + 1)
    }

    /// The entry this trial trains: `spec` with the trial's values, checked as models.yaml
    /// entries are.
    pub fn apply(&self, spec: &ModelSpec) -> Result<ModelSpec, SweepError> {
        let fail = |message: String| SweepError::Trial {
            trial: self.describe(),
            message,
        };
        let mut entry = serde_json::to_value(spec).map_err(|e| fail(e.to_string()))?;
        for (path, (_, _, value)) in self.paths.iter().zip(&self.settings) {
            set(&mut entry, path, value.clone());
        }
        let trial: ModelSpec = serde_path_to_error::deserialize(entry)
            .map_err(|e| fail(format!("{}: {}", e.path(), e.inner())))?;
        let problems = crate::config::entry_problems(&trial);
        if !problems.is_empty() {
            return Err(fail(problems.join("; ")));
        }
        Ok(trial)
    }
}

/// Every combination of the axes' values, the first axis varying slowest.
pub fn trials(axes: &[Axis], max: usize) -> Result<Vec<Trial>, SweepError> {
    let count = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .unwrap_or(usize::MAX);
    if count > max {
        return Err(SweepError::TooBig { trials: count, max });
    }
    let mut out = vec![Trial {
        settings: Vec::new(),
        paths: Vec::new(),
    }];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|trial| {
                axis.values.iter().map(move |(text, value)| {
                    let mut next = trial.clone();
                    next.settings
                        .push((axis.name.clone(), text.clone(), value.clone()));
                    next.paths.push(axis.path.clone());
                    next
                })
            })
            .collect();
    }
    Ok(out)
}

/// The full path of `key` in `entry`, or why there is none.
fn resolve(key: &str, entry: &Value) -> Result<String, String> {
    if key.contains('.') {
        return check_path(key, entry).map(|()| key.to_string());
    }
    let found: Vec<String> = SECTIONS
        .iter()
        .chain(FREE_MAPS)
        .filter(|section| {
            lookup(entry, section)
                .and_then(Value::as_object)
                .is_some_and(|map| map.contains_key(key))
        })
        .map(|section| format!("{section}.{key}"))
        .collect();
    // A key in several sections (`max_length` in model_config and training_config) is
    // the one set; set in none, any of them takes effect, so the first is taken.
    let set: Vec<&String> = found
        .iter()
        .filter(|path| lookup(entry, path).is_some_and(|v| !v.is_null()))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [first, ..] if set.is_empty() => Ok(first.clone()),
        [_, _, ..] if set.len() == 1 => Ok(set[0].clone()),
        [] if entry.get(key).is_some() => Ok(key.to_string()),
        [] => {
            let known = SECTIONS
                .iter()
                .filter_map(|s| lookup(entry, s).and_then(Value::as_object))
                .flat_map(|m| m.keys().cloned());
            Err(format!(
                "no key `{key}` in {}{}; give its full path (e.g. model_config.options.{key}) if it is a plugin option",
                SECTIONS.join(", "),
                did_you_mean(key, known)
            ))
        }
        _ => Err(format!(
            "`{key}` is set in more than one section; write one of {}",
            set.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A dotted path must exist, except its last key inside a free-form map.
fn check_path(path: &str, entry: &Value) -> Result<(), String> {
    let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
    let parent_value = if parent.is_empty() {
        Some(entry)
    } else {
        lookup(entry, parent)
    };
    let Some(map) = parent_value.and_then(Value::as_object) else {
        return Err(format!("the entry has no section `{parent}`"));
    };
    if map.contains_key(last) || FREE_MAPS.contains(&parent) {
        Ok(())
    } else {
        Err(format!(
            "`{parent}` has no key `{last}`{}",
            did_you_mean(last, map.keys().cloned())
        ))
    }
}

fn did_you_mean(key: &str, known: impl Iterator<Item = String>) -> String {
    known
        .map(|k| (strsim::jaro_winkler(key, &k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn lookup<'a>(entry: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(entry, |node, key| node.get(key))
}

/// Set `path` in `entry`, making missing (or null) sections maps.
fn set(entry: &mut Value, path: &str, value: Value) {
    let mut node = entry;
    let keys: Vec<&str> = path.split('.').collect();
    let (last, parents) = match keys.split_last() {
        Some(split) => split,
        None => return,
    };
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if node.is_null() {
            *node = Value::Object(Map::new());
        }
    }
    if let Value::Object(map) = node {
        map.insert((*last).to_string(), value);
    }
}

/// `a,b,[1, 2],{x: 1}` split at the commas outside brackets and braces.
fn split_values(list: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&list[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        serde_json::from_value(serde_json::json!({
            "name": "m",
            "type": "classic",
            "label_config": {"labels": ["a", "b"]},
        }))
        .expect("spec")
    }

    fn entry() -> Value {
        serde_json::to_value(spec()).expect("json")
    }

    #[test]
    fn bare_keys_resolve_to_their_section_and_values_parse_as_yaml() {
        let axis = Axis::parse("learning_rate=2e-5,1e-4", &entry()).expect("axis");
        assert_eq!(axis.path, "training_config.learning_rate");
        assert_eq!(axis.values[0].0, "2e-5");
        assert_eq!(axis.values[0].1.as_f64(), Some(2e-5));
        // In model_config and training_config: the one set, else the first.
        let axis = Axis::parse("max_length=128,256", &entry()).expect("axis");
        assert_eq!(axis.path, "training_config.max_length");
        let mut set = entry();
        set["model_config"]["max_length"] = serde_json::json!(64);
        let axis = Axis::parse("max_length=128,256", &set).expect("axis");
        assert_eq!(axis.path, "model_config.max_length");
        let axis = Axis::parse("model_config.options.word_ngrams=[1, 2],[1, 3]", &entry())
            .expect("free map");
        assert_eq!(axis.values.len(), 2);
        assert_eq!(axis.values[1].1, serde_json::json!([1, 3]));
    }

    #[test]
    fn unknown_keys_and_bad_arguments_say_what_is_wrong() {
        let err = Axis::parse("learning_rat=1", &entry()).expect_err("typo");
        assert!(
            err.to_string().contains("did you mean `learning_rate`"),
            "{err}"
        );
        let err = Axis::parse("training_config.lr=1", &entry()).expect_err("path");
        assert!(err.to_string().contains("has no key `lr`"), "{err}");
        let err = Axis::parse("learning_rate", &entry()).expect_err("no =");
        assert!(err.to_string().contains("KEY=V1,V2"), "{err}");
        let err = Axis::parse("seed=1,1", &entry()).expect_err("twice");
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn the_grid_is_every_combination_and_trials_are_checked_entries() {
        let axes = [
            Axis::parse("learning_rate=1e-5,2e-5", &entry()).expect("lr"),
            Axis::parse("num_epochs=1,2,3", &entry()).expect("epochs"),
        ];
        let grid = trials(&axes, 6).expect("grid");
        assert_eq!(grid.len(), 6);
        assert_eq!(grid[0].describe(), "learning_rate=1e-5 num_epochs=1");
        assert_eq!(grid[5].describe(), "learning_rate=2e-5 num_epochs=3");
        assert_eq!(grid[5].folder_name(5), "06-learning_rate=2e-5,num_epochs=3");
        let trial = grid[4].apply(&spec()).expect("applies");
        assert_eq!(trial.training_config.learning_rate, 2e-5);
        assert_eq!(trial.training_config.num_epochs, 2);
        assert!(matches!(
            trials(&axes, 5),
            Err(SweepError::TooBig { trials: 6, max: 5 })
        ));

        let wrong_type = Axis::parse("num_epochs=two", &entry()).expect("parses");
        let err = trials(&[wrong_type], 4).expect("grid")[0]
            .apply(&spec())
            .expect_err("a string is not a count");
        assert!(
            err.to_string().contains("training_config.num_epochs"),
            "{err}"
        );
    }
}
