//! A round-robin TCP proxy on loopback for the scale-out tests: what a Kubernetes Service
//! (kube-proxy) does with its endpoints. Each client connection goes to the next backend in
//! turn (connections are balanced, not requests); a backend that refuses the connection (its
//! process is gone) is skipped and the next one tried, as an endpoint removed from the
//! Service would be. Every forwarded connection is recorded (the client's address, the
//! backend, when it opened and answered, the HTTP status it answered), so a test can tell
//! which backend each client request went to and what became of it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One forwarded connection, times measured from the proxy's start.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    /// The client's end of the connection (its local address), which identifies the request.
    pub client: SocketAddr,
    /// Index of the backend in the list given to [`RoundRobin::start`].
    pub backend: usize,
    /// When the connection to the backend was established.
    pub opened: Duration,
    /// When the backend's first answer bytes arrived (`None`: none yet, or never).
    pub answered: Option<Duration>,
    /// The HTTP status of the backend's answer (`None`: no status line arrived).
    pub status: Option<u16>,
    /// When the backend's side ended (`None`: still open).
    pub closed: Option<Duration>,
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
    let Ok(peer) = client.peer_addr() else {
        return;
    };
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
            client: peer,
            backend: index,
            opened: shared.started.elapsed(),
            answered: None,
            status: None,
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
    // The status line is in the first bytes of the answer ("HTTP/1.1 200 OK").
    let mut head = Vec::new();
    pipe(backend, client, |bytes| {
        let missing = 12usize.saturating_sub(head.len());
        head.extend_from_slice(&bytes[..bytes.len().min(missing)]);
        if let Ok(mut log) = shared.log.lock() {
            let entry = &mut log[slot];
            entry
                .answered
                .get_or_insert_with(|| shared.started.elapsed());
            if entry.status.is_none() {
                entry.status = status_code(&head);
            }
        }
    });
    if let Ok(mut log) = shared.log.lock() {
        log[slot].closed = Some(shared.started.elapsed());
    }
    let _ = upstream.join();
}

/// The status code of an HTTP/1.x status line's first bytes, once all three digits are in.
pub fn status_code(head: &[u8]) -> Option<u16> {
    let digits = head.get(9..12)?;
    (head.starts_with(b"HTTP/1.") && head.get(8) == Some(&b' '))
        .then(|| std::str::from_utf8(digits).ok()?.parse().ok())
        .flatten()
}

/// Copy `from` into `to` until `from` ends or fails (showing `on_read` each read's bytes),
/// then end `to`'s write side and `from`'s read side, so the other copy ends too.
fn pipe(mut from: TcpStream, mut to: TcpStream, mut on_read: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                on_read(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
