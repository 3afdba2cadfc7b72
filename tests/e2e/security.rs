//! Security defaults, seen from outside: where plugin libraries may come from and the warning
//! for one other users can write, and the per-text length limit that is on without any
//! configuration.

use clarity_tests::process::{spawn_host, CapturedLog};
use clarity_tests::{error_kind, plugin_lib, Project};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FIXTURE: &str = "clarity-fixture-panic-plugin";

/// A copy of the fixture plugin in `folder` (created), the file with `file_mode` and the
/// folder with `dir_mode`; its canonical path.
fn copy_plugin(folder: &Path, file_mode: u32, dir_mode: u32) -> PathBuf {
    std::fs::create_dir_all(folder).expect("mkdir");
    let copy = folder.join(plugin_lib(FIXTURE).file_name().expect("a plugin file name"));
    std::fs::copy(plugin_lib(FIXTURE), &copy).expect("copy the plugin");
    let chmod = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    chmod(&copy, file_mode);
    chmod(folder, dir_mode);
    copy.canonicalize().expect("canonical plugin path")
}

fn pair(question: &str, context: &str) -> Value {
    json!({"question": question, "context": context})
}

#[test]
fn a_plugin_other_users_can_write_is_warned_about_once_and_still_serves() {
    let project = Project::new("");
    let exposed = copy_plugin(&project.path().join("shared-plugins"), 0o777, 0o777);
    let private = copy_plugin(&project.path().join("private-plugins"), 0o755, 0o755);
    let exposed_dir = exposed.parent().expect("folder").to_path_buf();
    // Two models on the exposed library: it is opened, and warned about, once.
    let yaml = format!(
        "- name: one\n  type: classic\n  plugin: {exposed}\n  label_config: {{labels: [a, b]}}\n\
         - name: two\n  type: classic\n  plugin: {exposed}\n  label_config: {{labels: [a, b]}}\n\
         - name: private\n  type: classic\n  plugin: {private}\n  label_config: {{labels: [a, b]}}\n",
        exposed = exposed.display(),
        private = private.display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");

    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    for name in ["one", "two", "private"] {
        let (status, body) = server.post_json(&format!("/classify/{name}"), &pair("q", "c"));
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["scores"]["a"], json!(0.5), "{body}");
    }

    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("writable by other users"))
        .collect();
    let file_fix = format!("chmod go-w {}", exposed.display());
    let dir_fix = format!("chmod go-w {}", exposed_dir.display());
    let file_lines: Vec<_> = warnings
        .iter()
        .filter(|l| l.trim_end().ends_with(&file_fix))
        .collect();
    let dir_lines: Vec<_> = warnings
        .iter()
        .filter(|l| l.trim_end().ends_with(&dir_fix))
        .collect();
    assert_eq!(file_lines.len(), 1, "one warning for the file:\n{log}");
    assert!(file_lines[0].contains("mode 777"), "{}", file_lines[0]);
    assert_eq!(dir_lines.len(), 1, "one warning for the folder:\n{log}");
    assert_eq!(warnings.len(), 2, "nothing else is warned about:\n{log}");
    assert!(
        !warnings.iter().any(|l| l.contains("private-plugins")),
        "the private copy is not warned about:\n{log}"
    );
    // Clients see neither the warning nor where the library lives.
    let (_, index) = server.get("/");
    assert!(!index.to_string().contains("shared-plugins"), "{index}");
}

