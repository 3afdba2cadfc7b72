//! What users of the Python Clarity bring unchanged: its loguru `logging.yaml`, `train` and
//! `test` without `--model`, `train --tensorboard`, and `test`'s interactive prompt on a
//! terminal (driven here through a real pseudo-terminal).

use clarity_tests::{host_command, plugin_lib, Project, NO_TENSORBOARD};
use rexpect::process::WaitStatus;
use std::path::Path;
use std::process::{Output, Stdio};

/// A classic-example project on tiny data written here, whose first entry is disabled, so
/// "the first enabled model" is the second one.
fn project(tensorboard: &str) -> Project {
    let project = Project::new(&format!(
        r#"
- name: spare
  type: classic
  enabled: false
  plugin: {plugin}
- name: classic
  type: classic
  plugin: {plugin}
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: train.json
    valid_file: valid.json
  tensorboard_config: {tensorboard}
"#,
        plugin = plugin_lib("clarity-classic-example").display(),
    ));
    write_data(project.path());
    project
}

/// Made-up pairs, a few per label.
fn write_data(dir: &Path) {
    let answers = [
        ("Clear Reply", "Yes. I will sign it tomorrow morning."),
        (
            "Clear Reply",
            "Yes, we will raise it to fifteen dollars next year.",
        ),
        (
            "Clear Non-Reply",
            "I don't have those numbers in front of me.",
        ),
        ("Clear Non-Reply", "I cannot comment on that today."),
        (
            "Ambivalent",
            "Well, there are many sides to this, and we are looking at all of them.",
        ),
        (
            "Ambivalent",
            "It depends on what the committee finds, we will see.",
        ),
    ];
    let records = |offset: usize| -> serde_json::Value {
        (0..12)
            .map(|i| {
                let (label, answer) = answers[(i + offset) % answers.len()];
                let question = format!("Will you act on issue number {i}?");
                serde_json::json!({
                    "question": question,
                    "context": format!("Q: {question}\nA: {answer}"),
                    "clarity_label": label,
                })
            })
            .collect()
    };
    std::fs::write(dir.join("train.json"), records(0).to_string()).expect("train.json");
    std::fs::write(dir.join("valid.json"), records(1).to_string()).expect("valid.json");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// `2026-12-06 15:30:00`.
fn is_timestamp(s: &str) -> bool {
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

/// The original's logging.yaml, byte for byte but for `colorize`, and a rotated file sink.
fn python_logging_yaml(colorize: bool) -> String {
    format!(
        r#"#================================== Description ========================================
# Configuration file for the loguru python logging library.
#=======================================================================================

handlers:
  - sink: "sys.stdout"
    level: "DEBUG"
    format: "{{time:YYYY-MM-DD HH:mm:ss}} | <level>{{level: <8}}</level> | {{message}}"
    colorize: {colorize}
  - sink: "logs/clarity.log"
    level: "DEBUG"
    format: "{{time:YYYY-MM-DD HH:mm:ss.SSS}} | {{level: <8}} | {{name}}:{{line}} - {{message}}"
    rotation: "300 B"
    retention: 2"#
    )
}

#[test]
fn the_python_logging_yaml_and_the_first_enabled_model() {
    let project = project("{auto_start: false}");
    for colorize in [true, false] {
        std::fs::write(
            project.path().join("logging.yaml"),
            python_logging_yaml(colorize),
        )
        .expect("logging.yaml");
        let out = ok(project.host(&["train"]));
        let stdout = text(&out.stdout);
        let line = stdout
            .lines()
            .find(|l| l.ends_with("Using first enabled model: classic"))
            .unwrap_or_else(|| panic!("no model line on stdout:\n{stdout}"));
        let (time, rest) = line.split_at(19.min(line.len()));
        assert!(is_timestamp(time), "{line:?}");
        let level = if colorize {
            " | \x1b[1mINFO    \x1b[0m | "
        } else {
            " | INFO     | "
        };
        assert_eq!(
            rest,
            format!("{level}Using first enabled model: classic"),
            "{line:?}"
        );
        if !colorize {
            assert!(!stdout.contains('\x1b'), "colorize: false\n{stdout}");
        }
        assert!(text(&out.stderr).is_empty(), "sink is sys.stdout");
    }

    // The file sink: rotated at 300 bytes, the newest two rotated files kept, loguru's
    // naming (`clarity.<time>.log`), every line in the file's own format.
    let logs = project.path().join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .expect("logs/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    let mut host_lines = 0;
    assert_eq!(names[2], "clarity.log");
    for name in &names {
        let body = std::fs::read_to_string(logs.join(name)).expect("log file");
        assert!(!body.is_empty(), "{name}");
        let lines: Vec<&str> = body.lines().collect();
        assert!(body.len() <= 300 || lines.len() == 1, "{name}: {body}");
        for line in lines {
            assert!(is_timestamp(&line[..19]), "{name}: {line}");
            assert!(
                line[19..].contains(" | ") && line.contains(" - "),
                "{name}: {line}"
            );
            host_lines += usize::from(line.contains(" | clarity_host::"));
        }
        if name != "clarity.log" {
            let stamp = &name["clarity.".len()..name.len() - ".log".len()];
            assert_eq!(stamp.len(), "2026-12-06_15-30-00_123456".len(), "{name}");
        }
    }
    assert!(
        host_lines > 0,
        "{{name}} is the target, e.g. clarity_host::training"
    );
}

#[test]
fn an_unknown_loguru_field_is_an_error_naming_it_and_the_file() {
    let project = project("{auto_start: false}");
    std::fs::write(
        project.path().join("logging.yaml"),
        "handlers:\n  - sink: sys.stderr\n    format: \"{time} | {foo} | {message}\"\n",
    )
    .expect("logging.yaml");
    let out = project.host(&["list"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    // The handler's line and column, and the field within it.
    assert!(stderr.contains("logging.yaml:2:5: "), "{stderr}");
    assert!(
        stderr.contains("handlers[0].format: unknown loguru field `{foo}`"),
        "{stderr}"
    );
}

#[test]
fn no_enabled_model_is_a_clear_error() {
    let project = Project::new(&format!(
        "- name: off\n  type: classic\n  enabled: false\n  plugin: {}\n",
        plugin_lib("clarity-classic-example").display()
    ));
    for command in ["train", "test"] {
        let out = project.host(&[command]);
        assert!(!out.status.success());
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("no enabled model") && stderr.contains("--model"),
            "{command}: {stderr}"
        );
    }
}

#[test]
fn train_tensorboard_starts_it_whatever_auto_start_says() {
    // A taken port makes the attempt visible without running TensorBoard.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let project = project(&format!(
        "{{auto_start: false, port: {port}, host: 127.0.0.1}}"
    ));
    let attempt = format!("port {port} on 127.0.0.1 is already in use");
    let out = ok(project.host(&["train"]));
    assert!(
        !text(&out.stderr).contains(&attempt),
        "{}",
        text(&out.stderr)
    );
    let out = ok(host_command(
        &project.config(),
        project.path(),
        &["train", "--tensorboard"],
    )
    .env_remove(NO_TENSORBOARD)
    .output()
    .expect("run clarity-host"));
    assert!(
        text(&out.stderr).contains(&attempt),
        "{}",
        text(&out.stderr)
    );
    let out = project.host(&["train", "--tensorboard", "--no-tensorboard"]);
    assert!(!out.status.success(), "the two flags conflict");
}

#[test]
fn test_on_a_terminal_asks_for_pairs_and_classifies_what_was_typed() {
    let project = project("{auto_start: false}");
    ok(project.host(&["train"]));
    let pairs = [
        (
            "Will you sign the bill?",
            "Q: Will you sign the bill? A: Yes. I will sign it tomorrow morning.",
        ),
        (
            "Do you know the cost?",
            "Q: Do you know the cost? A: I don't have those numbers in front of me.",
        ),
    ];
    // What the one-pair form answers for the same pairs.
    let expected: Vec<serde_json::Value> = pairs
        .iter()
        .map(|(question, context)| {
            let out = ok(project.host(&["test", "--question", question, "--context", context]));
            serde_json::from_slice(&out.stdout).expect("JSON prediction")
        })
        .collect();

    // Different answers, so a prompt that classified anything but what was typed (the
    // original sent the command line's empty pair) would be caught below.
    assert_ne!(expected[0], expected[1]);

    let mut command = host_command(&project.config(), project.path(), &["test"]);
    command.stdin(Stdio::inherit()).env("NO_COLOR", "1");
    let mut session = rexpect::session::spawn_command(command, Some(120_000)).expect("pty");
    session
        .exp_string("Using first enabled model: classic")
        .expect("model line");
    for ((question, context), want) in pairs.iter().zip(&expected) {
        session.exp_string("Question: ").expect("question prompt");
        session.send_line(question).expect("type");
        session.exp_string("Context: ").expect("context prompt");
        session.send_line(context).expect("type");
        session.exp_string("Label: ").expect("an answer");
        let label = session.read_line().expect("label");
        assert_eq!(label.trim(), want["clarity_label"].as_str().unwrap_or("?"));
        session.exp_string("Confidence: ").expect("confidence");
        let confidence = session.read_line().expect("confidence");
        let want_confidence = want["confidence"].as_f64().unwrap_or(-1.0) * 100.0;
        assert_eq!(confidence.trim(), format!("{want_confidence:.2}%"));
        session.exp_string("Scores:").expect("scores");
        let mut shown = Vec::new();
        while shown.len() < 3 {
            let line = session.read_line().expect("a score line");
            if !line.trim().is_empty() {
                shown.push(line.trim().to_owned());
            }
        }
        let mut wanted: Vec<String> = want["scores"]
            .as_object()
            .expect("scores")
            .iter()
            .map(|(label, p)| format!("{label}: {:.2}%", p.as_f64().unwrap_or(-1.0) * 100.0))
            .collect();
        shown.sort();
        wanted.sort();
        assert_eq!(shown, wanted);
    }
    // An empty context asks again; Ctrl-D ends the session.
    session.exp_string("Question: ").expect("question prompt");
    session.send_line("Anything?").expect("type");
    session.exp_string("Context: ").expect("context prompt");
    session.send_line("").expect("type");
    session
        .exp_string("A context is required")
        .expect("refusal");
    session.exp_string("Question: ").expect("question prompt");
    session.send_control('d').expect("Ctrl-D");
    session.exp_eof().expect("the host exits");
    match session.process().wait() {
        Ok(WaitStatus::Exited(_, code)) => assert_eq!(code, 0),
        other => panic!("unexpected end: {other:?}"),
    }
}
