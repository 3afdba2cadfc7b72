//! Scale-out on loopback: three `clarity-host serve` replicas of one project (one
//! models.yaml, one shared artifact folder, as pods share the read-only volume) behind a
//! round-robin TCP proxy that balances connections as a Kubernetes Service does
//! (`clarity_tests::round_robin`). The model is a CPU-bound encoder on one ONNX Runtime
//! thread per replica (a pod with one core).
//!
//! - Killing one replica (SIGKILL) loses only the requests it had in flight: the others keep
//!   answering, and no request sent after its death fails.
//! - Throughput grows with replicas up to the cores available (`#[ignore]`d: a measurement,
//!   run alone on an idle machine; README "Scale-out" has its figures):
//!   `cargo test -p clarity-tests --test e2e scale_out -- --ignored --nocapture --test-threads=1`

use clarity_tests::encoder::write_onnx_folder_sized;
use clarity_tests::round_robin::{status_code, Forwarded, RoundRobin};
use clarity_tests::{plugin_lib, Project, Server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tokens per pair: the model's `max_length`, and the pairs are long enough to fill it.
const MAX_LENGTH: usize = 128;

/// One encoder `enc` (hidden 256, 4 layers: a few ms of CPU a pair) on one intra-op thread.
fn encoder_project() -> Project {
    let project = Project::new("");
    write_onnx_folder_sized(&project.path().join("enc"), &["yes", "no"], 256, 4);
    let yaml = format!(
        "- name: enc\n  type: encoder\n  plugin: {}\n  route: /classify/enc\n  model_config: {{model_name: enc, max_length: {MAX_LENGTH}, options: {{threads: 1}}}}\n",
        plugin_lib("clarity-encoder").display()
    );
    std::fs::write(project.config(), yaml).expect("write models.yaml");
    project
}

fn replicas(project: &Project, n: usize) -> Vec<Server> {
    let servers: Vec<Server> = (0..n).map(|_| project.serve(&[])).collect();
    for server in &servers {
        server.wait_ready(Duration::from_secs(120));
    }
    servers
}

fn address(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("server address")
}

/// One request as a client saw it, on the proxy's clock.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    /// The client's end of its connection (how the proxy's log names the request).
    client: Option<SocketAddr>,
    start: Duration,
    end: Duration,
    /// The answer's HTTP status (`None`: no answer).
    status: Option<u16>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status == Some(200)
    }
}

/// POST `body` to `path` on a new connection (`Connection: close`) and read the whole answer:
/// the connection's local address and the answer's status. A raw client, so the local
/// address (which the proxy records) is known.
fn post(addr: SocketAddr, path: &str, body: &str) -> (Option<SocketAddr>, Option<u16>) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (None, None);
    };
    let local = stream.local_addr().ok();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut answer = Vec::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_end(&mut answer).is_err() {
        return (local, None);
    }
    // A status without its body (the connection cut mid-answer) is no answer either.
    let complete = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .is_some_and(|end| answer.len() > end + 4);
    (local, status_code(&answer).filter(|_| complete))
}

/// `clients` threads POSTing one long pair each, a new connection per request (so the proxy
/// balances requests), until `stop` is set or `limit` passes; every outcome.
fn load(
    proxy: &RoundRobin,
    clients: usize,
    stop: &Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<Vec<Outcome>> {
    let addr = proxy.addr;
    let epoch = proxy.started();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let deadline = Instant::now() + limit;
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let answer = "the answer goes on about the budget and the vote ".repeat(12);
                    let mut outcomes = Vec::new();
                    let mut i = 0usize;
                    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                        let body = serde_json::json!({
                            "question": format!("Client {c} asks question {i}: will it pass?"),
                            "context": format!("Q: Will it pass?\nA: {answer}"),
                        })
                        .to_string();
                        let start = epoch.elapsed();
                        let (client, status) = post(addr, "/classify/enc", &body);
                        outcomes.push(Outcome {
                            client,
                            start,
                            end: epoch.elapsed(),
                            status,
                        });
                        i += 1;
                    }
                    outcomes
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().expect("client thread"))
            .collect()
    })
}

