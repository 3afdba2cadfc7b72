//! Faults during `train`: `kill -9` at random moments, a write that hits a file-size limit, a
//! read-only model folder. Whatever happens, no half-written model or checkpoint is left where
//! it would be loaded, the previous model keeps loading and serving, and `train --resume`
//! goes on from the newest whole checkpoint to the same final weights, bit for bit, as a run
//! that was never interrupted.

use clarity_tests::process::{spawn_host, CapturedLog, HostProcess};
use clarity_tests::{host_command, Project};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STEPS_PER_EPOCH: u64 = 8;
const ROUTE: &str = "/classify/tiny";

/// A tiny encoder project. `training` is the `training_config` keys besides the shared ones.
fn tiny_project(epochs: u64, training: &str) -> Project {
    clarity_tests::encoder::tiny_training_project(epochs, training)
}

/// Checkpoints every 3 steps (at most 2 kept), an evaluation and best-model bookkeeping every
/// epoch, and the last weights exported (so the final model holds every step of the run).
const CHECKPOINTING: &str = r#"    save_strategy: steps
    save_steps: 3
    save_total_limit: 2
    eval_strategy: steps
    eval_steps: 8
    load_best_model_at_end: false"#;

const NO_CHECKPOINTS: &str = r#"    save_strategy: "no"
    eval_strategy: "no""#;

/// A small seeded xorshift64* generator: the kill times are reproducible from the seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[lo, hi)` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }
}

fn model_dir(project: &Project) -> PathBuf {
    project.path().join("artifacts/tiny")
}

