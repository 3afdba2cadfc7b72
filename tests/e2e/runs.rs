//! `clarity-host runs`: three recorded runs of the classic example (one `train`, then a
//! two-trial sweep) compared as a table, as JSON and as an HTML page.

use clarity_tests::Project;
use serde_json::Value;

#[test]
fn runs_compares_a_training_and_a_sweeps_trials() {
    let project = Project::classic("");
    project.host_ok(&["train", "--model", "classic", "--no-tensorboard"]);
    project.host_ok(&[
        "train",
        "--model",
        "classic",
        "--no-tensorboard",
        "--sweep",
        "model_config.options.c=0.01,100",
    ]);

    let json = project.host_ok(&["runs", "--model", "classic", "--json"]);
    let rows: Value = serde_json::from_str(&json).expect("runs --json");
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 3, "{json}");
    for row in rows {
        let dir = std::path::Path::new(row["dir"].as_str().expect("dir"));
        let report: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("report.json")).expect("report"),
        )
        .expect("json");
        assert_eq!(row["macro_f1"], report["valid"]["macro_f1"], "{row}");
        assert!(row["settings"]
            .as_object()
            .is_some_and(|s| s.contains_key("model_config.options.c")));
    }
    // The plain run has no `c` (the plugin's default applies); the trials have theirs.
    let c: Vec<String> = rows
        .iter()
        .map(|r| r["settings"]["model_config.options.c"].to_string())
        .collect();
    assert_eq!(c, ["null", "0.01", "100"], "{json}");

    let table = project.host_ok(&["runs", "--model", "classic"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("run") && lines[0].contains("macro_f1"),
        "{table}"
    );
    assert!(lines[0].contains("model_config.options.c"), "{table}");
    assert!(
        lines[3].contains("sweep-") && lines[3].contains("100"),
        "{table}"
    );

    let page =
        std::fs::read_to_string(project.path().join("runs/classic/runs.html")).expect("runs.html");
    assert_eq!(page.matches("<svg").count(), 2, "two charts");
    assert_eq!(
        page.matches("class=\"confusion\"").count(),
        3,
        "a matrix per run"
    );
    assert!(!page.contains("<script"), "no script");
    for row in rows {
        let name = row["run"].as_str().expect("run");
        assert!(page.contains(name), "{name} missing from the page");
    }

    let other = project.host(&["runs", "--model", "classic", "--html", "/proc/nope/x.html"]);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("cannot write /proc/nope/x.html"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}

#[test]
fn a_model_never_trained_has_no_runs_and_says_how_to_record_one() {
    let project = Project::classic("");
    let out = project.host(&["runs", "--model", "classic"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no recorded runs of `classic`")
            && stderr.contains("clarity-host train --model classic"),
        "{stderr}"
    );
}
