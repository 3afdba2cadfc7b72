//! Serving controls through the real binary: the warm-up call at load (and a model whose
//! warm-up fails is reported while the others serve), `"truncate": false` refusing a pair
//! the real tokenizer would cut, ONNX Runtime threads shared between models, the token
//! budget in `GET /`, and CORS preflights answered only for the configured origin.

use clarity_tests::encoder::write_onnx_folder;
use clarity_tests::{error_kind, plugin_lib, Project};
use serde_json::{json, Value};
use std::time::Duration;

const MAX_LENGTH: usize = 32;

/// A project serving `names` as exported tiny encoders (real MiniLM tokenizer, max_length
/// 32), plus `extra` YAML entries.
fn encoders(names: &[&str], extra: &str) -> Project {
    let project = Project::new("");
    let mut yaml = String::new();
    for name in names {
        write_onnx_folder(&project.path().join(name), &["yes", "no"]);
        yaml.push_str(&format!(
            "- name: {name}\n  type: encoder\n  plugin: {}\n  model_config: {{model_name: {name}, max_length: {MAX_LENGTH}}}\n",
            plugin_lib("clarity-encoder").display()
        ));
    }
    yaml.push_str(extra);
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    project
}

fn model<'a>(index: &'a Value, name: &str) -> &'a Value {
    index["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no model {name} in {index}"))
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn truncate_false_refuses_what_the_real_tokenizer_would_cut_and_warm_up_runs_at_load() {
    let project = encoders(&["ext"], "");
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    assert!(
        server.log().contains("Model `ext` warmed up in"),
        "{}",
        server.log()
    );
    let (_, index) = server.get("/");
    assert_eq!(
        model(&index, "ext")["plugin"],
        "libclarity_encoder.so",
        "the file name, not where it lives on the machine: {index}"
    );
    let details = &model(&index, "ext")["details"];
    assert_eq!(details["max_batch_tokens"], 512, "a CPU default {index}");
    assert_eq!(
        details["intra_op_threads"],
        cores(),
        "one model: all cores {index}"
    );

    let long_answer = "A: ".to_string() + &"the answer goes on and on ".repeat(20);
    let long = json!({"question": "Will it be cut?", "context": long_answer});
    let (status, body) = server.post_json("/classify/ext", &long);
    assert_eq!(status, 200, "truncated by default: {body}");

    let mut strict = long.clone();
    strict["truncate"] = json!(false);
    let (status, body) = server.post_json("/classify/ext", &strict);
    assert_eq!(status, 422, "{body}");
    assert_eq!(error_kind(&body), "validation", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("the pair is") && message.contains(&format!("max_length {MAX_LENGTH}")),
        "{body}"
    );

    let short = json!({"question": "Is it short?", "context": "A: Yes.", "truncate": false});
    let (status, body) = server.post_json("/classify/ext", &short);
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post_json("/classify/ext", &json!([short, strict]));
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("item 1"),
        "{body}"
    );
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn models_share_the_cores_and_a_failed_warm_up_is_reported_while_the_others_serve() {
    let fixture = format!(
        "- name: flaky\n  type: classic\n  plugin: {}\n  model_config: {{options: {{panic_on_first_call: true}}}}\n  label_config: {{labels: [a, b]}}\n",
        plugin_lib("clarity-fixture-panic-plugin").display()
    );
    let project = encoders(&["one", "two"], &fixture);
    let mut server = project.serve(&[]);
    let flaky = server.wait_settled("flaky", Duration::from_secs(60));
    assert_eq!(flaky["status"], "failed", "{flaky}");
    let error = flaky["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("warm-up call failed") && error.contains("panicked"),
        "{flaky}"
    );
    for name in ["one", "two"] {
        let settled = server.wait_settled(name, Duration::from_secs(60));
        assert_eq!(settled["status"], "ready", "{settled}");
        assert_eq!(
            settled["details"]["intra_op_threads"],
            (cores() / 2).max(1),
            "two ONNX Runtime models split the cores: {settled}"
        );
        let pair = json!({"question": "Served?", "context": "A: Yes."});
        let (status, body) = server.post_json(&format!("/classify/{name}"), &pair);
        assert_eq!(status, 200, "{body}");
    }
    assert!(
        server.log().contains("2 ONNX Runtime models share"),
        "{}",
        server.log()
    );
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));
}

#[test]
fn cors_preflights_are_answered_for_the_configured_origin_only() {
    let project = Project::classic("");
    let mut server = project.serve(&["--cors-origin", "http://page.example:3000"]);
    server.wait_ready(Duration::from_secs(60));
    let client = reqwest::blocking::Client::new();
    let preflight = |origin: &str| {
        client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/classify/classic", server.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .expect("OPTIONS")
    };
    let allowed = preflight("http://page.example:3000");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("http://page.example:3000")
    );
    let other = preflight("http://elsewhere.example");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let answer = client
        .post(format!("{}/classify/classic", server.base))
        .header("origin", "http://page.example:3000")
        .json(&json!({"question": "From a page?", "context": "A: Yes."}))
        .send()
        .expect("POST");
    assert_eq!(answer.status(), 200);
    assert!(answer
        .headers()
        .get("access-control-allow-origin")
        .is_some());
    assert_eq!(server.terminate(Duration::from_secs(20)), Some(0));

    // A value that is not an origin stops `serve` with the fix.
    let out = project.host(&["serve", "--cors-origin", "page.example"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scheme://host[:port]"), "{stderr}");
}
