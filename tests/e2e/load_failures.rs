//! Plugins that cannot be loaded: one clear line naming the path and the fix, and the
//! other models still serve. The log has the whole path; `GET /` only its file name.

use clarity_tests::{build_mismatched_plugin, plugin_lib, Project};
use serde_json::json;
use std::time::Duration;

#[test]
fn broken_plugins_are_reported_and_the_good_model_still_serves() {
    let good = plugin_lib("clarity-fixture-panic-plugin");
    let not_a_plugin = plugin_lib("clarity-fixture-not-a-plugin");
    let mismatched = build_mismatched_plugin();
    let project = Project::new("");
    let garbage = project.path().join("garbage.so");
    std::fs::write(&garbage, b"this is not an ELF file").expect("write garbage");
    let missing = project.path().join("plugins/libnowhere.so");
    let yaml = format!(
        r#"
models:
  - name: good
    type: classic
    plugin: {good}
    label_config: {{labels: [a, b]}}
  - name: missing
    type: classic
    plugin: {missing}
  - name: not-a-plugin
    type: classic
    plugin: {not_a_plugin}
  - name: garbage
    type: classic
    plugin: {garbage}
  - name: old-sdk
    type: classic
    plugin: {mismatched}
"#,
        good = good.display(),
        missing = missing.display(),
        not_a_plugin = not_a_plugin.display(),
        garbage = garbage.display(),
        mismatched = mismatched.display(),
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");

    let server = project.serve(&[]);
    let expectations = [
        (
            "missing",
            vec![missing.display().to_string(), "plugin not found".into()],
        ),
        (
            "not-a-plugin",
            vec![
                not_a_plugin.display().to_string(),
                "not a Clarity plugin".into(),
                "export_plugin!".into(),
            ],
        ),
        (
            "garbage",
            vec![
                garbage.display().to_string(),
                "not a loadable library".into(),
            ],
        ),
        (
            "old-sdk",
            vec![
                mismatched.display().to_string(),
                "built against clarity-sdk 0.99.0".into(),
                "rebuild the plugin against clarity-sdk 0.1.0".into(),
            ],
        ),
    ];
    for (name, needles) in &expectations {
        let entry = server.wait_settled(name, Duration::from_secs(30));
        assert_eq!(entry["status"], "failed", "{entry}");
        let error = entry["error"].as_str().unwrap_or_default();
        assert_eq!(error.lines().count(), 1, "one line: {error}");
        let log = server.log();
        for needle in needles {
            let public = match std::path::Path::new(needle).file_name() {
                Some(file) if needle.starts_with('/') => {
                    assert!(
                        !error.contains(needle.as_str()),
                        "{name}: `{error}` shows the path"
                    );
                    assert!(
                        log.contains(needle.as_str()),
                        "{name}: the log lacks `{needle}`"
                    );
                    format!("…/{}", file.to_string_lossy())
                }
                _ => needle.clone(),
            };
            assert!(
                error.contains(public.as_str()),
                "{name}: `{error}` lacks `{public}`"
            );
        }
        let (status, body) = server.post_json(
            &format!("/classify/{name}"),
            &json!({"question": "q", "context": "c"}),
        );
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["kind"], "unavailable");
    }
    // The log names the failure too.
    let log = server.log();
    assert!(log.contains("built against clarity-sdk 0.99.0"), "{log}");

    let good_entry = server.wait_settled("good", Duration::from_secs(30));
    assert_eq!(good_entry["status"], "ready", "{good_entry}");
    let (status, body) =
        server.post_json("/classify/good", &json!({"question": "q", "context": "c"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scores"]["a"], json!(0.5));
    // Not every enabled model loaded, so the service is not ready.
    assert_eq!(server.get("/ready").0, 503);
}

#[test]
fn plugin_of_the_wrong_type_is_refused() {
    let good = plugin_lib("clarity-classic-template");
    let project = Project::new(&format!(
        "- name: wrong\n  type: encoder\n  plugin: {}\n",
        good.display()
    ));
    let out = project.host(&[
        "test",
        "--model",
        "wrong",
        "--question",
        "q",
        "--context",
        "c",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("serves types [classic], not `encoder`"),
        "{stderr}"
    );
}
