//! Backpressure on the real server: 429 `overloaded` with `Retry-After` for a full queue and
//! for `--max-concurrent-requests`, and a JSON 504 `timeout` past `--request-timeout`. The
//! panic fixture plugin is the slow model: a question with "SLOW" takes two seconds.

use clarity_tests::{error_kind, plugin_lib, Project, Server};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROUTE: &str = "/classify/slow";

fn slow_project(queue_capacity: usize) -> Project {
    let plugin = plugin_lib("clarity-fixture-panic-plugin");
    Project::new(&format!(
        "- name: slow\n  type: classic\n  plugin: {}\n  label_config: {{labels: [yes, no]}}\n  \
         serving_config: {{queue_capacity: {queue_capacity}}}\n",
        plugin.display()
    ))
}

fn pair(question: &str) -> Value {
    json!({"question": question, "context": "Q: anything?\nA: yes"})
}

/// POST in the background; the status and body when it is answered.
fn post_later(server: &Server, body: Value) -> std::thread::JoinHandle<(u16, Value)> {
    let url = format!("{}{ROUTE}", server.base);
    std::thread::spawn(move || {
        let resp = reqwest::blocking::Client::new()
            .post(url)
            .json(&body)
            .send()
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    })
}

/// POST now; status, `Retry-After` and body.
fn post_now(server: &Server, body: &Value) -> (u16, Option<String>, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}{ROUTE}", server.base))
        .json(body)
        .send()
        .expect("POST");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry_after, resp.json().unwrap_or(Value::Null))
}

/// Wait until `GET /` reports `queued` pairs waiting for the model.
fn wait_queued(server: &Server, queued: u64) {
    let started = Instant::now();
    while server.get("/").1["models"][0]["queued"] != json!(queued) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{queued} never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let project = slow_project(1);
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(30));
    let running = post_later(&server, pair("SLOW one"));
    // `running` holds the model (its job left the queue); `waiting` fills the queue.
    std::thread::sleep(Duration::from_millis(300));
    wait_queued(&server, 0);
    let waiting = post_later(&server, pair("waiting"));
    wait_queued(&server, 1);
    let (status, retry_after, body) = post_now(&server, &pair("refused"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_kind(&body), "overloaded");
    assert!(body["request_id"].is_string(), "{body}");
    let secs: u64 = retry_after
        .as_deref()
        .unwrap_or("")
        .parse()
        .expect("Retry-After");
    assert!((1..=60).contains(&secs), "{secs}");
    assert_eq!(running.join().expect("thread").0, 200);
    assert_eq!(waiting.join().expect("thread").0, 200);
}

#[test]
fn max_concurrent_requests_and_request_timeout_answer_429_and_json_504() {
    let project = slow_project(64);
    let server = project.serve(&["--max-concurrent-requests", "2", "--request-timeout", "1"]);
    server.wait_ready(Duration::from_secs(30));
    let started = Instant::now();
    // `slow` holds the model for two seconds; `queued` waits behind it; a third is refused.
    let slow = post_later(&server, pair("SLOW one"));
    std::thread::sleep(Duration::from_millis(300));
    wait_queued(&server, 0);
    let queued = post_later(&server, pair("queued"));
    wait_queued(&server, 1);
    let (status, retry_after, body) = post_now(&server, &pair("third"));
    assert_eq!(status, 429, "{body}");
    assert_eq!(error_kind(&body), "overloaded");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("--max-concurrent-requests"),
        "{body}"
    );
    assert_eq!(retry_after.as_deref(), Some("1"));
    for request in [slow, queued] {
        let (status, body) = request.join().expect("thread");
        assert_eq!(status, 504, "{body}");
        assert_eq!(error_kind(&body), "timeout");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or("")
                .contains("--request-timeout"),
            "{body}"
        );
        assert!(body["request_id"].is_string(), "{body}");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1900),
        "answered at the deadline, not after: {took:?}"
    );
    assert_eq!(server.get("/health").0, 200);
    // Once the slow batch is done the slots are free; the timed-out `queued` pair was
    // dropped, not scored.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(server.post_json(ROUTE, &pair("after")).0, 200);
    let metrics = reqwest::blocking::get(format!("{}/metrics", server.base))
        .and_then(|r| r.text())
        .expect("GET /metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"clarity_dropped_pairs_total{model="slow"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("clarity_http_requests_total")
                && l.contains(r#"status="504""#)
                && l.ends_with(" 2")),
        "{metrics}"
    );
}
