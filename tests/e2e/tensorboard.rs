//! Training runs as TensorBoard sees them: event files read back by TensorBoard's own
//! reader, the report and plot beside them, and a `tensorboard` process the host starts,
//! serves the run from, and takes down with it.

use clarity_tests::encoder::venv;
use clarity_tests::process::{
    free_port, group_and_children, spawn_host_with_tensorboard, CapturedLog,
};
use clarity_tests::{host_command, Project, NO_TENSORBOARD};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn classic_project(tensorboard: &str) -> Project {
    Project::classic(&format!("  tensorboard_config: {tensorboard}\n"))
}

/// The single run folder under `runs/<model>/`.
fn run_dir(project: &Project, model: &str) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(project.path().join("runs").join(model))
        .expect("runs/<model> exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn event_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("run folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("tfevents"))
        .unwrap_or_else(|| panic!("no event file in {}", dir.display()))
}

/// TensorBoard's own record reader (it checks both CRCs) and protobuf classes, on `path`:
/// `[{"step", "tag", "value" | "text"}]`.
const READ_EVENTS: &str = r#"
import json, sys
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import PyRecordReader_New
reader = PyRecordReader_New(sys.argv[1].encode())
out, first = [], None
while True:
    try:
        reader.GetNext()
    except Exception as e:
        if type(e).__name__ == "OutOfRangeError":
            break
        raise
    event = event_pb2.Event.FromString(reader.record())
    if first is None:
        first = event.file_version
    for v in event.summary.value:
        item = {"step": event.step, "tag": v.tag}
        if v.HasField("simple_value"):
            item["value"] = v.simple_value
        else:
            item["text"] = v.tensor.string_val[0].decode()
            item["plugin"] = v.metadata.plugin_data.plugin_name
        out.append(item)
print(json.dumps({"file_version": first, "values": out}))
"#;