#[test]
fn killing_one_of_three_replicas_loses_only_its_requests_in_flight() {
    let project = encoder_project();
    let mut servers = replicas(&project, 3);
    let proxy = RoundRobin::start(servers.iter().map(address).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&proxy, 6, &stop, Duration::from_secs(60));

    std::thread::sleep(Duration::from_millis(2000));
    let victim = 1;
    let killed_from = proxy.now();
    servers[victim].kill();
    let killed_by = proxy.now();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::SeqCst);
    let outcomes = clients.join().expect("load");
    let forwarded = proxy.forwarded();

    let before: Vec<usize> = (0..3)
        .map(|b| {
            forwarded
                .iter()
                .filter(|f| f.backend == b && f.opened < killed_from)
                .count()
        })
        .collect();
    let after: Vec<usize> = (0..3)
        .map(|b| {
            forwarded
                .iter()
                .filter(|f| f.backend == b && f.opened > killed_by && f.answered.is_some())
                .count()
        })
        .collect();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.ok()).collect();
    // Each failed request, with the connection the proxy forwarded it on (by its address).
    let failed_on: Vec<(&Outcome, Option<&Forwarded>)> = failed
        .iter()
        .map(|&o| (o, forwarded.iter().find(|f| Some(f.client) == o.client)))
        .collect();
    let answered_after = outcomes
        .iter()
        .filter(|o| o.ok() && o.start > killed_by)
        .count();
    println!(
        "requests {} ({} failed); connections per replica before the kill {before:?}, answered after it {after:?}; killed replica {victim} between {killed_from:?} and {killed_by:?}",
        outcomes.len(),
        failed.len()
    );

    assert!(
        before.iter().all(|&n| n > 0),
        "round robin reaches every replica: {before:?}"
    );
    for (outcome, connection) in &failed_on {
        assert!(
            connection.is_some_and(|c| c.backend == victim),
            "a request failed that was not forwarded to the killed replica: {outcome:?} on {connection:?}"
        );
        assert!(
            outcome.start <= killed_by && outcome.end >= killed_from,
            "a failed request was not in flight at the kill ({killed_from:?}..{killed_by:?}): {outcome:?} on {connection:?}"
        );
    }
    assert_eq!(
        after[victim], 0,
        "nothing reaches the dead replica: {after:?}"
    );
    assert!(
        after[0] > 0 && after[2] > 0 && answered_after > 0,
        "the other replicas keep answering: {after:?}, {answered_after} answered after the kill"
    );
}

#[test]
#[ignore = "a throughput measurement: run alone on an idle machine (see the module doc)"]
fn throughput_grows_with_replicas_up_to_the_cores() {
    let project = encoder_project();
    let servers = replicas(&project, 3);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let clients = 8;
    let measure = Duration::from_secs(6);
    let mut rates = Vec::new();
    println!("| replicas | requests | req/s | x one replica | p50 ms | p99 ms | failed |");
    println!("|---|---|---|---|---|---|---|");
    for n in 1..=3 {
        let proxy = RoundRobin::start(servers.iter().take(n).map(address).collect());
        // Warm-up: connections, the allocator, the models' first batches.
        let stop = Arc::new(AtomicBool::new(false));
        let _ = load(&proxy, clients, &stop, Duration::from_secs(1)).join();
        let outcomes = load(&proxy, clients, &stop, measure).join().expect("load");
        let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok()).collect();
        let rate = ok.len() as f64 / measure.as_secs_f64();
        rates.push(rate);
        let mut latencies: Vec<f64> = ok
            .iter()
            .map(|o| (o.end - o.start).as_secs_f64() * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            let at = (latencies.len() as f64 * p) as usize;
            latencies
                .get(at.min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(f64::NAN)
        };
        println!(
            "| {n} | {} | {rate:.1} | {:.2} | {:.1} | {:.1} | {} |",
            outcomes.len(),
            rate / rates[0],
            pct(0.5),
            pct(0.99),
            outcomes.len() - ok.len()
        );
        assert_eq!(ok.len(), outcomes.len(), "every request answered");
    }
    println!(
        "({}; {clients} clients, {} s each)",
        clarity_tests::cpu_description(),
        measure.as_secs()
    );
    if cores >= 2 {
        assert!(
            rates[1] >= 1.3 * rates[0],
            "two replicas on {cores} cores: {:.1} req/s, one: {:.1}",
            rates[1],
            rates[0]
        );
    }
    // Past the cores, replicas share them: no gain, but no collapse either.
    assert!(
        rates[2] >= 0.8 * rates[cores.clamp(1, 2) - 1],
        "three replicas: {:.1} req/s; {rates:?}",
        rates[2]
    );
}
