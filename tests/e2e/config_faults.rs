//! Every kind of broken `models.yaml` gives one clear message naming the file, the line and
//! the field (or the path and the fix); `serve` sets broken entries aside, serves the good
//! ones, names the others in `/ready`, and takes them back once the file is fixed.

use clarity_tests::{build_mismatched_plugin, plugin_lib, sample_data, Project};
use serde_json::{json, Value};
use std::time::Duration;

/// A good classic entry (lines 1-6 of every file below), trained on the sample data.
fn good() -> String {
    format!(
        "- name: good\n  type: classic\n  plugin: {}\n  label_config: {{labels: [Clear Reply, Clear Non-Reply, Ambivalent]}}\n  data_config:\n    train_file: {}\n",
        plugin_lib("clarity-classic-example").display(),
        sample_data().join("train.json").display()
    )
}

/// `good` plus a second entry named `bad` made of `lines`.
fn with_bad(lines: &str) -> String {
    format!("{}- name: bad\n  type: classic\n{lines}", good())
}

struct Case {
    kind: &'static str,
    yaml: String,
    args: Vec<&'static str>,
    /// What the one error line must say.
    says: Vec<String>,
}

fn cases(project: &Project) -> Vec<Case> {
    let dir = project.path();
    std::fs::write(
        dir.join("malformed.json"),
        "[{\"question\": \"q\",\n oops}]",
    )
    .expect("write");
    std::fs::create_dir_all(dir.join("a-folder.json")).expect("mkdir");
    let missing_plugin = dir.join("plugins/libnowhere.so");
    let test_bad = vec![
        "test",
        "--model",
        "bad",
        "--question",
        "q",
        "--context",
        "c",
    ];
    let train_bad = vec!["train", "--model", "bad"];
    let data = |file: &str| {
        format!("  plugin: {}\n  label_config: {{labels: [a, b]}}\n  data_config: {{train_file: {file}}}\n",
            plugin_lib("clarity-classic-example").display())
    };
    vec![
        Case {
            kind: "YAML syntax error",
            yaml: with_bad("   plugin: x\n"),
            args: vec!["list"],
            says: vec![
                "models.yaml:9:".into(),
                "mapping values are not allowed".into(),
            ],
        },
        Case {
            kind: "wrong type",
            yaml: with_bad("  training_config: {batch_size: eight}\n"),
            args: vec!["list"],
            says: vec![
                "models.yaml:9:".into(),
                "models[1].training_config.batch_size".into(),
                "expected usize".into(),
            ],
        },
        Case {
            kind: "unknown key",
            yaml: with_bad("  trainng_config: {batch_size: 8}\n"),
            args: vec!["list"],
            says: vec![
                "models.yaml:9:".into(),
                "did you mean `training_config`".into(),
            ],
        },
        Case {
            kind: "duplicate route",
            yaml: with_bad("  route: /classify/good\n"),
            args: vec!["list"],
            says: vec![
                "models.yaml:9:".into(),
                "models[1].route".into(),
                "also used by models[0]".into(),
            ],
        },
        Case {
            kind: "missing plugin",
            yaml: with_bad(&format!(
                "  plugin: {}\n  label_config: {{labels: [a, b]}}\n",
                missing_plugin.display()
            )),
            args: test_bad.clone(),
            says: vec![
                format!("plugin not found at {}", missing_plugin.display()),
                "fix `plugin:` in models.yaml".into(),
            ],
        },
        Case {
            kind: "plugin built against another SDK",
            yaml: with_bad(&format!(
                "  plugin: {}\n  label_config: {{labels: [a, b]}}\n",
                build_mismatched_plugin().display()
            )),
            args: test_bad.clone(),
            says: vec![
                "built against clarity-sdk 0.99.0".into(),
                "rebuild the plugin against clarity-sdk".into(),
            ],
        },
        Case {
            kind: "missing artifact",
            yaml: with_bad(&data("malformed.json")),
            args: test_bad,
            says: vec![
                "not trained yet".into(),
                "clarity-host train --model bad".into(),
            ],
        },
        Case {
            kind: "malformed data file",
            yaml: with_bad(&data("malformed.json")),
            args: train_bad.clone(),
            says: vec!["malformed.json:2:".into(), "invalid JSON".into()],
        },
        Case {
            kind: "unreadable data file",
            yaml: with_bad(&data("a-folder.json")),
            args: train_bad.clone(),
            says: vec!["a-folder.json".into(), "cannot read the data file".into()],
        },
        Case {
            kind: "missing data file",
            yaml: with_bad(&data("nowhere.json")),
            args: train_bad,
            says: vec!["nowhere.json".into()],
        },
    ]
}

