//! The accept loop: axum's router on hyper's HTTP/1 connections, with the limits
//! `axum::serve` does not offer. A client that opens a connection and sends its headers
//! slowly, or not at all (slowloris), is cut off after `--header-read-timeout`, so it can
//! neither hold a file descriptor forever nor keep the process alive after SIGTERM; and a
//! stop waits at most [`DRAIN_LIMIT`] for connections still open.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Longest a stop waits for open connections (requests in flight, keep-alive clients).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `shutdown` resolves, then let open connections finish
/// (at most [`DRAIN_LIMIT`]). Each connection must send a request's headers within
/// `header_timeout` of starting to wait for them, or it is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
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
