//! Helpers for the end-to-end tests: where the built binaries are, temporary projects with
//! their own `models.yaml`, and a real `clarity-host serve` process on a free loopback port.
//!
//! The binaries and plugin libraries must be built first (`cargo build --workspace`, which
//! `scripts/test.sh` runs before `cargo test`).

pub mod cdp;
pub mod encoder;
pub mod hf_classifier;
pub mod process;
pub mod pth;
pub mod round_robin;

use process::CapturedLog;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Folder of the built binaries: the profile these tests were built with (`target/debug`, or
/// `target/release` under `cargo test --release`), unless `CLARITY_TEST_PROFILE` says otherwise.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let built_with = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let profile = std::env::var("CLARITY_TEST_PROFILE").unwrap_or_else(|_| built_with.into());
    target.join(profile)
}

/// Set by [`host_command`] so no test starts TensorBoard unless it removes the variable.
pub const NO_TENSORBOARD: &str = "CLARITY_NO_TENSORBOARD";

/// `clarity-host <args> --config <config>` run in `dir`, with info logging, no stdin, no
/// inherited plugin folder, and the TensorBoard that `scripts/setup.sh` installed (the
/// projects live in temporary folders without a `.venv` of their own). The Hugging Face hub
/// is a closed loopback port with its cache in `dir`: no test asks the real hub or uses the
/// machine's cache (a test with a fake hub sets `HF_ENDPOINT` after this). TensorBoard is off
/// through [`NO_TENSORBOARD`].
pub fn host_command(config: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(host_bin());
    for var in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "ALL_PROXY",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "all_proxy",
        "https_proxy",
        "http_proxy",
    ] {
        command.env_remove(var);
    }
    command
        .env("HF_ENDPOINT", "http://127.0.0.1:1")
        .env("HF_HOME", dir.join(".hf-home"))
        .args(args)
        .arg("--config")
        .arg(config)
        .current_dir(dir)
        .env("CLARITY_LOG_LEVEL", "info")
        .env_remove("CLARITY_PLUGIN_DIR")
        // `tensorboard_config.auto_start` defaults to true: tests that want TensorBoard
        // remove this variable; the rest must not start one per run.
        .env(NO_TENSORBOARD, "true")
        .env(
            "CLARITY_TENSORBOARD",
            workspace_root().join(".venv/bin/tensorboard"),
        )
        .stdin(Stdio::null());
    command
}

