//! Processes the tests start and watch: the host's output captured line by line, and
//! `/proc` for the processes it starts in turn.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The child's stdout and stderr, appended line by line as they come.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<String>>);

impl CapturedLog {
    /// Start collecting `child`'s piped stdout and stderr; `on_line` sees each line first.
    pub fn attach(child: &mut Child, on_line: impl Fn(&str) + Clone + Send + 'static) -> Self {
        let log = Self::default();
        let streams = [
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let log = log.clone();
            let on_line = on_line.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    on_line(&line);
                    let mut text = log.0.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        log
    }

    /// Everything so far.
    pub fn text(&self) -> String {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Wait until a line satisfies `found`, returning that line.
    pub fn wait_for(&self, timeout: Duration, found: impl Fn(&str) -> bool) -> Option<String> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(line) = self.text().lines().find(|l| found(l)) {
                return Some(line.to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// A started `clarity-host`, killed when dropped so that a test failing half-way leaves no
/// `serve` running behind it (the host's own drop then takes TensorBoard down as well).
pub struct HostProcess(Child);

impl std::ops::Deref for HostProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for HostProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SIGTERM first: the host's shutdown stops the processes it started.
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            if wait_exit(&mut self.0, Duration::from_secs(10)).is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
}

/// `clarity-host <args> --config <config>` started with piped output, in `dir`.
pub fn spawn_host(config: &Path, dir: &Path, args: &[&str]) -> HostProcess {
    spawn(crate::host_command(config, dir, args))
}

/// [`spawn_host`] with TensorBoard allowed (`tensorboard_config` decides).
pub fn spawn_host_with_tensorboard(config: &Path, dir: &Path, args: &[&str]) -> HostProcess {
    let mut command = crate::host_command(config, dir, args);
    command.env_remove(crate::NO_TENSORBOARD);
    spawn(command)
}

fn spawn(mut command: Command) -> HostProcess {
    HostProcess(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start clarity-host"),
    )
}

/// Send `signal` (e.g. "INT") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
    assert!(
        sent.map(|s| s.success()).unwrap_or(false),
        "kill -{signal} {pid} failed"
    );
}

/// Wait up to `timeout` for `child` to exit; its exit code (`None`: still running, or killed
/// by a signal).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `(pid, parent pid, process group, state)` of every process, from `/proc/<pid>/stat`.
pub fn processes() -> Vec<(u32, u32, u32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name is in parentheses and may hold spaces: parse after the last ')'.
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid = fields.next()?.parse().ok()?;
            let pgrp = fields.next()?.parse().ok()?;
            Some((pid, ppid, pgrp, state))
        })
        .collect()
}

/// Live (not zombie) processes in group `pgid` or children of `pid`.
pub fn group_and_children(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(p, ppid, pgrp, state)| {
            *state != 'Z' && (*p == pid || *ppid == pid || *pgrp == pid)
        })
        .map(|(p, ..)| p)
        .collect()
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Resident memory of process `pid` in KiB (VmRSS), 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
