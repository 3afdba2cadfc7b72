//! A plugin that fails in every way a plugin can: each fault fails its own request with
//! the right status and a JSON body free of the plugin's internals, the other models keep
//! serving, and a call that never returns does not wedge its model: the watchdog restarts
//! it on a fresh worker, and leaves it failed when it keeps hanging.

use clarity_tests::{error_kind, plugin_lib, Project, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const FAULTY: &str = "/classify/faulty";
const CLASSIC: &str = "/classify/classic";

/// The fault fixture beside the classic example, which must keep serving throughout.
fn project() -> Project {
    Project::classic(&format!(
        "- name: faulty\n  type: classic\n  plugin: {}\n  route: {FAULTY}\n  label_config: {{labels: [yes, no]}}\n",
        plugin_lib("clarity-fixture-panic-plugin").display()
    ))
}

fn ask(question: &str) -> Value {
    json!({"question": question, "context": "some answer"})
}

fn assert_both_serve(server: &Server) {
    let (status, body) = server.post_json(FAULTY, &ask("fine?"));
    assert_eq!(status, 200, "faulty after a fault: {body}");
    assert_eq!(body["scores"]["yes"], json!(0.5), "{body}");
    let (status, body) = server.post_json(CLASSIC, &ask("fine?"));
    assert_eq!(status, 200, "classic: {body}");
}

#[test]
fn each_plugin_fault_fails_only_its_request_with_the_right_status() {
    let project = project();
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let cases = [
        ("PANIC", 500, "plugin_panic"),
        ("ERROR", 500, "plugin_error"),
        ("BADINPUT", 422, "validation"),
        ("NAN", 500, "plugin_error"),
        ("SHORT", 500, "plugin_error"),
        ("WIDE", 500, "plugin_error"),
    ];
    for (word, want, kind) in cases {
        let (status, body) = server.post_json(FAULTY, &ask(&format!("{word} please")));
        assert_eq!(status, want, "{word}: {body}");
        assert_eq!(error_kind(&body), kind, "{word}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        // What went wrong inside the plugin goes to the log, never to the client.
        for secret in [
            "/secret/internal/path",
            "fixture asked",
            "NaN",
            "score vectors",
        ] {
            assert!(!error.contains(secret), "{word} leaks `{secret}`: {body}");
        }
        assert_both_serve(&server);
    }
    // The log keeps the detail, under the request's id.
    let log = server.log();
    assert!(log.contains("non-finite score (NaN)"), "{log}");
    assert!(log.contains("score vectors for 1 pairs"), "{log}");

    // Batched with good requests, a bad one fails alone.
    let base = server.base.clone();
    let handles: Vec<_> = (0..12)
        .map(|i| {
            let url = format!("{base}{FAULTY}");
            let body = ask(if i % 3 == 0 { "NAN" } else { "fine" });
            std::thread::spawn(move || {
                let resp = reqwest::blocking::Client::new()
                    .post(url)
                    .json(&body)
                    .send()
                    .expect("POST");
                (i, resp.status().as_u16())
            })
        })
        .collect();
    for h in handles {
        let (i, status) = h.join().expect("thread");
        assert_eq!(status, if i % 3 == 0 { 500 } else { 200 }, "request {i}");
    }
}

/// `/ready`'s status for `model`.
fn model_status(server: &Server, model: &str) -> String {
    let (_, body) = server.get("/ready");
    body["models"][model].as_str().unwrap_or("?").to_string()
}

/// Wait until `model`'s status is `want`, or fail after `limit`.
fn wait_status(server: &Server, model: &str, want: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = model_status(server, model);
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "`{model}` is {now}, not {want}, after {limit:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_hung_call_restarts_the_model_and_one_that_keeps_hanging_stays_failed() {
    let project = project();
    let server = project.serve(&["--request-timeout", "2", "--hang-timeout", "3"]);
    server.wait_ready(Duration::from_secs(120));

    for round in 1..=3 {
        let started = Instant::now();
        let (status, body) = server.post_json(FAULTY, &ask("HANG forever"));
        assert_eq!(status, 504, "round {round}: {body}");
        assert_eq!(error_kind(&body), "timeout", "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the 504 took too long"
        );
        // The stuck model does not hold up the other one.
        let (status, _) = server.post_json(CLASSIC, &ask("fine?"));
        assert_eq!(status, 200, "classic while faulty hangs");
        // Past the hang limit the model is given up on (`/ready` says so) and comes back on
        // a fresh worker.
        wait_status(&server, "faulty", "failed", Duration::from_secs(10));
        assert_eq!(server.get("/ready").0, 503);
        let back = wait_status(&server, "faulty", "ready", Duration::from_secs(30));
        println!("round {round}: restarted, ready again {back:?} after it was marked failed");
        assert_eq!(server.get("/ready").0, 200);
        assert_both_serve(&server);
    }

    // The fourth hang within the hour: it stays failed, says why, and the other model serves.
    let (status, _) = server.post_json(FAULTY, &ask("HANG again"));
    assert_eq!(status, 504);
    wait_status(&server, "faulty", "failed", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        model_status(&server, "faulty"),
        "failed",
        "not restarted again"
    );
    let (status, body) = server.post_json(FAULTY, &ask("fine?"));
    assert_eq!(status, 503, "{body}");
    let (_, index) = server.get("/");
    let entry = index["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "faulty"))
        .cloned()
        .unwrap_or_default();
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("hung 4 times") && error.contains("/admin/models/faulty/reload"),
        "{entry}"
    );
    let (status, _) = server.post_json(CLASSIC, &ask("fine?"));
    assert_eq!(status, 200);
}
