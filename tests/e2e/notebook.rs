//! `notebooks/training.ipynb` executed end to end by nbclient (a real Jupyter kernel), on the
//! sample data with the release binary: every cell must run without an error.

use clarity_tests::workspace_root;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Jupyter's pieces, in a venv of their own under `target/` (not the project's `.venv`).
const PACKAGES: &[&str] = &[
    "nbclient==0.10.2",
    "nbformat==5.10.4",
    "ipykernel==6.29.5",
    "matplotlib==3.10.0",
];

const EXECUTE: &str = r#"
import sys, nbformat, nbclient
notebook, out, workdir = sys.argv[1:4]
nb = nbformat.read(notebook, as_version=4)
client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                 resources={"metadata": {"path": workdir}})
try:
    client.execute()
finally:
    nbformat.write(nb, out)
"#;

fn jupyter_venv() -> PathBuf {
    let venv = workspace_root().join("target/notebook-venv");
    let python = venv.join("bin/python");
    if !python.is_file() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv");
        assert!(made.success(), "cannot create {}", venv.display());
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES)
            .status()
            .expect("pip");
        assert!(installed.success(), "cannot install {PACKAGES:?} from PyPI");
    }
    python
}

fn text_outputs(executed: &Path) -> String {
    let nb: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(executed).expect("executed notebook"))
            .expect("notebook JSON");
    let mut text = String::new();
    for cell in nb["cells"].as_array().into_iter().flatten() {
        for output in cell["outputs"].as_array().into_iter().flatten() {
            assert_ne!(output["output_type"], "error", "a cell failed: {output}");
            for part in [&output["text"], &output["data"]["text/plain"]] {
                match part {
                    serde_json::Value::String(s) => text.push_str(s),
                    serde_json::Value::Array(lines) => lines
                        .iter()
                        .filter_map(|l| l.as_str())
                        .for_each(|l| text.push_str(l)),
                    _ => {}
                }
            }
        }
    }
    text
}

#[test]
#[ignore = "installs Jupyter from PyPI into target/notebook-venv and needs the release build \
            (cargo build --release --workspace); about 3 minutes"]
fn the_training_notebook_runs_end_to_end() {
    let root = workspace_root();
    assert!(
        root.join("target/release/clarity-host").is_file(),
        "build first: cargo build --release --workspace"
    );
    let python = jupyter_venv();
    let work = tempfile::tempdir().expect("workdir");
    let out_dir = root.join("target/tmp/notebook");
    std::fs::create_dir_all(&out_dir).expect("output folder");
    let executed = out_dir.join("training.executed.ipynb");
    let started = std::time::Instant::now();
    let run = Command::new(&python)
        .args(["-c", EXECUTE])
        .arg(root.join("notebooks/training.ipynb"))
        .arg(&executed)
        .arg(work.path())
        .env("CLARITY_REPO", &root)
        .env("CLARITY_NOTEBOOK_WORKDIR", work.path())
        .env("CLARITY_NOTEBOOK_HEADLESS", "1")
        .env("MPLBACKEND", "Agg")
        .output()
        .expect("run nbclient");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        run.status.success(),
        "the notebook failed ({} kept):\n{}",
        executed.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = text_outputs(&executed);
    for expected in [
        "repository:",
        "CPU:",
        "test macro-F1:",
        "/classify/classic ->",
        "/classify/minilm ->",
        "server stopped, exit code 0",
        "logged steps",
    ] {
        assert!(
            text.contains(expected),
            "no `{expected}` in the outputs:\n{text}"
        );
    }
    println!("executed in {seconds:.0} s: {}", executed.display());
}
