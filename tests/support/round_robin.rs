//! A round-robin TCP proxy on loopback for the scale-out tests: what a Kubernetes Service
//! (kube-proxy) does with its endpoints. Each client connection goes to the next backend in
//! turn (connections are balanced, not requests); a backend that refuses the connection (its
//! process is gone) is skipped and the next one tried, as an endpoint removed from the
//! Service would be. Every forwarded connection is recorded (backend, opened, closed), so a
//! test can tell which were in flight at a given moment.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One forwarded connection, times measured from the proxy's start.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    /// Index of the backend in the list given to [`RoundRobin::start`].
    pub backend: usize,
    /// When the connection to the backend was established.
    pub opened: Duration,
    /// When the backend's first answer bytes arrived (`None`: none yet, or never).
    pub answered: Option<Duration>,
    /// When the backend's side ended (`None`: still open).
    pub closed: Option<Duration>,
}

impl Forwarded {
    /// Whether a request on this connection was waiting for its answer at some point
    /// between `from` and `to` (opened by `to`, not answered before `from`).
    pub fn waiting_during(&self, from: Duration, to: Duration) -> bool {
        self.opened <= to && self.answered.is_none_or(|a| a >= from)
    }
}

struct Shared {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    started: Instant,
    log: Mutex<Vec<Forwarded>>,
    stop: AtomicBool,
}

/// A running proxy; stops accepting when dropped.
pub struct RoundRobin {
    /// The address clients connect to.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl RoundRobin {
    /// Listen on a free loopback port and forward to `backends` in turn.
    pub fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            backends,
            next: AtomicUsize::new(0),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = Arc::clone(&shared);
        let acceptor = std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    let shared = Arc::clone(&accepting);
                    std::thread::spawn(move || forward(&shared, client));
                }
            }
        });
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Time since the proxy started, on the clock of [`Forwarded`].
    pub fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// The instant the clock of [`Forwarded`] counts from.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// Every connection forwarded so far.
    pub fn forwarded(&self) -> Vec<Forwarded> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Connect `client` to the next backend that accepts, then copy both ways until either side
/// ends. With no backend left the client's connection is closed unanswered.
fn forward(shared: &Shared, client: TcpStream) {
    let n = shared.backends.len();
    let first = shared.next.fetch_add(1, Ordering::SeqCst);
    let Some((index, backend)) = (0..n).find_map(|i| {
        let index = (first + i) % n;
        TcpStream::connect_timeout(&shared.backends[index], Duration::from_secs(2))
            .ok()
            .map(|s| (index, s))
    }) else {
        return;
    };
    let slot = {
        let Ok(mut log) = shared.log.lock() else {
            return;
        };
        log.push(Forwarded {
            backend: index,
            opened: shared.started.elapsed(),
            answered: None,
            closed: None,
        });
        log.len() - 1
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (Ok(client_reader), Ok(backend_writer)) = (client.try_clone(), backend.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || pipe(client_reader, backend_writer, |_| {}));
    pipe(backend, client, |n| {
        if let Ok(mut log) = shared.log.lock() {
            if log[slot].answered.is_none() && n > 0 {
                log[slot].answered = Some(shared.started.elapsed());
            }
        }
    });
    if let Ok(mut log) = shared.log.lock() {
        log[slot].closed = Some(shared.started.elapsed());
    }
    let _ = upstream.join();
}

/// Copy `from` into `to` until `from` ends or fails (telling `on_read` each read's size),
/// then end `to`'s write side and `from`'s read side, so the other copy ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream, on_read: impl Fn(usize)) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                on_read(n);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
