//! A `tensorboard` process the host starts, waits for and stops, with its children.
//!
//! TensorBoard runs in its own process group: a terminal's Ctrl-C reaches only the host,
//! which decides when TensorBoard goes, and stopping the group also stops the data server
//! TensorBoard starts. On Linux it also gets SIGTERM if the host dies without cleaning up.

use clarity_sdk::config::TensorboardConfig;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Environment variable naming the `tensorboard` executable to run.
pub const TENSORBOARD_ENV: &str = "CLARITY_TENSORBOARD";

/// How long TensorBoard gets to answer on its port: it imports a lot of Python.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long it gets to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Process groups of running TensorBoards, for [`stop_all`] on a hard exit.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Why TensorBoard did not start. Training goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "port {port} on {host} is already in use (another TensorBoard?): set \
         tensorboard_config.port to a free one"
    )]
    PortInUse { host: String, port: u16 },
    #[error(
        "no `tensorboard` to run ({tried}): run scripts/setup.sh, which installs it into .venv, \
         `pip install tensorboard`, or point {TENSORBOARD_ENV} at one"
    )]
    NotInstalled { tried: String },
    #[error("cannot start {}: {cause}", program.display())]
    Spawn {
        program: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write its log {}: {cause}", path.display())]
    Log {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("tensorboard exited at start ({status}); its log {} ends:\n{tail}", log.display())]
    Exited {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("tensorboard did not answer on {url} within {} s; its log is {}", START_TIMEOUT.as_secs(), log.display())]
    Timeout { url: String, log: PathBuf },
}

/// A running TensorBoard; dropping it stops it and its children.
#[derive(Debug)]
pub struct TensorBoard {
    child: Child,
    url: String,
}

