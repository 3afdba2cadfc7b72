//! The accept loop: axum's router on hyper's HTTP/1 connections, with the limits
//! `axum::serve` does not offer. A client that opens a connection and sends its headers
//! slowly, or not at all (slowloris), is cut off after `--header-read-timeout`, so it can
//! neither hold a file descriptor forever nor keep the process alive after SIGTERM; at most
//! `--max-connections` connections are open at once (more wait in the kernel's accept queue
//! until one closes), so idle clients cannot take every file descriptor; requests hyper
//! rejects itself get JSON bodies ([`super::parse_errors`]); and a stop waits at most
//! [`DRAIN_LIMIT`] for connections still open.

use super::parse_errors::JsonParseErrors;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest a stop waits for open connections (requests in flight, keep-alive clients).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Largest request line plus headers, in bytes; more is answered 431 (nginx allows 32 KiB,
/// Node.js 16 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most header fields in one request; more are answered 431 (hyper's default).
pub const MAX_HEADERS: usize = 100;

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a connection has to send a request's headers (also how long an idle keep-alive
    /// connection is kept).
    pub header_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// The default for `--max-connections`: three quarters of the open-file limit (the rest is
/// left for models, logs and plugins), between 16 and 4096.
pub fn default_max_connections() -> usize {
    let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let three_quarters = usize::try_from(files / 4 * 3).unwrap_or(usize::MAX);
    three_quarters.clamp(16, 4096)
}

/// Serve `app` on `listener` until `shutdown` resolves, then let open connections finish
/// (at most [`DRAIN_LIMIT`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: over the cap, new connections wait unaccepted.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: log, breathe, go on.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_headers(MAX_HEADERS)
            .serve_connection(
                TokioIo::new(JsonParseErrors::new(stream)),
                TowerToHyperService::new(app.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_LIMIT) => {
            tracing::warn!(
                "connections still open after {} s; stopping anyway",
                DRAIN_LIMIT.as_secs()
            );
        }
    }
}
