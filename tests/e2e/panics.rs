//! A panic inside a plugin is a 500 for that request only; the server keeps serving.

use clarity_tests::{error_kind, plugin_lib, Project};
use serde_json::json;
use std::time::Duration;

#[test]
fn plugin_panic_in_classify_is_a_500_and_the_server_survives() {
    let plugin = plugin_lib("clarity-fixture-panic-plugin");
    let project = Project::new(&format!(
        "- name: panicky\n  type: classic\n  plugin: {}\n  label_config: {{labels: [yes, no]}}\n",
        plugin.display()
    ));
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(30));
    let route = "/classify/panicky";
    let fine = json!({"question": "fine?", "context": "yes"});
    let boom = json!({"question": "PANIC now", "context": "yes"});

    for _ in 0..3 {
        let (status, body) = server.post_json(route, &boom);
        assert_eq!(status, 500, "{body}");
        assert_eq!(error_kind(&body), "plugin_panic");
        // The body says what failed and the request id; the panic's text is in the log,
        // under that id, not in the body.
        let error = body["error"].as_str().unwrap_or("");
        let id = body["request_id"].as_str().unwrap_or("none");
        assert!(error.contains("panicked") && error.contains(id), "{body}");
        assert!(!error.contains("fixture asked to panic"), "{body}");
        let logged = |log: &str| {
            log.lines()
                .any(|l| l.contains(id) && l.contains("fixture asked to panic"))
        };
        let started = std::time::Instant::now();
        while !logged(&server.log()) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(logged(&server.log()), "{}", server.log());
        let (status, body) = server.post_json(route, &fine);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scores"]["yes"], json!(0.5));
    }

    // Batched together with good requests, only the panicking one fails.
    let bodies = (0..12)
        .map(|i| {
            if i % 4 == 0 {
                boom.clone()
            } else {
                fine.clone()
            }
        })
        .collect();
    let statuses = server.post_all_at_once(route, bodies);
    for (i, status) in statuses.into_iter().enumerate() {
        assert_eq!(status, if i % 4 == 0 { 500 } else { 200 }, "request {i}");
    }
    assert_eq!(server.get("/health").0, 200);
}
