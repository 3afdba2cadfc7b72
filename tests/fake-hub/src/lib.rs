//! A loopback HTTP server that answers like the Hugging Face hub's file API, so tests can
//! download models without the real hub (which they must never contact).
//!
//! What it speaks, as the hub does (and as `hf-hub` and Python's `huggingface_hub` expect):
//! - `GET /{repo}/resolve/{revision}/{file}`: the file with `ETag`, `X-Repo-Commit`,
//!   `Content-Length` and `Accept-Ranges`; a `Range: bytes=a-b` or `bytes=a-` request gets a
//!   206 with `Content-Range`.
//! - Large files (`*.safetensors`, `*.bin`) are "LFS": a 302 to an absolute URL on a second
//!   path of the same server (the hub's CDN), carrying `X-Linked-Etag` and `X-Repo-Commit`.
//! - A renamed repo (`roberta-base` → `FacebookAI/roberta-base`) answers 307 with a relative
//!   `Location` to the same file under the new name.
//! - An unknown repo is a 401 `X-Error-Code: RepoNotFound`; an unknown file in a known
//!   repo a 404 `X-Error-Code: EntryNotFound`.
//!
//! Every request's path and `Authorization` header is recorded for the tests to check.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tiny_http::{Header, Method, Request, Response, Server};

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request path (`/org/name/resolve/main/config.json`).
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    /// repo id → file name → bytes.
    repos: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// old repo id → new repo id.
    renamed: BTreeMap<String, String>,
    seen: Vec<Seen>,
}

/// A running fake hub; stopped (port closed) on drop or [`FakeHub::stop`].
pub struct FakeHub {
    server: Arc<Server>,
    state: Arc<Mutex<State>>,
    endpoint: String,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Start on a free loopback port.
    pub fn start() -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("bind the fake hub"));
        let port = server
            .server_addr()
            .to_ip()
            .expect("fake hub listens on IP")
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let (server, state, endpoint) = (server.clone(), state.clone(), endpoint.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    answer(request, &state, &endpoint);
                }
            })
        };
        Self {
            server,
            state,
            endpoint,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, the value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Serve `files` (name → bytes) as model repo `repo` (`org/name` or `name`).
    pub fn add_repo(&self, repo: &str, files: BTreeMap<String, Vec<u8>>) {
        lock(&self.state).repos.insert(repo.to_string(), files);
    }

    /// Serve every file directly in `dir` as model repo `repo`.
    pub fn add_repo_from_dir(&self, repo: &str, dir: &std::path::Path) {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).expect("read model folder") {
            let path = entry.expect("folder entry").path();
            if path.is_file() {
                let name = path.file_name().expect("file name").to_string_lossy();
                files.insert(name.into_owned(), std::fs::read(&path).expect("read file"));
            }
        }
        self.add_repo(repo, files);
    }

    /// Answer requests for `old` with a redirect to `new`, as the hub does for renamed repos.
    pub fn rename(&self, old: &str, new: &str) {
        lock(&self.state)
            .renamed
            .insert(old.to_string(), new.to_string());
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// Stop listening: later connections are refused.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The 40-hex commit every repo is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn etag_of(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}{:08x}", h.finish(), bytes.len())
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".bin")
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn answer(request: Request, state: &Mutex<State>, endpoint: &str) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let authorization = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .map(|h| h.value.to_string());
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.to_string());
    let mut st = lock(state);
    st.seen.push(Seen {
        path: path.clone(),
        authorization,
    });
    let response = if !matches!(request.method(), Method::Get | Method::Head) {
        plain(405, "only GET and HEAD")
    } else if let Some(rest) = path.strip_prefix("/cdn/") {
        // `/cdn/{repo with / as ~}/{file}`: the LFS storage a resolve URL redirects to.
        cdn(&st, rest, range.as_deref())
    } else {
        resolve(&st, &path, range.as_deref(), endpoint)
    };
    drop(st);
    let _ = request.respond(response);
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn plain(status: u16, text: &str) -> Reply {
    Response::from_data(text.as_bytes().to_vec()).with_status_code(status)
}

fn resolve(st: &State, path: &str, range: Option<&str>, endpoint: &str) -> Reply {
    let Some((repo, tail)) = path.trim_start_matches('/').split_once("/resolve/") else {
        return plain(404, "not a resolve URL");
    };
    let Some((revision, file)) = tail.split_once('/') else {
        return plain(404, "no file in the resolve URL");
    };
    if let Some(new) = st.renamed.get(repo) {
        return plain(307, "moved")
            .with_header(header("Location", &format!("/{new}/resolve/{tail}")));
    }
    let Some(files) = st.repos.get(repo) else {
        return plain(401, "Repository not found")
            .with_header(header("X-Error-Code", "RepoNotFound"));
    };
    if revision != "main" && revision != COMMIT {
        return plain(404, "Revision not found")
            .with_header(header("X-Error-Code", "RevisionNotFound"));
    }
    let Some(bytes) = files.get(file) else {
        return plain(404, "Entry not found").with_header(header("X-Error-Code", "EntryNotFound"));
    };
    let etag = format!("\"{}\"", etag_of(bytes));
    if is_lfs(file) {
        let cdn = format!("{endpoint}/cdn/{}/{file}", repo.replace('/', "~"));
        return plain(302, "found")
            .with_header(header("Location", &cdn))
            .with_header(header("X-Linked-Etag", &etag))
            .with_header(header("X-Repo-Commit", COMMIT))
            .with_header(header("ETag", "\"the-pointer-file\""));
    }
    ranged(bytes, range)
        .with_header(header("ETag", &etag))
        .with_header(header("X-Repo-Commit", COMMIT))
}

fn cdn(st: &State, rest: &str, range: Option<&str>) -> Reply {
    let Some((repo, file)) = rest.split_once('/') else {
        return plain(404, "no such object");
    };
    match st
        .repos
        .get(&repo.replace('~', "/"))
        .and_then(|f| f.get(file))
    {
        Some(bytes) => ranged(bytes, range),
        None => plain(404, "no such object"),
    }
}

/// The whole file, or the part a `Range: bytes=a-b` / `bytes=a-` header asks for.
fn ranged(bytes: &[u8], range: Option<&str>) -> Reply {
    let total = bytes.len();
    let accept = header("Accept-Ranges", "bytes");
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Response::from_data(bytes.to_vec()).with_header(accept);
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let start: usize = start.parse().unwrap_or(0);
    let end: usize = end
        .parse()
        .unwrap_or(total.saturating_sub(1))
        .min(total.saturating_sub(1));
    if total == 0 || start > end {
        return plain(416, "range not satisfiable")
            .with_header(header("Content-Range", &format!("bytes */{total}")));
    }
    Response::from_data(bytes[start..=end].to_vec())
        .with_status_code(206)
        .with_header(accept)
        .with_header(header(
            "Content-Range",
            &format!("bytes {start}-{end}/{total}"),
        ))
}