fn read_events(path: &Path) -> Value {
    let python = venv().join("bin/python");
    let out = Command::new(&python)
        .args(["-c", READ_EVENTS])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", python.display()));
    assert!(
        out.status.success(),
        "TensorBoard's reader failed on {}:\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("reader json")
}

#[test]
fn training_writes_events_tensorboard_reads_a_report_and_a_plot() {
    let project = classic_project("{auto_start: false}");
    let stdout = project.host_ok(&["train", "--model", "classic"]);
    assert!(stdout.contains("confusion matrix"), "{stdout}");
    assert!(stdout.contains("report.json"), "{stdout}");

    let dir = run_dir(&project, "classic");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.json")).expect("report.json"),
    )
    .expect("report json");
    let steps = report["report"]["steps"].as_u64().expect("steps");
    let f1 = report["valid"]["macro_f1"].as_f64().expect("macro_f1");
    assert_eq!(report["best_epoch"], 1, "{report}");
    assert!(report["seconds"].as_f64().unwrap_or(0.0) > 0.0);
    let confusion = report["valid"]["confusion"].as_array().expect("confusion");
    assert_eq!(confusion.len(), 3);
    let png = std::fs::read(dir.join("curves.png")).expect("curves.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The model folder holds the same report.
    let copy = std::fs::read_to_string(project.path().join("artifacts/classic/train_report.json"))
        .expect("train_report.json");
    assert_eq!(
        serde_json::from_str::<Value>(&copy).ok(),
        Some(report.clone())
    );

    let events = read_events(&event_file(&dir));
    assert_eq!(events["file_version"], "brain.Event:2");
    let values = events["values"].as_array().expect("values");
    let at = |tag: &str| -> Vec<(u64, f64)> {
        values
            .iter()
            .filter(|v| v["tag"] == tag)
            .filter_map(|v| Some((v["step"].as_u64()?, v["value"].as_f64()?)))
            .collect()
    };
    let loss = at("train/loss");
    assert_eq!(loss.len(), 1, "{values:?}");
    assert_eq!(loss[0].0, steps);
    assert!(loss[0].1 > 0.0);
    let logged_f1 = at("eval/macro_f1");
    assert_eq!(logged_f1.len(), 1, "{values:?}");
    assert_eq!(logged_f1[0].0, steps);
    assert!((logged_f1[0].1 - f1).abs() < 1e-5, "{logged_f1:?} vs {f1}");
    for tag in [
        "eval/accuracy",
        "eval/f1/Clear Reply",
        "eval/f1/Clear Non-Reply",
        "eval/f1/Ambivalent",
    ] {
        assert_eq!(at(tag).len(), 1, "{tag} missing: {values:?}");
    }
    let config = values
        .iter()
        .find(|v| v["tag"] == "config/models.yaml")
        .expect("the entry as text");
    assert_eq!(config["plugin"], "text");
    let text = config["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("name: classic") && text.contains("train_file"),
        "{text}"
    );
}

/// Poll `url` until `ok` accepts its JSON.
fn poll_json(url: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < timeout {
        if let Ok(response) = client.get(url).send() {
            if let Ok(value) = response.json::<Value>() {
                if ok(&value) {
                    return value;
                }
                last = value;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{url} never gave what was expected; last: {last}");
}

#[test]
fn the_host_runs_tensorboard_for_the_run_and_takes_it_down_on_exit() {
    // A taken port is a clear message, and training goes on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let project = classic_project(&format!(
        "{{auto_start: true, port: {taken_port}, host: 127.0.0.1, logdir: runs}}"
    ));
    let out = project.host(&["train", "--model", "classic", "--no-tensorboard"]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(
        !log.contains("TensorBoard:") && !log.contains("TensorBoard not started"),
        "--no-tensorboard: {log}"
    );
    std::fs::remove_dir_all(project.path().join("runs")).expect("clear runs/");
    let out = host_command(
        &project.config(),
        project.path(),
        &["train", "--model", "classic"],
    )
    .env_remove(NO_TENSORBOARD)
    .output()
    .expect("run clarity-host");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains(&format!("port {taken_port} on 127.0.0.1 is already in use")),
        "{log}"
    );
    drop(taken);
    let run = run_dir(&project, "classic");
    let run_name = format!(
        "classic/{}",
        run.file_name().unwrap_or_default().to_string_lossy()
    );

    // `serve` with auto_start: TensorBoard comes up on a free port and shows the run. The
    // command line's address wins over the entry's.
    let port = free_port();
    let yaml = std::fs::read_to_string(project.config())
        .expect("models.yaml")
        .replace(&format!("port: {taken_port}"), &format!("port: {port}"))
        .replace("host: 127.0.0.1", "host: 192.0.2.1");
    std::fs::write(project.config(), yaml).expect("models.yaml");
    let mut server = spawn_host_with_tensorboard(
        &project.config(),
        project.path(),
        &["serve", "--port", "0", "--tensorboard-host", "127.0.0.1"],
    );
    let host_pid = server.id();
    let log = CapturedLog::attach(&mut server, |_| {});
    let line = log
        .wait_for(Duration::from_secs(150), |l| {
            l.contains("TensorBoard: http")
        })
        .unwrap_or_else(|| panic!("no TensorBoard line:\n{}", log.text()));
    assert!(
        line.contains(&format!("http://127.0.0.1:{port}/")),
        "{line}"
    );
    let pid: u32 = line
        .split("pid ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(')').trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"));

    let base = format!("http://127.0.0.1:{port}");
    poll_json(
        &format!("{base}/data/runs"),
        Duration::from_secs(60),
        |runs| {
            runs.as_array().is_some_and(|r| {
                r.iter()
                    .any(|name| name.as_str() == Some(run_name.as_str()))
            })
        },
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("report.json")).expect("report.json"),
    )
    .expect("report");
    let url = format!(
        "{base}/data/plugin/scalars/scalars?run={}&tag=eval/macro_f1",
        run_name.replace('/', "%2F")
    );
    let scalars = poll_json(&url, Duration::from_secs(60), |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    });
    // [[wall_time, step, value]]
    let point = &scalars[0];
    assert_eq!(
        point[1].as_u64(),
        report["report"]["steps"].as_u64(),
        "{scalars}"
    );
    let f1 = report["valid"]["macro_f1"].as_f64().unwrap_or(-1.0);
    assert!(
        (point[2].as_f64().unwrap_or(9.0) - f1).abs() < 1e-5,
        "{scalars} vs {f1}"
    );

    let family = group_and_children(pid);
    assert!(family.contains(&pid), "{family:?}");
    clarity_tests::process::signal(host_pid, "TERM");
    let code = clarity_tests::process::wait_exit(&mut server, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", log.text());
    let start = Instant::now();
    let mut left = family.clone();
    while !left.is_empty() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        let alive = clarity_tests::process::processes();
        left.retain(|p| alive.iter().any(|(q, .., state)| q == p && *state != 'Z'));
    }
    assert!(
        left.is_empty(),
        "TensorBoard processes {left:?} (of {family:?}) outlived the host:\n{}",
        log.text()
    );
}
