//! Ctrl-C during `train`: the plugin checkpoints, nothing half-written is left, the exit
//! says how to resume, and `train --resume` goes on from the checkpoint. SIGTERM during
//! `serve`'s auto-training does the same before the server exits.

use clarity_tests::process::{signal, spawn_host, wait_exit, CapturedLog};
use clarity_tests::Project;
use serde_json::Value;
use std::time::Duration;

const EPOCHS: u64 = 40;
const STEPS_PER_EPOCH: u64 = 8;

fn tiny_project() -> Project {
    let no_saves = "    save_strategy: \"no\"\n    eval_strategy: \"no\"";
    clarity_tests::encoder::tiny_training_project(EPOCHS, no_saves)
}

fn names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigint_checkpoints_leaves_no_model_and_resume_goes_on() {
    let project = tiny_project();
    let mut child = spawn_host(
        &project.config(),
        project.path(),
        &["train", "--model", "tiny"],
    );
    let log = CapturedLog::attach(&mut child, |_| {});
    // A few optimizer steps in (the log line of step 3), ask it to stop.
    log.wait_for(Duration::from_secs(120), |l| l.contains(" step 3/"))
        .unwrap_or_else(|| panic!("training never reached step 3:\n{}", log.text()));
    signal(child.id(), "INT");
    let code = wait_exit(&mut child, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(200));
    let text = log.text();
    assert_eq!(code, Some(130), "{text}");
    assert!(text.contains("interrupted at step"), "{text}");
    assert!(
        text.contains("clarity-host train --model tiny --resume"),
        "{text}"
    );

    let step = only_a_checkpoint_is_left(&project, &text);
    let artifacts = project.path().join("artifacts");
    assert!(
        text.contains(&format!("interrupted at step {step}")),
        "{text}"
    );

    // --resume picks the run up at that step and finishes it.
    let out = project.host(&["train", "--model", "tiny", "--resume"]);
    let resumed = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{resumed}");
    assert!(
        resumed.contains(&format!("resuming at step {step}")),
        "{resumed}"
    );
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(artifacts.join("tiny/train_report.json")).expect("report"),
    )
    .expect("report json");
    assert_eq!(report["report"]["steps"], EPOCHS * STEPS_PER_EPOCH);
    assert_eq!(report["history"]["start_step"], step);
    let first_step = report["history"]["steps"][0]["step"].as_u64();
    assert_eq!(first_step, Some(step + 1), "{report}");
    assert!(artifacts.join("tiny/model.onnx").is_file());
}

#[test]
fn sigterm_during_serve_auto_training_checkpoints_and_leaves_no_model() {
    let project = tiny_project();
    let mut child = spawn_host(
        &project.config(),
        project.path(),
        &["serve", "--host", "127.0.0.1", "--port", "0"],
    );
    let log = CapturedLog::attach(&mut child, |_| {});
    log.wait_for(Duration::from_secs(120), |l| l.contains(" step 3/"))
        .unwrap_or_else(|| panic!("auto-training never reached step 3:\n{}", log.text()));
    signal(child.id(), "TERM");
    let code = wait_exit(&mut child, Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(200));
    let text = log.text();
    // A clean stop: the server drained, the training wrote its checkpoint first.
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("interrupted at step"), "{text}");
    only_a_checkpoint_is_left(&project, &text);
}

/// A checkpoint past step 3, and nothing else: no model files, no staging folder. Returns
/// the checkpoint's step.
fn only_a_checkpoint_is_left(project: &Project, log: &str) -> u64 {
    let artifacts = project.path().join("artifacts");
    assert_eq!(names(&artifacts.join("tiny")), vec!["checkpoints"], "{log}");
    assert!(
        names(&artifacts).iter().all(|n| n == "tiny"),
        "leftovers: {:?}",
        names(&artifacts)
    );
    let checkpoints = names(&artifacts.join("tiny/checkpoints"));
    let step = checkpoints
        .iter()
        .filter_map(|n| n.strip_prefix("step-")?.parse::<u64>().ok())
        .max()
        .unwrap_or_else(|| panic!("no checkpoint: {checkpoints:?}\n{log}"));
    assert!((3..EPOCHS * STEPS_PER_EPOCH).contains(&step), "{step}");
    step
}
