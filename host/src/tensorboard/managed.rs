//! TensorBoard for the length of a command: started on its own thread so training or serving
//! begins at once, stopped (with its children) when the handle is dropped.

use super::process::TensorBoard;
use crate::cli::TensorboardArgs;
use crate::config::Config;
use clarity_sdk::config::TensorboardConfig;
use clarity_sdk::ModelSpec;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// A TensorBoard owned by this command; drop it to stop it.
pub struct Managed {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Managed {
    /// Start TensorBoard for `config` on a thread that also owns it until the handle drops.
    /// (The thread lives as long as TensorBoard: Linux sends the parent-death signal when the
    /// spawning *thread* exits.) Failures are logged; the command goes on.
    pub fn spawn(config: TensorboardConfig, logdir: PathBuf, project_dir: PathBuf) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tensorboard".into())
            .spawn(move || {
                let abort = || !matches!(stopped.try_recv(), Err(mpsc::TryRecvError::Empty));
                match TensorBoard::start(&config, &logdir, &project_dir, &abort) {
                    Ok(Some(board)) => {
                        tracing::info!(
                            "TensorBoard: {} (logdir {}, pid {})",
                            board.url(),
                            logdir.display(),
                            board.pid()
                        );
                        // Until the handle drops (or its sender does).
                        while let Err(RecvTimeoutError::Timeout) =
                            stopped.recv_timeout(Duration::from_secs(3600))
                        {
                        }
                        drop(board);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("TensorBoard not started: {e}"),
                }
            });
        match thread {
            Ok(thread) => Self {
                stop: Some(stop),
                thread: Some(thread),
            },
            Err(e) => {
                tracing::warn!("TensorBoard not started: cannot start a thread: {e}");
                Self {
                    stop: None,
                    thread: None,
                }
            }
        }
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One TensorBoard per distinct `host:port` among `specs` that ask for `auto_start`, unless
/// the command line says otherwise. Two entries wanting the same port with different log
/// folders cannot share it: the first wins.
pub fn start_for(config: &Config, specs: &[&ModelSpec], args: &TensorboardArgs) -> Vec<Managed> {
    let mut started: Vec<(String, u16, PathBuf)> = Vec::new();
    let mut boards = Vec::new();
    if args.no_tensorboard {
        return boards;
    }
    for spec in specs {
        if !spec.tensorboard_config.auto_start {
            continue;
        }
        let mut tb = spec.tensorboard_config.clone();
        if let Some(host) = args.tensorboard_host.as_ref().filter(|h| !h.is_empty()) {
            tb.host.clone_from(host);
        }
        let logdir = config.tensorboard_logdir(spec);
        if let Some((_, _, first)) = started
            .iter()
            .find(|(host, port, _)| *host == tb.host && *port == tb.port)
        {
            if *first != logdir {
                tracing::warn!(
                    "model `{}`: TensorBoard on {}:{} already shows {}; its runs in {} are not shown",
                    spec.name,
                    tb.host,
                    tb.port,
                    first.display(),
                    logdir.display()
                );
            }
            continue;
        }
        started.push((tb.host.clone(), tb.port, logdir.clone()));
        boards.push(Managed::spawn(tb, logdir, config.dir.clone()));
    }
    boards
}
