//! A plugin that fails in every way a plugin can: each fault fails its own request with
//! the right status and a JSON body free of the plugin's internals, the other models keep
//! serving, and a call that never returns does not wedge its model: the watchdog restarts
//! it on a fresh worker, and leaves it failed when it keeps hanging.

use clarity_tests::process::rss_kib;
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
    let bodies = (0..12)
        .map(|i| ask(if i % 3 == 0 { "NAN" } else { "fine" }))
        .collect();
    let statuses = server.post_all_at_once(FAULTY, bodies);
    for (i, status) in statuses.into_iter().enumerate() {
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

/// What the log says when the watchdog restarts a model.
const RESTARTING: &str = "restarting the model on a fresh worker";

/// Wait until the log has `needle` `times` times, or fail after 10 s.
fn wait_for_log(server: &Server, needle: &str, times: usize) {
    let started = Instant::now();
    while server.log().matches(needle).count() < times {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "`{needle}` not logged {times} times:\n{}",
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
        // Past the hang limit the model is given up on and comes back on a fresh worker
        // (within milliseconds: too quick to catch `/ready` saying so, the log is watched).
        wait_for_log(&server, RESTARTING, round);
        let back = wait_status(&server, "faulty", "ready", Duration::from_secs(30));
        println!("round {round}: restarted; ready {back:?} after the restart was logged");
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
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.base))
        .and_then(|r| r.text())
        .expect("GET /metrics");
    for line in [
        r#"clarity_model_hangs_total{model="faulty",outcome="restarted"} 3"#,
        r#"clarity_model_hangs_total{model="faulty",outcome="failed"} 1"#,
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
}

/// Ids of the model processes `pid` started.
fn model_processes(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // Field 4, after the parenthesised name, is the parent's id.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            parent == Some(pid) && String::from_utf8_lossy(&cmdline).contains("model-process")
        })
        .collect()
}

#[test]
fn an_isolated_model_survives_aborts_runaway_memory_and_hangs() {
    let project = Project::classic(&format!(
        "- name: faulty\n  type: classic\n  plugin: {}\n  route: {FAULTY}\n  label_config: {{labels: [yes, no]}}\n  serving_config: {{isolation: process, memory_limit_mb: 256}}\n",
        plugin_lib("clarity-fixture-panic-plugin").display()
    ));
    let server = project.serve(&["--request-timeout", "2", "--hang-timeout", "3"]);
    server.wait_ready(Duration::from_secs(120));
    assert_both_serve(&server);
    let first = model_processes(server.pid());
    assert_eq!(first.len(), 1, "one model process: {first:?}");
    let baseline = rss_kib(server.pid());

    // Faults the plugin reports are answered as in-process ones are.
    for (word, want, kind) in [
        ("PANIC", 500, "plugin_panic"),
        ("BADINPUT", 422, "validation"),
        ("NAN", 500, "plugin_error"),
    ] {
        let (status, body) = server.post_json(FAULTY, &ask(word));
        assert_eq!(
            (status, error_kind(&body).as_str()),
            (want, kind),
            "{word}: {body}"
        );
    }
    assert_eq!(model_processes(server.pid()), first, "no restart for those");

    // Faults that end the process: only that request fails, and the next one gets a fresh
    // process. Runaway memory stops at the limit, in the model's process.
    for word in ["ABORT", "ALLOC", "ALLOC"] {
        let started = Instant::now();
        let (status, body) = server.post_json(FAULTY, &ask(word));
        assert_eq!(status, 500, "{word}: {body}");
        assert_eq!(error_kind(&body), "plugin_error", "{body}");
        assert!(
            !body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("SIGABRT"),
            "{body}"
        );
        println!("{word}: 500 after {:?}", started.elapsed());
        assert_both_serve(&server);
        let grown = rss_kib(server.pid()).saturating_sub(baseline);
        assert!(
            grown < 50 * 1024,
            "the server grew by {grown} KiB after {word}"
        );
    }
    let log = server.log();
    assert!(log.contains("was killed by SIGABRT"), "{log}");
    assert!(log.contains("memory_limit_mb = 256"), "{log}");
    let now = model_processes(server.pid());
    assert_eq!(now.len(), 1, "dead processes are reaped: {now:?}");
    assert_ne!(now, first, "a fresh process serves");

    // A hung call: the watchdog kills the process and the model comes back on a new one.
    let before = model_processes(server.pid());
    let (status, _) = server.post_json(FAULTY, &ask("HANG"));
    assert_eq!(status, 504);
    wait_for_log(&server, RESTARTING, 1);
    wait_status(&server, "faulty", "ready", Duration::from_secs(30));
    assert_both_serve(&server);
    let started = Instant::now();
    let after = loop {
        let after = model_processes(server.pid());
        if after.len() == 1 || started.elapsed() > Duration::from_secs(10) {
            break after;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(after.len(), 1, "the hung process was killed: {after:?}");
    assert_ne!(after, before, "{after:?}");

    // Killed outright while its model process is stuck in a call (so it would never read
    // the end of its input), the server still takes that process with it.
    let url = format!("{}{FAULTY}", server.base);
    std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::new()
            .post(url)
            .json(&ask("HANG"))
            .send();
    });
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::process::Command::new("kill")
        .args(["-9", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    while after.iter().any(|pid| alive(*pid)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "orphaned: {after:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` still runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}
