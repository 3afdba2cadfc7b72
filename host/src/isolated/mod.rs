//! Serving a model from a child process of its own (`serving_config.isolation: process`).
//!
//! In the server's process a plugin can take everything down: an abort, a stack overflow, a
//! segfault, or an allocation that fails (Rust aborts on it). Here the plugin runs in
//! `clarity-host model-process` instead, behind [`IsolatedBackend`], which the worker uses
//! like any other backend. When that process dies, the request it was running fails (500),
//! the reason goes to the log, and the next request starts a fresh process. With
//! `memory_limit_mb` the process gets an `RLIMIT_DATA`, so runaway memory ends in that
//! process too. A hung call is ended by killing the process (its [`Classify::stopper`]).
//!
//! The price is a copy of each batch through a pipe (JSON, a few microseconds per pair) and
//! a second copy of the plugin's code in memory.

pub mod child;
pub mod protocol;

use crate::backend::Classify;
use clarity_sdk::{Error as SdkError, ModelInfo, ModelSpec, TextPair};
use protocol::{to_wire, FromChild, Hello, ToChild};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// How to start a model's process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `models.yaml`.
    pub config_path: PathBuf,
    /// Its folder.
    pub config_dir: PathBuf,
    /// The model's entry.
    pub spec: ModelSpec,
    /// Inference threads for the model (`None`: all cores).
    pub threads: Option<usize>,
}

impl Launch {
    fn model(&self) -> &str {
        &self.spec.name
    }

    fn memory_limit_mb(&self) -> Option<u64> {
        self.spec.serving_config.memory_limit_mb
    }
}

/// Why a model's process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The process could not be spawned or talked to.
    #[error("cannot start the model's process: {0}")]
    Spawn(String),
    /// It started but could not load the model.
    #[error("{0}")]
    Load(SdkError),
}

/// A running model process.
struct Running {
    child: Child,
    requests: ChildStdin,
    replies: BufReader<ChildStdout>,
}

/// A [`Classify`] backed by a model's process, started again after it dies.
pub struct IsolatedBackend {
    launch: Launch,
    running: Mutex<Option<Running>>,
    /// The process's id (0: none), readable while a call holds `running`.
    pid: Arc<AtomicU32>,
}

impl IsolatedBackend {
    /// Start the model's process and wait until it has loaded the model.
    pub fn start(launch: Launch) -> Result<(Self, ModelInfo), StartError> {
        let pid = Arc::new(AtomicU32::new(0));
        let (running, info) = spawn(&launch, &pid)?;
        let backend = Self {
            launch,
            running: Mutex::new(Some(running)),
            pid,
        };
        Ok((backend, info))
    }

    /// Send `request` and read its reply, starting the process first if it died before.
    fn call(&self, request: &ToChild) -> Result<FromChild, SdkError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_none() {
            tracing::info!(
                "Model `{}`: starting its process again",
                self.launch.model()
            );
            let (fresh, _) = spawn(&self.launch, &self.pid).map_err(|e| match e {
                StartError::Load(e) => e,
                other => SdkError::other(other.to_string()),
            })?;
            *running = Some(fresh);
        }
        let Some(process) = running.as_mut() else {
            return Err(SdkError::other("the model's process is not running"));
        };
        match exchange(process, request) {
            Ok(reply) => Ok(reply),
            Err(io) => {
                // The process is gone (or talks nonsense): say how it ended, and start a
                // fresh one on the next request.
                let mut gone = running.take();
                let ended = gone
                    .as_mut()
                    .map(|p| ended(&mut p.child))
                    .unwrap_or_default();
                self.pid.store(0, Ordering::SeqCst);
                let why = format!(
                    "the model's process {ended} ({io}){}; it starts again on the next request",
                    limit_hint(self.launch.memory_limit_mb())
                );
                tracing::error!("Model `{}`: {why}", self.launch.model());
                Err(SdkError::other(why))
            }
        }
    }
}

impl Classify for IsolatedBackend {
    fn classify(&self, pairs: &[TextPair]) -> Result<Vec<Vec<f32>>, SdkError> {
        match self.call(&ToChild::Classify {
            pairs: to_wire(pairs),
        })? {
            FromChild::Scores { scores } => Ok(scores),
            FromChild::Failed { error } => Err(error.into()),
            other => Err(unexpected(&other)),
        }
    }

    fn token_counts(&self, pairs: &[TextPair]) -> Result<Option<Vec<usize>>, SdkError> {
        match self.call(&ToChild::TokenCounts {
            pairs: to_wire(pairs),
        })? {
            FromChild::TokenCounts { counts } => Ok(counts),
            FromChild::Failed { error } => Err(error.into()),
            other => Err(unexpected(&other)),
        }
    }

    /// Kills the process: a call stuck in it then returns (with an error).
    fn stopper(&self) -> Option<crate::backend::Stopper> {
        let pid = Arc::clone(&self.pid);
        Some(Arc::new(move || kill(pid.load(Ordering::SeqCst))))
    }
}

impl Drop for IsolatedBackend {
    fn drop(&mut self) {
        let running = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut process) = running.take() {
            // Closing stdin ends the process's loop; kill it if it does not end at once.
            drop(process.requests);
            if !matches!(process.child.try_wait(), Ok(Some(_))) {
                let _ = process.child.kill();
            }
            let _ = process.child.wait();
        }
    }
}

