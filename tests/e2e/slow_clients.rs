//! Slow and silent clients (slowloris) through the real binary: a connection that does not
//! finish its request headers within `--header-read-timeout` is closed, it cannot keep the
//! server alive after SIGTERM, and well-behaved clients are served meanwhile.

use clarity_tests::Project;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn connect(base: &str) -> TcpStream {
    let address = base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    stream
}

/// Send half a request's headers and wait for the server to close the connection; how long
/// it took.
fn closed_after_half_headers(base: &str) -> Duration {
    let mut stream = connect(base);
    stream
        .write_all(b"POST /classify/classic HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        .expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    // EOF (or a reset) ends the read; a server that never closes fails the 20 s read timeout.
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the half-sent request open: {e}"),
    }
    started.elapsed()
}

#[test]
fn half_sent_headers_are_cut_off_and_do_not_hold_the_server_after_sigterm() {
    let project = Project::classic("");
    let mut server = project.serve(&["--header-read-timeout", "1"]);
    server.wait_ready(Duration::from_secs(60));

    let took = closed_after_half_headers(&server.base);
    assert!(
        took < Duration::from_secs(5),
        "closed after {took:?}, not about 1 s"
    );
    // A connection that sends nothing at all is closed too.
    let mut silent = connect(&server.base);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Meanwhile and afterwards, ordinary requests are answered.
    let pair = json!({"question": "Still there?", "context": "A: Yes."});
    let (status, body) = server.post_json("/classify/classic", &pair);
    assert_eq!(status, 200, "{body}");

    // A client stuck halfway through its headers does not keep a stopped server alive.
    let mut stuck = connect(&server.base);
    stuck
        .write_all(b"POST /classify/classic HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    let started = Instant::now();
    assert_eq!(server.terminate(Duration::from_secs(15)), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped after {:?}",
        started.elapsed()
    );
}