fn checkpoint_dir(project: &Project) -> PathBuf {
    model_dir(project).join("checkpoints")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn visible(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn hidden(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// The model folder's files (not its checkpoints), by name.
fn model_files(project: &Project) -> BTreeMap<String, Vec<u8>> {
    visible(&model_dir(project))
        .into_iter()
        .filter(|n| n != "checkpoints")
        .map(|n| {
            let bytes = std::fs::read(model_dir(project).join(&n)).expect("read model file");
            (n, bytes)
        })
        .collect()
}

/// Whether a safetensors file is whole: its header parses and its tensors end exactly where
/// the file ends.
fn safetensors_whole(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{}: shorter than a header", path.display()))?;
    let n = u64::from_le_bytes(len) as usize;
    let header: Value = bytes
        .get(8..8 + n)
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(|| format!("{}: header cut short or not JSON", path.display()))?;
    let end = header
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, t)| t["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0) as usize;
    if bytes.len() != 8 + n + end {
        return Err(format!(
            "{}: {} bytes, the header promises {}",
            path.display(),
            bytes.len(),
            8 + n + end
        ));
    }
    Ok(())
}

/// Every visible checkpoint is whole (its three files, the state naming its step, the
/// tensors complete), and so is the best-weights file; returns the newest step.
fn checkpoints_are_whole(project: &Project) -> Option<u64> {
    let dir = checkpoint_dir(project);
    let mut newest = None;
    for name in visible(&dir) {
        let path = dir.join(&name);
        if name == "best.safetensors" {
            safetensors_whole(&path).unwrap_or_else(|e| panic!("half-written best weights: {e}"));
            continue;
        }
        let step: u64 = name
            .strip_prefix("step-")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a visible entry that is not a checkpoint: {name}"));
        assert_eq!(
            names(&path),
            ["optimizer.safetensors", "state.json", "weights.safetensors"],
            "checkpoint {name} is incomplete"
        );
        let state: Value =
            serde_json::from_slice(&std::fs::read(path.join("state.json")).expect("read state"))
                .unwrap_or_else(|e| panic!("{name}/state.json is not JSON: {e}"));
        assert_eq!(state["step"].as_u64(), Some(step), "{name}: {state}");
        for file in ["weights.safetensors", "optimizer.safetensors"] {
            safetensors_whole(&path.join(file))
                .unwrap_or_else(|e| panic!("half-written checkpoint: {e}"));
        }
        newest = newest.max(Some(step));
    }
    newest
}

/// The trained model answers `clarity-host test` with one of its labels.
fn model_loads(project: &Project) {
    let out = project.host(&[
        "test",
        "--model",
        "tiny",
        "--question",
        "Will you raise taxes?",
        "--context",
        "Q: Will you?\nA: No.",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the model does not load:\n{stderr}");
    let prediction: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`test` printed no JSON ({e}):\n{stderr}"));
    assert!(prediction["clarity_label"].is_string(), "{prediction}");
}

/// The model serves: a real server on loopback answers a POST with scores.
fn model_serves(project: &Project) {
    let mut server = project.serve(&[]);
    server.wait_ready(Duration::from_secs(120));
    let (status, body) = server.post_json(
        ROUTE,
        &json!({"question": "Will you raise taxes?", "context": "Q: Will you?\nA: No."}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scores"].as_object().map(|s| s.len()),
        Some(3),
        "{body}"
    );
    server.terminate(Duration::from_secs(30));
}

/// Train to completion, returning the wall time and the time to the first optimizer step
/// (start-up: loading the plugin, the data and the pretrained weights).
fn train_to_completion(project: &Project, args: &[&str]) -> (Duration, Duration, String) {
    let started = Instant::now();
    let first_step = Arc::new(Mutex::new(None));
    let mut child = spawn_host(&project.config(), project.path(), args);
    let seen = first_step.clone();
    let log = CapturedLog::attach(&mut child, move |line| {
        if line.contains(" step 1/") {
            let mut first = seen.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| started.elapsed());
        }
    });
    let status = child.wait().expect("wait for train");
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let text = log.text();
    assert!(status.success(), "train {args:?} failed:\n{text}");
    let startup = first_step
        .lock()
        .map(|f| f.unwrap_or(took / 4))
        .unwrap_or(took / 4);
    (took, startup, text)
}

/// The step `train --resume` said it resumed at, `Some(None)` for "no checkpoint", `None`
/// when it was killed before it said.
fn resumed_at(log: &str) -> Option<Option<u64>> {
    if log.contains("to resume from: starting from the pretrained weights") {
        return Some(None);
    }
    let line = log.lines().find(|l| l.contains("resuming from "))?;
    let step = line.split("(step ").nth(1)?.split(',').next()?.trim();
    Some(Some(step.parse().ok()?))
}

/// What one round did.
enum Ended {
    Killed,
    Finished,
}

/// `rounds` kills at seeded random moments of `train` / `train --resume`, each followed by
/// the checks; then a last `--resume` runs to the end and must export the very weights of an
/// uninterrupted run.
fn kill_loop(rounds: usize, seed: u64, epochs: u64) {
    let project = tiny_project(epochs, CHECKPOINTING);
    let total_steps = epochs * STEPS_PER_EPOCH;

    // The previous good model, which is also the uninterrupted run to compare with.
    let (full, startup, _) = train_to_completion(&project, &["train", "--model", "tiny"]);
    let good = model_files(&project);
    let reference = good["model.safetensors"].clone();
    model_loads(&project);
    println!(
        "uninterrupted run: {:.1} s ({:.1} s to the first step), {total_steps} steps",
        full.as_secs_f64(),
        startup.as_secs_f64()
    );

    // Kill times: from early start-up to a few checkpoints' worth of training past it, so the
    // rounds together cover about the whole run (and some reach its export and commit).
    let training = full.saturating_sub(startup).as_millis() as u64;
    let lo = (startup.as_millis() as u64) / 5;
    let hi = startup.as_millis() as u64 + (training * 5 / 2) / rounds as u64;
    let mut rng = XorShift(seed.max(1));
    let mut resume = false;
    let mut log_rounds = Vec::new();
    let mut resumes_checked = 0;
    for round in 1..=rounds {
        let newest_before = checkpoints_are_whole(&project);
        // Unfinished checkpoint folders a kill left (the plugin clears and reports these).
        let stale_before: Vec<String> = hidden(&checkpoint_dir(&project))
            .into_iter()
            .filter(|n| n.starts_with(".step-") || n.starts_with(".best"))
            .collect();
        let args: &[&str] = if resume {
            &["train", "--model", "tiny", "--resume"]
        } else {
            &["train", "--model", "tiny"]
        };
        let kill_at = Duration::from_millis(rng.millis(lo, hi));
        let started = Instant::now();
        let mut child = spawn_host(&project.config(), project.path(), args);
        let log = CapturedLog::attach(&mut child, |_| {});
        let ended = kill_at_or_exit(&mut child, started + kill_at);
        std::thread::sleep(Duration::from_millis(100));
        let text = log.text();

        // The run continued from the newest whole checkpoint there was (if it got to say).
        if resume {
            if let Some(at) = resumed_at(&text) {
                assert_eq!(
                    at, newest_before,
                    "round {round} resumed elsewhere:\n{text}"
                );
                resumes_checked += 1;
                if !stale_before.is_empty() {
                    assert!(
                        text.contains("unfinished checkpoint folder(s) of a run that was killed"),
                        "round {round}: stale {stale_before:?} not cleared:\n{text}"
                    );
                }
            }
        }
        let what = match ended {
            Ended::Killed => "killed",
            Ended::Finished => "finished before the kill",
        };
        let newest = checkpoints_are_whole(&project);
        nothing_half_written(&project, &good);
        model_loads(&project);
        let line = format!(
            "round {round:2}: {} {what} at {:6.2} s; newest whole checkpoint step {} (was {}); leftovers {:?}",
            args[1..].join(" "),
            kill_at.as_secs_f64(),
            newest.map_or("-".into(), |s| s.to_string()),
            newest_before.map_or("-".into(), |s| s.to_string()),
            hidden(&project.path().join("artifacts"))
                .into_iter()
                .chain(hidden(&checkpoint_dir(&project)))
                .collect::<Vec<_>>(),
        );
        println!("{line}");
        log_rounds.push(line);
        match ended {
            Ended::Killed => resume = true,
            Ended::Finished => {
                // A resumed run that reached the end exports the uninterrupted run's weights.
                assert!(
                    text.contains("Training finished"),
                    "round {round} exited early:\n{text}"
                );
                assert_eq!(
                    model_files(&project)["model.safetensors"],
                    reference,
                    "round {round}: a run that finished exported other weights:\n{text}"
                );
                resume = false;
            }
        }
    }

    // Let the last run finish: same weights as the uninterrupted run, bit for bit.
    let newest_before = checkpoints_are_whole(&project);
    let args: &[&str] = if resume {
        &["train", "--model", "tiny", "--resume"]
    } else {
        &["train", "--model", "tiny"]
    };
    let (_, _, text) = train_to_completion(&project, args);
    if resume {
        assert_eq!(resumed_at(&text), Some(newest_before), "{text}");
    }
    let finished = model_files(&project);
    assert_eq!(
        finished["model.safetensors"].len(),
        reference.len(),
        "{text}"
    );
    assert!(
        finished["model.safetensors"] == reference,
        "the resumed run's weights differ from the uninterrupted run's:\n{text}"
    );
    assert_eq!(
        finished["model.onnx"], good["model.onnx"],
        "model.onnx differs"
    );
    let report: Value =
        serde_json::from_slice(&finished["train_report.json"]).expect("train_report.json");
    assert_eq!(report["report"]["steps"], total_steps, "{report}");
    // A finished run leaves nothing hidden behind.
    assert_eq!(
        hidden(&project.path().join("artifacts")),
        Vec::<String>::new()
    );
    assert_eq!(hidden(&model_dir(&project)), Vec::<String>::new());
    assert_eq!(hidden(&checkpoint_dir(&project)), Vec::<String>::new());
    model_serves(&project);
    println!(
        "kill -9: {rounds} rounds survived (seed {seed}, kill times {:.2}-{:.2} s, {resumes_checked} resumes checked); the resumed run's model.safetensors is bitwise identical to the uninterrupted run's",
        lo as f64 / 1000.0,
        hi as f64 / 1000.0
    );
}

/// SIGKILL `child` at `deadline` unless it exits first.
fn kill_at_or_exit(child: &mut HostProcess, deadline: Instant) -> Ended {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Ended::Finished;
        }
        if Instant::now() >= deadline {
            child.kill().expect("kill -9");
            let _ = child.wait();
            return Ended::Killed;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// After a kill: the project holds the model folder and nothing else visible, the model folder
/// holds a whole model (the previous one, or one a finished run committed, which has the same
/// weights), and its checkpoints are whole.
fn nothing_half_written(project: &Project, good: &BTreeMap<String, Vec<u8>>) {
    let artifacts = project.path().join("artifacts");
    assert_eq!(visible(&artifacts), ["tiny"], "{:?}", names(&artifacts));
    // A kill right after a commit's swap leaves the checkpoints in the hidden retired folder
    // for a moment; the next run moves them back (host/src/artifacts.rs).
    let checkpoints_aside = hidden(&artifacts)
        .iter()
        .any(|n| artifacts.join(n).join("checkpoints").is_dir());
    let mut expected: Vec<String> = good.keys().cloned().collect();
    if !checkpoints_aside || model_dir(project).join("checkpoints").is_dir() {
        expected.push("checkpoints".to_string());
    }
    expected.sort();
    assert_eq!(
        visible(&model_dir(project)),
        expected,
        "the model folder changed"
    );
    let now = model_files(project);
    for file in [
        "model.safetensors",
        "model.onnx",
        "tokenizer.json",
        "config.json",
    ] {
        assert!(now[file] == good[file], "{file} changed or is half-written");
    }
    for (name, bytes) in &now {
        if name.ends_with(".json") {
            serde_json::from_slice::<Value>(bytes)
                .unwrap_or_else(|e| panic!("{name} is half-written: {e}"));
        }
    }
    checkpoints_are_whole(project);
}

#[test]
fn kill_9_during_train_three_times_then_resume_to_the_same_weights() {
    kill_loop(3, 18, 4);
}

/// The long version: `CLARITY_KILL_ROUNDS` kills (20 by default), `CLARITY_KILL_SEED`.
#[test]
#[ignore = "about 20 kill -9 rounds; run with --ignored"]
fn kill_9_during_train_many_times_then_resume_to_the_same_weights() {
    let rounds = std::env::var("CLARITY_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("CLARITY_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026);
    kill_loop(rounds, seed, 4 * rounds as u64 / 3 + 4);
}

/// `clarity-host train` whose files may grow to at most `max_bytes` each, with SIGXFSZ
/// ignored so a write past the limit fails with EFBIG instead of killing the process.
fn train_with_file_limit(project: &Project, max_bytes: u64) -> Output {
    let mut command = host_command(
        &project.config(),
        project.path(),
        &["train", "--model", "tiny"],
    );
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max_bytes,
                rlim_max: max_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    command.output().expect("run clarity-host")
}

#[test]
fn a_write_past_the_file_size_limit_fails_clearly_and_keeps_the_previous_model() {
    // The model weights (~4 MB) pass the limit; tokenizer.json (~0.7 MB) does not.
    const LIMIT: u64 = 1 << 20;
    for (case, training, failing) in [
        ("model save", NO_CHECKPOINTS, ".tiny.staging-"),
        (
            "checkpoint save",
            CHECKPOINTING,
            "checkpoints/.step-00000003.tmp",
        ),
    ] {
        let project = tiny_project(1, training);
        train_to_completion(&project, &["train", "--model", "tiny"]);
        let good = model_files(&project);

        let out = train_with_file_limit(&project, LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{case}: train passed the limit:\n{stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
        for expected in [
            "training of `tiny` failed",
            "File too large",
            "ulimit -f",
            failing,
            &format!(
                "the previous model in {} is unchanged",
                model_dir(&project).display()
            ),
        ] {
            assert!(
                stderr.contains(expected),
                "{case}: no `{expected}` in:\n{stderr}"
            );
        }
        println!(
            "{case}: {}",
            stderr
                .lines()
                .find(|l| l.contains("File too large"))
                .unwrap_or_default()
        );
        assert_eq!(
            model_files(&project),
            good,
            "{case}: the previous model changed"
        );
        assert_eq!(names(&project.path().join("artifacts")), ["tiny"], "{case}");
        assert_eq!(
            hidden(&checkpoint_dir(&project)),
            Vec::<String>::new(),
            "{case}"
        );
        // A fresh run clears the old checkpoints first; none of them was left half-written.
        checkpoints_are_whole(&project);
        model_serves(&project);
    }
}

/// Run `command` as a user bound by file permissions. As root that means without
/// CAP_DAC_OVERRIDE (dropped from the bounding set before exec, so the host never has it);
/// `Err` says why it cannot be done here.
fn bound_by_permissions(command: &mut Command) -> Result<(), String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    // Whether this process may drop capabilities at all (CAP_SETPCAP), tried in a child.
    let probe = Command::new("true").pre_exec_drop().status();
    match probe {
        Ok(s) if s.success() => {
            command.pre_exec_drop();
            Ok(())
        }
        other => Err(format!(
            "running as root without CAP_SETPCAP, cannot drop CAP_DAC_OVERRIDE ({other:?})"
        )),
    }
}

trait DropDacOverride {
    fn pre_exec_drop(&mut self) -> &mut Self;
}

impl DropDacOverride for Command {
    fn pre_exec_drop(&mut self) -> &mut Self {
        const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            self.pre_exec(|| {
                if libc::prctl(libc::PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_read_only_output_dir_fails_before_training_and_keeps_the_previous_model() {
    let project = tiny_project(1, NO_CHECKPOINTS);
    train_to_completion(&project, &["train", "--model", "tiny"]);
    let good = model_files(&project);
    let dir = model_dir(&project);

    // The model folder read-only: its parent still takes the staging folder, so only an
    // up-front check stops a run that could never be committed.
    let mut command = host_command(
        &project.config(),
        project.path(),
        &["train", "--model", "tiny"],
    );
    match bound_by_permissions(&mut command) {
        Ok(()) => {
            let folders = [dir.clone(), dir.join("checkpoints")];
            let folders: Vec<&PathBuf> = folders.iter().filter(|d| d.is_dir()).collect();
            folders.iter().for_each(|d| set_mode(d, 0o555));
            let started = Instant::now();
            let out = command.output().expect("run clarity-host");
            folders.iter().for_each(|d| set_mode(d, 0o755));
            let stderr = String::from_utf8_lossy(&out.stderr);
            println!(
                "read-only output_dir: exit {:?} after {:.1} s: {}",
                out.status.code(),
                started.elapsed().as_secs_f64(),
                stderr
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or_default()
            );
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            for expected in [
                format!(
                    "model `tiny` cannot be saved to {} (output_dir)",
                    dir.display()
                ),
                "nothing was trained".to_string(),
                "Permission denied".to_string(),
                "this user lacks the permission".to_string(),
            ] {
                assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
            }
            assert!(
                !stderr.contains("Training started"),
                "it trained first:\n{stderr}"
            );
        }
        Err(why) => println!("skipping the read-only model folder case: {why}"),
    }
    assert_eq!(model_files(&project), good, "the previous model changed");
    assert_eq!(names(&project.path().join("artifacts")), ["tiny"]);

    // An output_dir below a file: no permission bits involved, root fails the same way.
    let blocker = project.path().join("not-a-folder");
    std::fs::write(&blocker, "a file").expect("write");
    let yaml = std::fs::read_to_string(project.config()).expect("read models.yaml");
    let elsewhere = yaml.replace(
        "  route: /classify/tiny\n",
        &format!(
            "  route: /classify/tiny\n  output_dir: {}/sub/model\n",
            blocker.display()
        ),
    );
    std::fs::write(project.config(), elsewhere).expect("write models.yaml");
    let out = project.host(&["train", "--model", "tiny"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Not a directory"), "{stderr}");
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
    assert!(!stderr.contains("Training started"), "{stderr}");
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    assert_eq!(model_files(&project), good, "the previous model changed");
    model_serves(&project);
}