/// A built artifact, with a clear failure when it is missing.
pub fn built(file: &str) -> PathBuf {
    let path = bin_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`, or run scripts/test.sh)",
        path.display()
    );
    path
}

/// The `clarity-host` binary.
pub fn host_bin() -> PathBuf {
    built(&format!("clarity-host{}", std::env::consts::EXE_SUFFIX))
}

/// A plugin library by crate name, e.g. `clarity-classic-example`.
pub fn plugin_lib(crate_name: &str) -> PathBuf {
    built(&format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// The shipped sample data folder.
pub fn sample_data() -> PathBuf {
    workspace_root().join("data/sample")
}

/// A temporary project folder holding a `models.yaml`.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose `models.yaml` is `yaml`. `{data}` in it becomes the sample data folder.
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let text = yaml.replace("{data}", &sample_data().display().to_string());
        std::fs::write(dir.path().join("models.yaml"), text).expect("write models.yaml");
        // The ML plugins find ONNX Runtime and pip-installed models in the project's .venv.
        let venv = workspace_root().join(".venv");
        if venv.is_dir() {
            link_dir(&venv, &dir.path().join(".venv"));
        }
        Self { dir }
    }

    /// One `classic` model (the fast classic-example plugin) at `/classify/classic` on the
    /// sample data, with the three Clarity labels; `extra` is more keys of that entry
    /// (indented two spaces), e.g. `"  tensorboard_config: {auto_start: false}\n"`.
    pub fn classic(extra: &str) -> Self {
        Self::new(&format!(
            r#"
- name: classic
  type: classic
  plugin: {}
  route: /classify/classic
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: {{data}}/train.json
    valid_file: {{data}}/valid.json
{extra}"#,
            plugin_lib("clarity-classic-example").display()
        ))
    }

    /// The project folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Its `models.yaml`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("models.yaml")
    }

    /// Run `clarity-host <args> --config <models.yaml>` to completion.
    pub fn host(&self, args: &[&str]) -> Output {
        host_command(&self.config(), self.path(), args)
            .output()
            .expect("run clarity-host")
    }

    /// Run the host and require success, returning stdout.
    pub fn host_ok(&self, args: &[&str]) -> String {
        let out = self.host(args);
        assert!(
            out.status.success(),
            "clarity-host {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start `clarity-host serve` on a free loopback port.
    pub fn serve(&self, extra: &[&str]) -> Server {
        Server::start(self, extra, &[])
    }

    /// [`Project::serve`] with extra environment variables.
    pub fn serve_with_env(&self, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start(self, extra, env)
    }
}

/// A running `clarity-host serve`; killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: CapturedLog,
    client: reqwest::blocking::Client,
}

impl Server {
    fn start(project: &Project, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut args = vec!["serve", "--host", "127.0.0.1", "--port", "0"];
        args.extend_from_slice(extra);
        let mut command = host_command(&project.config(), project.path(), &args);
        command.envs(env.iter().copied());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clarity-host serve");
        let log = CapturedLog::attach(&mut child, |_| {});
        let listening = log.wait_for(Duration::from_secs(60), |l| l.contains("Listening on "));
        let Some(base) =
            listening.and_then(|l| Some(l.split("Listening on ").nth(1)?.trim().to_string()))
        else {
            let _ = child.kill();
            panic!(
                "clarity-host serve did not start listening within 60 s; log:\n{}",
                log.text()
            );
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        Self {
            child,
            base,
            log,
            client,
        }
    }

    /// Send SIGTERM and wait (up to `timeout`) for the process to exit; its exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        process::signal(self.child.id(), "TERM");
        process::wait_exit(&mut self.child, timeout)
    }

    /// SIGKILL, and reap the process. `wait` returns only once every thread has exited, so
    /// its sockets are closed by then: a thread-group leader shows as a zombie while its other
    /// threads still hold the listening socket, which keeps accepting connections meanwhile.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// GET `path`: status and JSON body.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .expect("GET");
        decode(resp)
    }

    /// POST JSON to `path`: status and JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .expect("POST");
        decode(resp)
    }

    /// POST every body to `path` at once, one thread each (so the server batches them):
    /// the statuses, in the order of `bodies`.
    pub fn post_all_at_once(&self, path: &str, bodies: Vec<serde_json::Value>) -> Vec<u16> {
        let url = format!("{}{path}", self.base);
        let handles: Vec<_> = bodies
            .into_iter()
            .map(|body| {
                let url = url.clone();
                std::thread::spawn(move || {
                    reqwest::blocking::Client::new()
                        .post(url)
                        .json(&body)
                        .send()
                        .expect("POST")
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("POST thread"))
            .collect()
    }

    /// POST raw bytes with a content type (or none) to `path`.
    pub fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.client.post(format!("{}{path}", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        decode(req.send().expect("POST"))
    }

    /// Wait until `GET /ready` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let (status, body) = self.get("/ready");
            if status == 200 {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "not ready after {timeout:?}: {body}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until model `name` leaves the loading/training states; returns its `GET /` entry.
    pub fn wait_settled(&self, name: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let (_, index) = self.get("/");
            let entry = index["models"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["name"] == name).cloned())
                .unwrap_or_default();
            let status = entry["status"].as_str().unwrap_or("");
            if status == "ready" || status == "failed" {
                return entry;
            }
            assert!(
                start.elapsed() < timeout,
                "model {name} still {status} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn decode(resp: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| serde_json::Value::String(format!("<not JSON> {text}")));
    (status, body)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Assert `body` is the API's error shape and return its kind.
pub fn error_kind(body: &serde_json::Value) -> String {
    assert!(body["error"].is_string(), "not an error body: {body}");
    body["kind"].as_str().unwrap_or_default().to_string()
}

/// Build the template plugin against a copy of the SDK whose version is bumped to 0.99.0,
/// so loading it must fail the SDK version check. Built once per test run (offline, with
/// its own target folder under `target/`, reused across runs).
pub fn build_mismatched_plugin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let work = root.join("target/sdk-mismatch");
            let src = work.join("src");
            let _ = std::fs::remove_dir_all(&src);
            copy_dir(&root.join("sdk/src"), &src.join("sdk/src"));
            copy_dir(&root.join("plugins/classic-template/src"), &src.join("plugin/src"));
            std::fs::write(
                src.join("Cargo.toml"),
                "[workspace]\nresolver = \"2\"\nmembers = [\"sdk\", \"plugin\"]\n",
            )
            .expect("write workspace");
            std::fs::write(
                src.join("sdk/Cargo.toml"),
                "[package]\nname = \"clarity-sdk\"\nversion = \"0.99.0\"\nedition = \"2021\"\n\n\
                 [dependencies]\nabi_stable = { version = \"0.11.3\", default-features = false }\n\
                 serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\nthiserror = \"2\"\n",
            )
            .expect("write sdk manifest");
            std::fs::write(
                src.join("plugin/Cargo.toml"),
                "[package]\nname = \"clarity-classic-template\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nclarity-sdk = { path = \"../sdk\" }\n\
                 serde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n",
            )
            .expect("write plugin manifest");
            // Same dependency versions as the workspace, resolved without the network.
            std::fs::copy(root.join("Cargo.lock"), src.join("Cargo.lock")).expect("copy Cargo.lock");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--offline", "--quiet", "-p", "clarity-classic-template"])
                .current_dir(&src)
                .env("CARGO_TARGET_DIR", work.join("target"))
                .status()
                .expect("run cargo");
            assert!(status.success(), "building the SDK-mismatch plugin failed");
            work.join("target/debug").join(format!(
                "{}clarity_classic_template{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            ))
        })
        .clone()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy file");
        }
    }
}

#[cfg(unix)]
fn link_dir(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("link .venv");
}

#[cfg(not(unix))]
fn link_dir(target: &Path, link: &Path) {
    std::os::windows::fs::symlink_dir(target, link).expect("link .venv");
}

/// `AMD EPYC 7B13, 2 cores, avx2 fma` for the line printed under every measured table: the
/// same machine type differs by CPU (AVX-512 or not), and figures mean little without it.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let model = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let flags = field("flags").unwrap_or_default();
    let has: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{model}, {cores} cores, {}", has.join(" "))
}

/// The repository's `models.yaml` in a fresh project, its `data/sample/` paths pointing at the
/// workspace's sample data and each `(prefix, folder)` of `data` (such as `data/qevasion/`)
/// at that folder.
pub fn shipped_project(data: &[(&str, &Path)]) -> Project {
    let root = workspace_root();
    let mut text = std::fs::read_to_string(root.join("models.yaml")).expect("models.yaml");
    for (prefix, folder) in data {
        text = text.replace(prefix, &format!("{}/", folder.display()));
    }
    let text = text.replace("data/sample/", &format!("{}/", sample_data().display()));
    let project = Project::new("");
    std::fs::write(project.config(), text).expect("write models.yaml");
    project
}