#[test]
fn every_kind_of_broken_models_yaml_names_file_line_and_field() {
    let project = Project::new("");
    let cases = cases(&project);
    let mut table = Vec::new();
    for case in &cases {
        std::fs::write(project.config(), &case.yaml).expect("write models.yaml");
        let out = project.host(&case.args);
        assert!(
            !out.status.success(),
            "{}: {:?} succeeded",
            case.kind,
            case.args
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{}: one error line:\n{stderr}", case.kind);
        for needle in &case.says {
            assert!(
                errors[0].contains(needle.as_str()),
                "{}: `{}` lacks `{needle}`",
                case.kind,
                errors[0]
            );
        }
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.kind);
        table.push(format!("| {} | `{}` |", case.kind, case.args[0]));
    }
    println!(
        "| broken models.yaml | command |\n|---|---|\n{}",
        table.join("\n")
    );
}

fn statuses(server: &clarity_tests::Server) -> (u16, Value) {
    let (status, body) = server.get("/ready");
    (status, body["models"].clone())
}

#[test]
fn serve_sets_broken_entries_aside_serves_the_rest_and_takes_them_back_on_reload() {
    let project = Project::new("");
    let broken = format!(
        "{}- name: typo\n  type: classic\n  trainng_config: {{batch_size: 8}}\n  data_config: {{train_file: {data}}}\n\
         - name: twin\n  type: classic\n  route: /classify/good\n  data_config: {{train_file: {data}}}\n\
         - name: off\n  enabled: false\n  typo: 1\n",
        good(),
        data = sample_data().join("train.json").display()
    );
    std::fs::write(project.config(), &broken).expect("write models.yaml");
    let server = project.serve(&[]);
    server.wait_settled("good", Duration::from_secs(120));
    let pair = json!({"question": "q", "context": "c"});
    let (status, body) = server.post_json("/classify/good", &pair);
    assert_eq!(status, 200, "the good model serves: {body}");

    let (status, models) = statuses(&server);
    assert_eq!(status, 503, "{models}");
    assert_eq!(models["good"], "ready", "{models}");
    assert_eq!(models["typo"], "failed", "{models}");
    assert_eq!(models["twin"], "failed", "{models}");
    assert!(
        models.get("off").is_none(),
        "disabled entries are not listed: {models}"
    );
    let (_, index) = server.get("/");
    let error_of = |name: &str| {
        index["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name))
            .map(|m| m["error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(error_of("typo").contains("models.yaml:9:"), "{index}");
    assert!(
        error_of("typo").contains("unknown field `trainng_config`"),
        "{index}"
    );
    assert!(error_of("twin").contains("models.yaml:13:"), "{index}");
    let (status, body) = server.post_json("/classify/typo", &pair);
    assert_eq!(status, 503, "{body}");
    let log = server.log();
    assert!(log.contains("entry 1 is not served"), "{log}");

    // Fixed, the file is reloaded and every entry serves.
    let fixed = broken
        .replace("trainng_config", "training_config")
        .replace("route: /classify/good", "route: /classify/twin")
        .replace("  typo: 1\n", "");
    std::fs::write(project.config(), fixed).expect("write models.yaml");
    let (status, report) = server.post_json("/admin/reload", &json!({}));
    assert_eq!(status, 200, "{report}");
    // The fixed entries train first (auto-train), then join the table one by one.
    let started = std::time::Instant::now();
    let routes = ["/classify/good", "/classify/typo", "/classify/twin"];
    loop {
        let answers: Vec<u16> = routes
            .iter()
            .map(|r| server.post_json(r, &pair).0)
            .collect();
        let ready = statuses(&server).0;
        if answers.iter().all(|&s| s == 200) && ready == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{routes:?} answer {answers:?}, /ready {ready}: {:?}\n{}",
            server.get("/"),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
