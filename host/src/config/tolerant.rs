//! `models.yaml` for `serve`: the good entries of a file where some are broken.
//!
//! Other commands need the whole file right. A server should not let one entry's typo stop
//! every other model: each entry with a problem (wrong type, unknown key, duplicate route,
//! bad value) is set aside with its messages, the rest are served, and `/ready` names the
//! ones set aside. A problem that belongs to no single entry (a YAML syntax error, an empty
//! file) still stops the load.
//!
//! Entries are set aside by blanking their lines, which keeps every later line where it was,
//! so the messages of later rounds point at the right lines of the real file.

use super::shape::Shape;
use super::{parse, ConfigError, Problem};
use std::path::Path;

/// An entry set aside because of its problems.
#[derive(Debug, Clone)]
pub struct BrokenEntry {
    /// Its position in the file's list of models.
    pub index: usize,
    /// Its `name`, when it has a readable one.
    pub name: Option<String>,
    /// Its `route`, when it has a readable one.
    pub route: Option<String>,
    /// `false` only when the entry says `enabled: false`.
    pub enabled: bool,
    /// What is wrong with it, with file, line and field.
    pub problems: Vec<Problem>,
}

/// Parse `text` keeping the good entries: the good specs, and the entries set aside.
pub fn parse_tolerant(
    file: &Path,
    text: &str,
) -> Result<(Vec<clarity_sdk::ModelSpec>, Vec<BrokenEntry>), ConfigError> {
    let first = match parse(file, text) {
        Ok(models) => return Ok((models, Vec::new())),
        Err(e) => e,
    };
    let Some(entries) = Entries::read(text) else {
        return Err(first);
    };
    let mut text = text.to_string();
    // Original index of each entry still in `text`, in order.
    let mut alive: Vec<usize> = (0..entries.count()).collect();
    let mut broken: Vec<BrokenEntry> = Vec::new();
    let mut error = first;
    // Each round sets aside at least one entry, so this ends.
    loop {
        let problems = match &error {
            ConfigError::Parse(p) => vec![p.clone()],
            ConfigError::Invalid(ps) => ps.clone(),
            _ => return Err(error),
        };
        let mut culprits = Vec::new();
        for mut problem in problems {
            let Some((now, original)) =
                entry_index(&problem.field).and_then(|i| Some((i, alive.get(i).copied()?)))
            else {
                return Err(error); // not one entry's fault
            };
            // Set-aside entries shift the later ones' indexes: name the file's own.
            problem.field = problem.field.replacen(
                &format!("models[{now}]"),
                &format!("models[{original}]"),
                1,
            );
            // Other entries a message points at (`also used by models[0]`) come before it.
            problem.message = renumber(&problem.message, &alive);
            match broken.iter_mut().find(|b| b.index == original) {
                Some(b) => b.problems.push(problem),
                None => {
                    broken.push(entries.describe(original, problem));
                    culprits.push(original);
                }
            }
        }
        if culprits.is_empty() || culprits.len() == alive.len() {
            return Err(all_problems(&broken));
        }
        for &i in &culprits {
            text = entries.blank(&text, i);
        }
        alive.retain(|i| !culprits.contains(i));
        match parse(file, &text) {
            Ok(models) => {
                broken.sort_by_key(|b| b.index);
                return Ok((models, broken));
            }
            Err(e) => error = e,
        }
    }
}

/// Every problem found, in file order, as one error.
fn all_problems(broken: &[BrokenEntry]) -> ConfigError {
    let mut problems: Vec<Problem> = broken.iter().flat_map(|b| b.problems.clone()).collect();
    problems.sort_by_key(|p| (p.line, p.column));
    ConfigError::Invalid(problems)
}

/// `message` with each `models[i]` it mentions numbered as in the file.
fn renumber(message: &str, alive: &[usize]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("models[") {
        let (before, from) = rest.split_at(at + "models[".len());
        out.push_str(before);
        let digits = from.find(']').map_or("", |end| &from[..end]);
        match digits.parse::<usize>().ok().and_then(|i| alive.get(i)) {
            Some(original) => {
                out.push_str(&original.to_string());
                rest = &from[digits.len()..];
            }
            None => rest = from,
        }
    }
    out.push_str(rest);
    out
}

/// `3` for a field `models[3]...`.
fn entry_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("models").unwrap_or(field);
    let rest = rest.strip_prefix('[')?;
    rest[..rest.find(']')?].parse().ok()
}

/// The file's entries: where each starts, and what can be read of it.
struct Entries {
    /// 0-based first line of each entry (its `- ` line).
    starts: Vec<usize>,
    /// Each entry as plain YAML, for its name and route.
    values: Vec<serde_yaml::Value>,
}

