//! Hot reload on the real server with the classic example, under a steady stream of requests
//! from several clients (the seed route and the Open Inference route) that must all succeed:
//! a changed entry via `POST /admin/reload`, again via SIGHUP, a retrain in another process
//! picked up by `POST /admin/models/classic/reload`, a broken entry that leaves the old model
//! serving, and a model added (trained first, so pending) and then removed.

use clarity_tests::{host_command, plugin_lib, sample_data, Project, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;

const PAIR: (&str, &str) = (
    "Will you raise the minimum wage?",
    "Q: Will you raise the minimum wage?\nA: Yes. We will raise it to fifteen dollars next year.",
);

/// One classic entry; `extra` is more keys, indented two spaces.
fn entry(name: &str, train_file: &str, extra: &str) -> String {
    format!(
        "- name: {name}\n  type: classic\n  plugin: {}\n  route: /classify/{name}\n  label_config:\n    labels: [\"Clear Reply\", \"Clear Non-Reply\", \"Ambivalent\"]\n  data_config:\n    train_file: {train_file}\n{extra}",
        plugin_lib("clarity-classic-example").display()
    )
}

fn sample_train() -> String {
    sample_data().join("train.json").display().to_string()
}

/// Clients posting as fast as they are answered until stopped; every answer that is not a
/// 200 is kept.
struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(base: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let clients = (0..CLIENTS)
            .map(|i| {
                let (stop, answered, failures) =
                    (Arc::clone(&stop), Arc::clone(&answered), Arc::clone(&failures));
                let base = base.to_string();
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .expect("client");
                    let mut n = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        // Half the clients speak the seed API, half the Open Inference Protocol.
                        let (url, body) = if i % 2 == 0 {
                            (
                                format!("{base}/classify/classic"),
                                json!({"question": PAIR.0, "context": format!("{} ({n})", PAIR.1)}),
                            )
                        } else {
                            (
                                format!("{base}/v2/models/classic/infer"),
                                json!({"inputs": [
                                    {"name": "question", "datatype": "BYTES", "shape": [1], "data": [PAIR.0]},
                                    {"name": "context", "datatype": "BYTES", "shape": [1], "data": [PAIR.1]}]}),
                            )
                        };
                        match client.post(&url).json(&body).send() {
                            Ok(r) if r.status().as_u16() == 200 => {
                                answered.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(r) => {
                                let status = r.status();
                                let text = r.text().unwrap_or_default();
                                failures.lock().expect("failures").push(format!("{url}: {status} {text}"));
                            }
                            Err(e) => failures.lock().expect("failures").push(format!("{url}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            answered,
            failures,
            clients,
        }
    }

    /// Wait until `more` requests were answered after this call: the load goes on.
    fn wait_for_progress(&self, more: usize) {
        let from = self.answered.load(Ordering::SeqCst);
        let started = Instant::now();
        while self.answered.load(Ordering::SeqCst) < from + more {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the load stalled"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.join().expect("client thread");
        }
        let failures = self.failures.lock().expect("failures").clone();
        (self.answered.load(Ordering::SeqCst), failures)
    }
}

fn admin(server: &Server, path: &str) -> (u16, Value) {
    server.post_json(path, &json!({}))
}

fn classic_scores(server: &Server) -> Value {
    let (status, body) = server.post_json(
        "/classify/classic",
        &json!({"question": PAIR.0, "context": PAIR.1}),
    );
    assert_eq!(status, 200, "{body}");
    body["scores"].clone()
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// Wait until the server log holds `needle` at least `times` times.
fn wait_for_log(server: &Server, needle: &str, times: usize) {
    let started = Instant::now();
    while count(&server.log(), needle) < times {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no {times}x `{needle}` in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Labels moved round (Clear Reply -> Clear Non-Reply -> Ambivalent -> Clear Reply): a model
/// trained on these answers differently.
fn write_rotated_data(path: &std::path::Path) {
    let text = std::fs::read_to_string(sample_data().join("train.json")).expect("sample data");
    let mut rows: Vec<Value> = serde_json::from_str(&text).expect("sample JSON");
    for row in &mut rows {
        let rotated = match row["clarity_label"].as_str() {
            Some("Clear Reply") => "Clear Non-Reply",
            Some("Clear Non-Reply") => "Ambivalent",
            _ => "Clear Reply",
        };
        row["clarity_label"] = json!(rotated);
    }
    std::fs::write(path, serde_json::to_string(&rows).expect("JSON")).expect("write data");
}

#[test]
fn models_reload_under_load_without_a_failed_request() {
    let train = sample_train();
    let project = Project::new(&entry("classic", &train, ""));
    project.host_ok(&["train", "--model", "classic"]);
    let server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(60));
    let write = |text: String| std::fs::write(project.config(), text).expect("write models.yaml");
    let load = Load::start(&server.base);
    load.wait_for_progress(20);
    let stopped = "Model `classic` stopped";

    // 1. A changed entry, via POST /admin/reload: a new worker, then the old one drains.
    write(entry(
        "classic",
        &train,
        "  serving_config:\n    max_batch_size: 16\n",
    ));
    let (status, report) = admin(&server, "/admin/reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["loaded"], json!(["classic"]), "{report}");
    wait_for_log(&server, stopped, 1);
    load.wait_for_progress(20);

    // 2. Again, via SIGHUP.
    write(entry(
        "classic",
        &train,
        "  serving_config:\n    max_batch_size: 8\n",
    ));
    clarity_tests::process::signal(server.pid(), "HUP");
    wait_for_log(&server, r#"Reload (SIGHUP): loaded ["classic"]"#, 1);
    wait_for_log(&server, stopped, 2);
    load.wait_for_progress(20);

    // 3. A retrain in another process (labels rotated, so it answers differently) serves
    // only once the model is reloaded.
    let before = classic_scores(&server);
    let rotated = project.path().join("rotated.json");
    write_rotated_data(&rotated);
    let retrain_config = project.path().join("retrain.yaml");
    let rotated_entry = entry(
        "classic",
        &rotated.display().to_string(),
        "  serving_config:\n    max_batch_size: 8\n",
    );
    std::fs::write(&retrain_config, &rotated_entry).expect("write retrain.yaml");
    let out = host_command(
        &retrain_config,
        project.path(),
        &["train", "--model", "classic"],
    )
    .output()
    .expect("run train");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(classic_scores(&server), before, "not reloaded yet");
    let (status, report) = admin(&server, "/admin/models/classic/reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["loaded"], json!(["classic"]), "{report}");
    assert_ne!(
        classic_scores(&server),
        before,
        "the retrained model serves: {report}"
    );
    wait_for_log(&server, stopped, 3);
    load.wait_for_progress(20);

    // 4. A broken change (its plugin is missing) keeps the old model serving, and says why
    // in the reply, the log and GET /.
    let broken = entry(
        "classic",
        &train,
        "  serving_config:\n    max_batch_size: 8\n",
    )
    .replace(
        &plugin_lib("clarity-classic-example").display().to_string(),
        "/nonexistent/libclarity_missing.so",
    );
    write(broken);
    let (status, report) = admin(&server, "/admin/reload");
    assert_eq!(status, 422, "{report}");
    assert_eq!(report["kind"], "reload_failed", "{report}");
    assert_eq!(report["failed"][0]["name"], "classic", "{report}");
    assert_eq!(report["failed"][0]["old_model_serving"], true, "{report}");
    let error = report["failed"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("/nonexistent/libclarity_missing.so"),
        "{report}"
    );
    let (_, index) = server.get("/");
    assert_eq!(
        index["last_reload"]["failed"][0]["error"],
        error.as_str(),
        "{index}"
    );
    assert_eq!(index["models"][0]["status"], "ready", "{index}");
    assert!(
        server
            .log()
            .contains("failed to load; the old model keeps serving"),
        "{}",
        server.log()
    );
    assert_ne!(classic_scores(&server), before, "still the retrained model");
    load.wait_for_progress(20);

    // 5. A broken YAML changes nothing and names the line.
    write("- name: classic\n  type: classic\n  training_config:\n    batch_size: many\n".into());
    let (status, body) = admin(&server, "/admin/reload");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["kind"], "invalid_config", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("models.yaml:4"),
        "{body}"
    );

    // 6. A new model is trained first: pending in the reply, then it serves; removed again,
    // its route answers 404 and its worker stops.
    let keep = entry(
        "classic",
        &rotated.display().to_string(),
        "  serving_config:\n    max_batch_size: 8\n",
    );
    write(format!("{keep}{}", entry("second", &train, "")));
    let (status, report) = admin(&server, "/admin/reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["pending"], json!(["second"]), "{report}");
    assert_eq!(
        report["unchanged"],
        json!([]),
        "classic's entry was broken, so it loads again: {report}"
    );
    let started = Instant::now();
    loop {
        let (status, body) = server.post_json(
            "/classify/second",
            &json!({"question": PAIR.0, "context": PAIR.1}),
        );
        if status == 200 {
            break;
        }
        assert_eq!(status, 404, "not served until ready: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "second never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    write(keep);
    let (status, report) = admin(&server, "/admin/reload");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"], json!(["second"]), "{report}");
    assert_eq!(report["unchanged"], json!(["classic"]), "{report}");
    let (status, body) = server.post_json(
        "/classify/second",
        &json!({"question": PAIR.0, "context": PAIR.1}),
    );
    assert_eq!(status, 404, "{body}");
    let (status, _) = server.get("/v2/models/second");
    assert_eq!(status, 404);
    wait_for_log(&server, "Model `second` stopped", 1);
    load.wait_for_progress(20);

    // Every model load by a reload is counted: 1, 2 (SIGHUP), 3 (retrain), classic again
    // and second in 6; the broken plugin in 4 failed; the broken YAML in 5.
    let (_, metrics) = server.get("/metrics");
    let metrics = metrics.as_str().unwrap_or_default();
    for line in [
        r#"clarity_model_reloads_total{outcome="loaded"} 5"#,
        r#"clarity_model_reloads_total{outcome="failed"} 1"#,
        r#"clarity_model_reloads_total{outcome="invalid_config"} 1"#,
    ] {
        assert!(metrics.contains(line), "metrics lack {line}:\n{metrics}");
    }

    let (answered, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:#?}",
        failures.len(),
        answered + failures.len()
    );
    assert!(answered >= 100, "only {answered} requests");
    eprintln!("{answered} requests answered during the reloads, none failed");
}