#[test]
fn shipped_plugins_come_from_the_plugin_folders_only_never_the_working_folder() {
    // Decoys with the shipped file name in the working folder and in a folder on the system
    // loader's path (a real library, but not a Clarity plugin), and CLARITY_PLUGIN_DIR set
    // but empty: the plugin still comes from the host's own folder. (Before, the empty
    // folder made a bare file name, which dlopen looks up on LD_LIBRARY_PATH.)
    let project = Project::new(
        "- name: bare\n  type: classic\n  plugin: fixture-panic-plugin\n  label_config: {labels: [a, b]}\n",
    );
    let file_name = plugin_lib(FIXTURE)
        .file_name()
        .expect("a plugin file name")
        .to_owned();
    std::fs::write(project.path().join(&file_name), b"a decoy, not a library")
        .expect("write decoy");
    let loader_dir = project.path().join("on-the-loader-path");
    std::fs::create_dir(&loader_dir).expect("mkdir");
    std::fs::copy(
        plugin_lib("clarity-fixture-not-a-plugin"),
        loader_dir.join(&file_name),
    )
    .expect("copy decoy library");
    let loader_path = loader_dir.display().to_string();
    let server = project.serve_with_env(
        &[],
        &[
            ("CLARITY_PLUGIN_DIR", ""),
            ("LD_LIBRARY_PATH", loader_path.as_str()),
        ],
    );
    let entry = server.wait_settled("bare", Duration::from_secs(60));
    assert_eq!(entry["status"], "ready", "{entry}");
    let (status, body) = server.post_json("/classify/bare", &pair("q", "c"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn texts_over_the_length_limit_are_refused_by_every_route_and_the_schema_says_so() {
    let plugin = plugin_lib(FIXTURE);
    let project = Project::new(&format!(
        "- name: small\n  type: classic\n  plugin: {p}\n  label_config: {{labels: [a, b]}}\n  \
         serving_config: {{max_text_chars: 50}}\n\
         - name: default\n  type: classic\n  plugin: {p}\n  label_config: {{labels: [a, b]}}\n",
        p = plugin.display()
    ));
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));

    // The limit counts characters, not bytes: 50 two-byte characters pass, 51 do not.
    let at_limit = "é".repeat(50);
    let over = "é".repeat(51);
    let (status, body) = server.post_json("/classify/small", &pair(&at_limit, &at_limit));
    assert_eq!(status, 200, "{body}");

    let (status, body) = server.post_json("/classify/small", &pair("q", &over));
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_kind(&body), "validation");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("`context` has 51 characters; the limit is 50")
            && error.contains("serving_config.max_text_chars"),
        "{body}"
    );
    let batch = json!([pair("q", "c"), pair(&over, "c")]);
    let (status, body) = server.post_json("/classify/small", &batch);
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("item 1: `question` has 51"), "{body}");

    // The Open Inference Protocol route refuses it the same way (its 400).
    let infer = json!({"inputs": [
        {"name": "question", "datatype": "BYTES", "shape": [1], "data": [over]},
        {"name": "context", "datatype": "BYTES", "shape": [1], "data": ["c"]}
    ]});
    let (status, body) = server.post_json("/v2/models/small/infer", &infer);
    assert_eq!(status, 400, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("element 0: `question` has 51 characters; the limit is 50"),
        "{body}"
    );

    // On by default: 100,000 characters, well inside the 2 MB body limit.
    let long = "x".repeat(100_001);
    let (status, body) = server.post_json("/classify/default", &pair(&long, "c"));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("the limit is 100000"),
        "{body}"
    );
    let (status, body) = server.post_json("/classify/default", &pair(&long[1..], "c"));
    assert_eq!(status, 200, "{body}");
    // The server answers normally after the refusals.
    assert_eq!(server.get("/health").0, 200);

    // The OpenAPI document gives each route its model's limit.
    let (_, doc) = server.get("/openapi.json");
    for (route, limit) in [("/classify/small", 50), ("/classify/default", 100_000)] {
        let schema = &doc["paths"][route]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["oneOf"];
        for pair_schema in [&schema[0], &schema[1]["items"]] {
            let limits = &pair_schema["allOf"][1]["properties"];
            assert_eq!(limits["question"]["maxLength"], json!(limit), "{schema}");
            assert_eq!(limits["context"]["maxLength"], json!(limit), "{schema}");
            assert_eq!(
                pair_schema["allOf"][0]["$ref"], "#/components/schemas/Pair",
                "{schema}"
            );
        }
    }
}

#[test]
fn serving_beyond_loopback_without_an_api_key_is_warned_about() {
    let plugin = plugin_lib(FIXTURE);
    let project = Project::new(&format!(
        "- name: m\n  type: classic\n  plugin: {}\n  label_config: {{labels: [a, b]}}\n",
        plugin.display()
    ));
    let warning = "without an API key: anyone who can reach this port";
    // Bound to every interface for a moment; the test sends nothing to it.
    let mut open = spawn_host(
        &project.config(),
        project.path(),
        &["serve", "--host", "0.0.0.0", "--port", "0"],
    );
    let log = CapturedLog::attach(&mut open, |_| {});
    let listening = log.wait_for(Duration::from_secs(60), |l| l.contains("Listening on "));
    assert!(listening.is_some(), "{}", log.text());
    let text = log.text();
    let line = text.lines().find(|l| l.contains(warning));
    let line = line.unwrap_or_else(|| panic!("no warning:\n{text}"));
    assert!(
        line.contains("WARN") && line.contains("--api-key"),
        "{line}"
    );
    drop(open);

    // On loopback, or with a key, there is nothing to warn about.
    for args in [
        &["serve", "--host", "127.0.0.1", "--port", "0"][..],
        &[
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--api-key",
            "k-123",
        ][..],
    ] {
        let mut host = spawn_host(&project.config(), project.path(), args);
        let log = CapturedLog::attach(&mut host, |_| {});
        let listening = log.wait_for(Duration::from_secs(60), |l| l.contains("Listening on "));
        assert!(listening.is_some(), "{}", log.text());
        assert!(!log.text().contains(warning), "{args:?}:\n{}", log.text());
    }
}
