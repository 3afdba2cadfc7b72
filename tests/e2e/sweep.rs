//! `train --sweep`: two trials of the classic plugin, each a TensorBoard run that a real
//! `tensorboard` lists as an HParams session with its settings and score, and the better
//! trial kept as the model.

use clarity_tests::encoder::venv;
use clarity_tests::process::free_port;
use clarity_tests::Project;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The swept key: one n-gram in the vocabulary against twenty thousand.
const KEY: &str = "model_config.options.max_features";

/// Folders in `dir` whose name starts with `prefix`.
fn folders(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    out.sort();
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A `tensorboard` on `logdir`, killed when dropped.
struct TensorBoard {
    child: Child,
    url: String,
}

impl TensorBoard {
    fn start(logdir: &Path) -> Self {
        let port = free_port();
        let program = venv().join("bin/tensorboard");
        let child = Command::new(&program)
            .arg("--logdir")
            .arg(logdir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup.sh)", program.display()));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// POST `body` to the HParams plugin's `route` until `ok` accepts the answer.
    fn hparams(&self, route: &str, body: &Value, ok: impl Fn(&Value) -> bool) -> Value {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let url = format!("{}/data/plugin/hparams/{route}", self.url);
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < Duration::from_secs(90) {
            if let Ok(response) = client.post(&url).json(body).send() {
                if let Ok(value) = response.json::<Value>() {
                    if ok(&value) {
                        return value;
                    }
                    last = value;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{url} never answered as expected; last: {last}");
    }
}

impl Drop for TensorBoard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_sweep_of_two_trials_writes_two_hparams_runs_and_keeps_the_better() {
    let project = Project::classic("");
    let stdout = project.host_ok(&[
        "train",
        "--model",
        "classic",
        "--no-tensorboard",
        "--sweep",
        &format!("{KEY}=1,20000"),
    ]);
    assert!(stdout.contains("Sweep of `classic`: 2 trials"), "{stdout}");
    assert_eq!(stdout.matches("<- kept").count(), 1, "{stdout}");

    // Two trial runs in one sweep folder, each with its own report; the table beside them.
    let sweeps = folders(&project.path().join("runs/classic"), "sweep-");
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    let trials = folders(&sweeps[0], "");
    assert_eq!(trials.len(), 2, "{trials:?}");
    let table = read_json(&sweeps[0].join("sweep.json"));
    let scores: Vec<f64> = table["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .map(|t| t["macro_f1"].as_f64().expect("each trial scored"))
        .collect();
    assert_eq!(scores.len(), 2);
    assert!(
        (scores[0] - scores[1]).abs() > 0.05,
        "the trials should differ: {scores:?}"
    );
    for (dir, score) in trials.iter().zip(&scores) {
        let report = read_json(&dir.join("report.json"));
        let f1 = report["valid"]["macro_f1"].as_f64().expect("macro_f1");
        assert!(
            (f1 - score).abs() < 1e-9,
            "{}: {f1} vs {score}",
            dir.display()
        );
    }

    // The better trial is the model: its scores, its settings, no trial folders left.
    let best = if scores[0] > scores[1] { 0 } else { 1 };
    assert_eq!(table["best"], best, "{table}");
    let artifacts = project.path().join("artifacts");
    let metrics = read_json(&artifacts.join("classic/metrics.json"));
    let kept = metrics["valid"]["macro_f1"]
        .as_f64()
        .expect("kept macro_f1");
    assert!((kept - scores[best]).abs() < 1e-9, "{kept} vs {scores:?}");
    let entry = read_json(&artifacts.join("classic/model_spec.json"));
    let value = [1, 20000][best];
    assert_eq!(entry["model_config"]["options"]["max_features"], value);
    assert!(entry["output_dir"].is_null(), "{entry}");
    assert!(artifacts.join("classic/sweep.json").is_file());
    assert!(folders(&artifacts, ".classic.sweep-").is_empty());
    assert!(
        stdout.contains(&format!("{KEY}: {value}")),
        "the models.yaml keys to keep: {stdout}"
    );

    // TensorBoard's HParams plugin sees two sessions with their setting and final score.
    let tensorboard = TensorBoard::start(&project.path().join("runs"));
    let request = json!({
        "startIndex": 0,
        "sliceSize": 10,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    });
    let groups = tensorboard.hparams("session_groups", &request, |v| {
        v["sessionGroups"].as_array().is_some_and(|g| g.len() == 2)
    });
    for group in groups["sessionGroups"].as_array().expect("groups") {
        let setting = group["hparams"][KEY].as_f64().expect("the swept key");
        let trial = if setting == 1.0 { 0 } else { 1 };
        let final_f1 = group["metricValues"]
            .as_array()
            .expect("metric values")
            .iter()
            .find(|m| m["name"]["tag"] == "final/macro_f1")
            .and_then(|m| m["value"].as_f64())
            .unwrap_or_else(|| panic!("no final/macro_f1 in {group}"));
        assert!(
            (final_f1 - scores[trial]).abs() < 1e-4,
            "{final_f1} vs {scores:?}"
        );
        let status = &group["sessions"][0]["status"];
        assert_eq!(status, "STATUS_SUCCESS", "{group}");
    }
    let experiment = tensorboard.hparams("experiment", &json!({}), |v| {
        v["hparamInfos"].as_array().is_some_and(|h| !h.is_empty())
    });
    assert_eq!(experiment["hparamInfos"][0]["name"], KEY, "{experiment}");
}

#[test]
fn a_bad_sweep_says_what_is_wrong_and_trains_nothing() {
    let project = Project::classic("");
    let cases = [
        (
            vec!["--sweep", "learning_rat=1e-4"],
            "did you mean `learning_rate`",
        ),
        (
            vec!["--sweep", "num_epochs=two"],
            "training_config.num_epochs",
        ),
        (
            vec![
                "--sweep",
                "seed=1,2,3",
                "--sweep",
                "batch_size=1,2",
                "--max-trials",
                "4",
            ],
            "6 trials, more than --max-trials 4",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["train", "--model", "classic", "--no-tensorboard"];
        args.extend(extra.iter().copied());
        let out = project.host(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert!(!project.path().join("artifacts/classic").exists());
}
