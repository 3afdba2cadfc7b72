//! The recorded runs of one model: every folder under `<logdir>/<model>/` holding a
//! `report.json` (a sweep's trials one level further down), oldest first.

use crate::training::report::REPORT_FILE;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One run folder and its report.
#[derive(Debug, Clone)]
pub struct RecordedRun {
    /// The folder relative to `<logdir>/<model>/`: `20261207-042744`,
    /// `sweep-20261207-035151/01-c=1`.
    pub name: String,
    pub dir: PathBuf,
    /// `report.json`, or why it could not be read.
    pub report: Result<Value, String>,
}

impl RecordedRun {
    /// A number at `pointer` in the report (`/valid/macro_f1`).
    pub fn number(&self, pointer: &str) -> Option<f64> {
        self.report.as_ref().ok()?.pointer(pointer)?.as_f64()
    }

    /// The models.yaml entry the run trained, flattened to `section.key` -> value (absent in
    /// reports written before the entry was recorded).
    pub fn settings(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Some(entry) = self.report.as_ref().ok().and_then(|r| r.get("entry")) {
            flatten("", entry, &mut out);
        }
        out
    }

    /// `(step, value)` pairs of `history.<list>[].<field>`.
    pub fn series(&self, list: &str, field: &str) -> Vec<(f64, f64)> {
        let Some(items) = self
            .report
            .as_ref()
            .ok()
            .and_then(|r| r.pointer(&format!("/history/{list}")))
            .and_then(Value::as_array)
        else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|i| Some((i.get("step")?.as_f64()?, i.get(field)?.as_f64()?)))
            .filter(|(_, v)| v.is_finite())
            .collect()
    }
}

/// Keys that name where a run read or wrote, not how it trained.
const NOT_SETTINGS: &[&str] = &["name", "output_dir", "enabled", "route", "plugin"];

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if prefix.is_empty() && NOT_SETTINGS.contains(&k.as_str()) {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The runs of `model` under `logdir`, oldest first (folder names start with the time).
pub fn collect(logdir: &Path, model: &str) -> std::io::Result<Vec<RecordedRun>> {
    let root = logdir.join(model);
    let mut runs = Vec::new();
    for dir in sorted_dirs(&root)? {
        if dir.join(REPORT_FILE).is_file() {
            runs.push(read(&root, &dir));
        } else {
            // A sweep: its trials are one level down.
            for trial in sorted_dirs(&dir).unwrap_or_default() {
                if trial.join(REPORT_FILE).is_file() {
                    runs.push(read(&root, &trial));
                }
            }
        }
    }
    Ok(runs)
}

fn read(root: &Path, dir: &Path) -> RecordedRun {
    let path = dir.join(REPORT_FILE);
    let report = std::fs::read_to_string(&path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str::<Value>(&text).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", path.display()));
    RecordedRun {
        name: dir
            .strip_prefix(root)
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned(),
        dir: dir.to_path_buf(),
        report,
    }
}

fn sorted_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The settings whose values are not the same in every run that recorded its entry (a
/// setting absent from one of them counts as different), in key order. Runs without an
/// entry (older reports, unreadable ones) are left out of the comparison.
pub fn differing_settings(runs: &[RecordedRun]) -> Vec<String> {
    let all: Vec<BTreeMap<String, Value>> = runs
        .iter()
        .map(RecordedRun::settings)
        .filter(|s| !s.is_empty())
        .collect();
    let mut keys: Vec<&String> = all.iter().flat_map(|s| s.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let first = all.first().and_then(|s| s.get(*k));
            all.iter().any(|s| s.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// A setting's value as a short text.
pub fn show(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The runs as JSON: name, folder, the main figures and every differing setting.
pub fn as_json(runs: &[RecordedRun]) -> Value {
    let differing = differing_settings(runs);
    let rows: Vec<Value> = runs
        .iter()
        .map(|run| {
            let settings = run.settings();
            let mut row = Map::new();
            row.insert("run".into(), run.name.clone().into());
            row.insert("dir".into(), run.dir.display().to_string().into());
            for (key, pointer) in FIGURES {
                row.insert(
                    (*key).into(),
                    run.number(pointer).map_or(Value::Null, Value::from),
                );
            }
            let differs: Map<String, Value> = differing
                .iter()
                .map(|k| (k.clone(), settings.get(k).cloned().unwrap_or(Value::Null)))
                .collect();
            row.insert("settings".into(), Value::Object(differs));
            if let Err(e) = &run.report {
                row.insert("error".into(), e.clone().into());
            }
            Value::Object(row)
        })
        .collect();
    Value::Array(rows)
}

/// The figures every run shows: name and where in `report.json`.
pub const FIGURES: &[(&str, &str)] = &[
    ("macro_f1", "/valid/macro_f1"),
    ("accuracy", "/valid/accuracy"),
    ("seconds", "/seconds"),
    ("steps", "/report/steps"),
    ("best_epoch", "/best_epoch"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(dir: &Path, report: Value) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(REPORT_FILE), report.to_string()).expect("write");
    }

    #[test]
    fn runs_and_sweep_trials_are_found_oldest_first_and_differences_named() {
        let logdir = tempfile::tempdir().expect("tempdir");
        let root = logdir.path().join("m");
        let entry = |c: f64| {
            json!({"name": "m", "output_dir": null, "training_config": {"seed": 1},
                                    "model_config": {"options": {"c": c}}})
        };
        write(
            &root.join("20260101-000000"),
            json!({"entry": entry(10.0), "valid": {"macro_f1": 0.5}}),
        );
        write(
            &root.join("sweep-20260102-000000/01-c=1"),
            json!({"entry": entry(1.0), "valid": {"macro_f1": 0.4}}),
        );
        std::fs::create_dir_all(root.join("20260103-000000")).expect("a run that never finished");
        std::fs::create_dir_all(root.join("20260104-000000")).expect("dir");
        std::fs::write(root.join("20260104-000000").join(REPORT_FILE), "{not json").expect("w");

        let runs = collect(logdir.path(), "m").expect("collect");
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "20260101-000000",
                "20260104-000000",
                "sweep-20260102-000000/01-c=1"
            ]
        );
        assert_eq!(runs[0].number("/valid/macro_f1"), Some(0.5));
        assert!(runs[1].report.is_err());
        // The broken report has no entry: it is left out, and only `c` differs.
        assert_eq!(differing_settings(&runs), ["model_config.options.c"]);
        assert_eq!(
            show(runs[2].settings().get("model_config.options.c")),
            "1.0"
        );
        assert!(!runs[0].settings().contains_key("name"));
    }
}