impl Entries {
    /// `None` when the entries cannot be told apart line by line (flow style, one line).
    fn read(text: &str) -> Option<Self> {
        let document: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
        let (shape, values) = match document {
            serde_yaml::Value::Sequence(items) => (Shape::List, items),
            serde_yaml::Value::Mapping(mut map) => match map.remove("models") {
                Some(serde_yaml::Value::Sequence(items)) => (Shape::Mapping, items),
                _ => return None,
            },
            _ => return None,
        };
        let locator = super::locate::Locator { text, shape };
        let lines: Vec<&str> = text.lines().collect();
        let mut starts = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            let (line, _) = locator.nearest(i, &[])?;
            // The entry's node starts at its first key; its `- ` may be on a line above.
            let mut start = line.checked_sub(1)?;
            while !lines.get(start)?.trim_start().starts_with('-') {
                start = start.checked_sub(1)?;
            }
            if starts.last().is_some_and(|&s| s >= start) {
                return None;
            }
            starts.push(start);
        }
        Some(Self { starts, values })
    }

    fn count(&self) -> usize {
        self.starts.len()
    }

    /// `text` with entry `index`'s lines emptied.
    fn blank(&self, text: &str, index: usize) -> String {
        let from = self.starts[index];
        let to = self.starts.get(index + 1).copied().unwrap_or(usize::MAX);
        let mut out: Vec<&str> = text.lines().collect();
        for line in out.iter_mut().take(to).skip(from) {
            *line = "";
        }
        let mut joined = out.join("\n");
        joined.push('\n');
        joined
    }

    fn describe(&self, index: usize, problem: Problem) -> BrokenEntry {
        let value = &self.values[index];
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
        BrokenEntry {
            index,
            name: text("name"),
            route: text("route"),
            enabled: value.get("enabled").and_then(|v| v.as_bool()) != Some(false),
            problems: vec![problem],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "- name: good\n  type: classic\n";

    fn tolerant(text: &str) -> Result<(Vec<String>, Vec<BrokenEntry>), ConfigError> {
        parse_tolerant(Path::new("models.yaml"), text)
            .map(|(models, broken)| (models.into_iter().map(|m| m.name).collect(), broken))
    }

    #[test]
    fn broken_entries_are_set_aside_with_their_lines() {
        let text = format!(
            "{GOOD}- name: typo\n  type: classic\n  trainng_config: {{batch_size: 8}}\n\
             - name: other\n  type: classic\n\
             - name: wrong-type\n  type: classic\n  training_config:\n    batch_size: eight\n\
             - name: twin\n  type: classic\n  route: /classify/good\n"
        );
        let (good, broken) = tolerant(&text).expect("the good entries load");
        assert_eq!(good, ["good", "other"]);
        let names: Vec<_> = broken
            .iter()
            .map(|b| b.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["typo", "wrong-type", "twin"]);
        let lines: Vec<_> = broken.iter().map(|b| b.problems[0].line).collect();
        assert_eq!(lines, [Some(5), Some(11), Some(14)], "{broken:?}");
        // Fields and messages number entries as the file does, whatever was set aside.
        let fields: Vec<_> = broken
            .iter()
            .map(|b| b.problems[0].field.as_str())
            .collect();
        assert_eq!(
            fields,
            [
                "models[1]",
                "models[3].training_config.batch_size",
                "models[4].route"
            ]
        );
        assert!(broken[0].problems[0].message.contains("unknown field"));
        assert!(broken[2].problems[0].message.contains("also used by"));
        assert_eq!(broken[2].route.as_deref(), Some("/classify/good"));
    }

    #[test]
    fn file_level_problems_and_all_broken_files_still_fail() {
        let syntax = format!("{GOOD}- name: bad\n  type: classic\n   plugin: x\n");
        assert!(matches!(tolerant(&syntax), Err(ConfigError::Parse(_))));
        let all_bad = "- name: a\n  trainng_config: {}\n- name: b\n  serving_config: 3\n";
        match tolerant(all_bad) {
            Err(ConfigError::Invalid(problems)) => assert_eq!(problems.len(), 2, "{problems:?}"),
            other => panic!("expected every problem, got {other:?}"),
        }
        let flow = "[{name: a, type: classic}, {name: b, typo: 1}]";
        assert!(tolerant(flow).is_err(), "one-line files cannot be split");
    }

    #[test]
    fn the_mapping_layout_works_too() {
        let text = "models:\n  - name: good\n  - name: bad\n    enabled: false\n    typo: 1\n";
        let (good, broken) = tolerant(text).expect("loads");
        assert_eq!(good, ["good"]);
        assert!(!broken[0].enabled);
        assert_eq!(broken[0].problems[0].line, Some(5), "{broken:?}");
    }
}