impl TensorBoard {
    /// Start `tensorboard --logdir <logdir>` on `config.host:config.port` and wait until it
    /// answers HTTP. `project_dir` is where `.venv/bin/tensorboard` is looked for first.
    /// `Ok(None)`: `abort` turned true while waiting, and it was stopped again.
    pub fn start(
        config: &TensorboardConfig,
        logdir: &Path,
        project_dir: &Path,
        abort: &dyn Fn() -> bool,
    ) -> Result<Option<Self>, StartError> {
        let host = config.host.clone();
        let port = config.port;
        // Binding first gives a clear message; TensorBoard's own would be a Python traceback.
        if TcpListener::bind((host.as_str(), port)).is_err() {
            return Err(StartError::PortInUse { host, port });
        }
        let program = find_program(project_dir, &|name| std::env::var_os(name))?;
        std::fs::create_dir_all(logdir).map_err(|cause| StartError::Log {
            path: logdir.to_path_buf(),
            cause,
        })?;
        let log_path = logdir.join("tensorboard.log");
        let log = File::create(&log_path).map_err(|cause| StartError::Log {
            path: log_path.clone(),
            cause,
        })?;
        let log_err = log.try_clone().map_err(|cause| StartError::Log {
            path: log_path.clone(),
            cause,
        })?;
        let mut command = Command::new(&program);
        command
            .arg("--logdir")
            .arg(logdir)
            .args(["--host", &host, "--port", &port.to_string()])
            // Only the newest few hundred points per tag would be shown otherwise.
            .args(["--samples_per_plugin", "scalars=10000"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        own_process_group(&mut command);
        let child = command.spawn().map_err(|cause| StartError::Spawn {
            program: program.clone(),
            cause,
        })?;
        let pgid = child.id() as i32;
        lock_running().push(pgid);
        let url = format!("http://{}:{port}/", display_host(&host));
        let mut board = Self { child, url };
        match board.wait_until_answering(&host, port, &log_path, abort)? {
            true => Ok(Some(board)),
            false => Ok(None),
        }
    }

    /// Where it serves.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Ok(false)`: aborted.
    fn wait_until_answering(
        &mut self,
        host: &str,
        port: u16,
        log: &Path,
        abort: &dyn Fn() -> bool,
    ) -> Result<bool, StartError> {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if abort() {
                return Ok(false);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartError::Exited {
                    status: status.to_string(),
                    log: log.to_path_buf(),
                    tail: tail(log, 15),
                });
            }
            if answers_http(host, port) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(StartError::Timeout {
            url: self.url.clone(),
            log: log.to_path_buf(),
        })
    }

    /// SIGTERM to the group, SIGKILL to whatever is left after [`STOP_TIMEOUT`].
    fn stop(&mut self) {
        let pgid = self.child.id() as i32;
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The group outlives its leader while children remain: make sure they are gone too.
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        let _ = self.child.wait();
        lock_running().retain(|p| *p != pgid);
    }
}

impl Drop for TensorBoard {
    fn drop(&mut self) {
        self.stop();
        tracing::info!("TensorBoard stopped");
    }
}

/// Kill every TensorBoard this process started, for exits that skip destructors (a second
/// Ctrl-C).
pub fn stop_all() {
    let groups = std::mem::take(&mut *lock_running());
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

fn lock_running() -> std::sync::MutexGuard<'static, Vec<i32>> {
    RUNNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `$CLARITY_TENSORBOARD`, then `<project>/.venv/bin/tensorboard`, then `tensorboard` on PATH.
fn find_program(
    project_dir: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, StartError> {
    let mut tried = Vec::new();
    if let Some(path) = env(TENSORBOARD_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        tried.push(format!("{TENSORBOARD_ENV}={}", path.display()));
    }
    let venv = project_dir.join(".venv/bin/tensorboard");
    if venv.is_file() {
        return Ok(venv);
    }
    tried.push(venv.display().to_string());
    if let Some(paths) = env("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("tensorboard");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    tried.push("PATH".into());
    Err(StartError::NotInstalled {
        tried: tried.join(", "),
    })
}

#[cfg(unix)]
fn own_process_group(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
        });
    }
}

/// `GET /` answers with an HTTP status line.
fn answers_http(host: &str, port: u16) -> bool {
    let Ok(mut addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    let Some(addr) = addrs.next() else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.0\r\nHost: {host}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/")
}

/// Hosts that bind every interface are reached on loopback.
fn display_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" | "" => "localhost",
        other => other,
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_is_a_clear_error_before_anything_starts() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = TensorboardConfig {
            auto_start: true,
            port: taken.local_addr().unwrap().port(),
            host: "127.0.0.1".into(),
            logdir: "runs".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let err = TensorBoard::start(&config, &dir.path().join("runs"), dir.path(), &|| false)
            .unwrap_err();
        assert!(matches!(err, StartError::PortInUse { .. }), "{err}");
        assert!(err.to_string().contains("tensorboard_config.port"), "{err}");
    }

    #[test]
    fn the_variable_comes_first_then_the_project_venv_then_path() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join(".venv/bin");
        std::fs::create_dir_all(&venv).unwrap();
        std::fs::write(venv.join("tensorboard"), "#!/bin/sh\n").unwrap();
        let other = dir.path().join("other-tensorboard");
        std::fs::write(&other, "#!/bin/sh\n").unwrap();
        let on_path = tempfile::tempdir().unwrap();
        std::fs::write(on_path.path().join("tensorboard"), "#!/bin/sh\n").unwrap();
        let path_var = on_path.path().as_os_str().to_owned();
        let env = |var: Option<&Path>| {
            let var = var.map(|p| p.as_os_str().to_owned());
            let path_var = path_var.clone();
            move |name: &str| match name {
                TENSORBOARD_ENV => var.clone(),
                "PATH" => Some(path_var.clone()),
                _ => None,
            }
        };
        assert_eq!(find_program(dir.path(), &env(Some(&other))).unwrap(), other);
        assert_eq!(
            find_program(dir.path(), &env(None)).unwrap(),
            venv.join("tensorboard")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            find_program(empty.path(), &env(None)).unwrap(),
            on_path.path().join("tensorboard")
        );
        let err = find_program(empty.path(), &|_| None).unwrap_err();
        assert!(err.to_string().contains(".venv/bin/tensorboard"), "{err}");
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    }
}