fn unexpected(reply: &FromChild) -> SdkError {
    SdkError::other(format!(
        "the model's process answered out of turn: {reply:?}"
    ))
}

/// Write one request line and read one reply line.
fn exchange(process: &mut Running, request: &ToChild) -> Result<FromChild, String> {
    let line = serde_json::to_string(request).map_err(|e| e.to_string())?;
    writeln!(process.requests, "{line}")
        .and_then(|()| process.requests.flush())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    read_reply(&mut process.replies)
}

fn read_reply(replies: &mut BufReader<ChildStdout>) -> Result<FromChild, String> {
    let mut line = String::new();
    match replies.read_line(&mut line) {
        Ok(0) => Err("no reply".into()),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("unreadable reply: {e}")),
        Err(e) => Err(format!("cannot read the reply: {e}")),
    }
}

/// Start `clarity-host model-process` for `launch` and wait for it to load.
fn spawn(launch: &Launch, pid: &AtomicU32) -> Result<(Running, ModelInfo), StartError> {
    let exe = std::env::current_exe()
        .map_err(|e| StartError::Spawn(format!("cannot find clarity-host itself: {e}")))?;
    let mut command = Command::new(exe);
    command
        .args(["model-process", "--model", launch.model()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    limit_memory(&mut command, launch.memory_limit_mb());
    end_with_the_server(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| StartError::Spawn(e.to_string()))?;
    pid.store(child.id(), Ordering::SeqCst);
    if let Some(stderr) = child.stderr.take() {
        forward_log(launch.model(), stderr);
    }
    let (Some(mut requests), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        return Err(StartError::Spawn("its pipes are missing".into()));
    };
    let hello = Hello {
        config_path: launch.config_path.clone(),
        config_dir: launch.config_dir.clone(),
        spec: launch.spec.clone(),
        threads: launch.threads,
    };
    let sent = serde_json::to_string(&hello)
        .map_err(|e| e.to_string())
        .and_then(|line| writeln!(requests, "{line}").map_err(|e| e.to_string()));
    if let Err(e) = sent {
        let _ = child.kill();
        return Err(StartError::Spawn(format!("cannot send it the model: {e}")));
    }
    let mut replies = BufReader::new(stdout);
    match read_reply(&mut replies) {
        Ok(FromChild::Ready { info }) => Ok((
            Running {
                child,
                requests,
                replies,
            },
            info,
        )),
        Ok(FromChild::LoadFailed { error }) => {
            let _ = child.wait();
            Err(StartError::Load(error.into()))
        }
        Ok(other) => {
            let _ = child.kill();
            Err(StartError::Spawn(format!(
                "it answered out of turn: {other:?}"
            )))
        }
        Err(e) => {
            let how = ended(&mut child);
            Err(StartError::Spawn(format!(
                "it {how} before it was ready ({e}){}",
                limit_hint(launch.memory_limit_mb())
            )))
        }
    }
}

/// Copy the process's log lines into the server's log, at their own level.
fn forward_log(model: &str, stderr: std::process::ChildStderr) {
    let model = model.to_string();
    let spawned = std::thread::Builder::new()
        .name(format!("log-{model}"))
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let level = line.split_whitespace().next().unwrap_or("");
                match level {
                    "ERROR" => tracing::error!("[{model} process] {line}"),
                    "WARN" => tracing::warn!("[{model} process] {line}"),
                    "DEBUG" | "TRACE" => tracing::debug!("[{model} process] {line}"),
                    _ => tracing::info!("[{model} process] {line}"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot copy the model process's log: {e}");
    }
}

/// How the process ended: "was killed by SIGABRT", "exited with status 1", ...
fn ended(child: &mut Child) -> String {
    // Give a dying process a moment to be reaped.
    for _ in 0..50 {
        match child.try_wait() {
            Ok(Some(status)) => return describe(status),
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(status) => describe(status),
        Err(_) => "stopped answering".into(),
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = nix::sys::signal::Signal::try_from(signal)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {signal}"));
            return format!("was killed by {name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code}"),
        None => "ended".into(),
    }
}

/// What to suspect when a process with a memory limit dies.
fn limit_hint(limit_mb: Option<u64>) -> String {
    match limit_mb {
        Some(mb) => format!(
            " (an allocation beyond serving_config.memory_limit_mb = {mb} aborts the process)"
        ),
        None => String::new(),
    }
}

/// Kill process `pid` (0: none).
fn kill(pid: u32) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// The model's process dies with the server, even one stuck in a call (whose stdin closing
/// would go unnoticed).
fn end_with_the_server(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches nothing of the parent's.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Cap the process's data segment at `limit_mb` MiB.
#[cfg(unix)]
fn limit_memory(command: &mut Command, limit_mb: Option<u64>) {
    use std::os::unix::process::CommandExt;
    let Some(mb) = limit_mb else { return };
    let bytes = mb.saturating_mul(1024 * 1024);
    // SAFETY: setrlimit is async-signal-safe and touches nothing of the parent's.
    unsafe {
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, bytes, bytes)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(unix))]
fn limit_memory(_command: &mut Command, limit_mb: Option<u64>) {
    if limit_mb.is_some() {
        tracing::warn!("serving_config.memory_limit_mb is only enforced on Unix");
    }
}
