//! API keys: with any key configured, every route but the open ones (by default `/health`,
//! `/ready`, `/metrics` and the Open Inference Protocol's `/v2/health/live` and
//! `/v2/health/ready`, which Kubernetes probes call without credentials) needs `Authorization: Bearer <key>`. A missing, malformed or
//! wrong key is a 401 with `WWW-Authenticate: Bearer realm="clarity"` (RFC 6750).
//!
//! Keys are compared in constant time against every configured key, with no early exit, so
//! the time taken says at most how long a key is, never how much of it matched.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use subtle::{Choice, ConstantTimeEq};

/// The routes open without a key unless `--open-route` says otherwise.
pub const DEFAULT_OPEN_ROUTES: [&str; 6] = [
    "/health",
    "/ready",
    "/metrics",
    "/v2/health/live",
    "/v2/health/ready",
    // The playground page holds no data; the requests it makes carry the key.
    "/ui",
];

/// The name of the OpenAPI security scheme.
const SCHEME: &str = "bearerAuth";

/// Who may call what. Without keys everything is open.
#[derive(Clone, Default)]
pub struct Auth {
    keys: Vec<Vec<u8>>,
    open_routes: Vec<String>,
}

// Hand-written so a `{:?}` never prints a key.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("open_routes", &self.open_routes)
            .finish()
    }
}

/// A key or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The key file cannot be read.
    #[error("cannot read the API key file {path}: {source} (fix the path given to --api-key-file / CLARITY_API_KEY_FILE)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no key.
    #[error("the API key file {0} holds no key (put one key per line; `#` starts a comment)")]
    EmptyFile(PathBuf),
    /// An empty key: refused rather than read as "no keys", so a blank variable fails closed.
    #[error("{origin}: an API key is empty (a variable set to nothing, or a stray comma?); unset it to serve without keys")]
    EmptyKey {
        /// Where the key came from.
        origin: String,
    },
    /// A key that cannot travel in a Bearer header.
    #[error("{origin}: an API key must be printable ASCII without spaces or commas")]
    BadKey {
        /// Where the key came from (flag, or file and line).
        origin: String,
    },
    /// An open route that is not a path.
    #[error("--open-route `{0}` must be a path starting with `/` (or `none`)")]
    BadOpenRoute(String),
}

impl Auth {
    /// Keys from `--api-key` / `CLARITY_API_KEY` and, if given, a key file; `open_routes` as
    /// given to `--open-route` (`none` alone means no route is open).
    pub fn new(
        flag_keys: &[String],
        key_file: Option<&Path>,
        open_routes: &[String],
    ) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        for key in flag_keys {
            let key = key.trim();
            check_key(key, || "--api-key / CLARITY_API_KEY".to_string())?;
            keys.push(key.as_bytes().to_vec());
        }
        if let Some(path) = key_file {
            let text = std::fs::read_to_string(path).map_err(|source| AuthError::Unreadable {
                path: path.to_path_buf(),
                source,
            })?;
            let from_file = parse_key_file(&text, path)?;
            if from_file.is_empty() {
                return Err(AuthError::EmptyFile(path.to_path_buf()));
            }
            keys.extend(from_file.into_iter().map(String::into_bytes));
        }
        let mut open = Vec::new();
        for route in open_routes {
            match route.trim() {
                "none" => {}
                r if r.starts_with('/') => open.push(r.to_string()),
                r => return Err(AuthError::BadOpenRoute(r.to_string())),
            }
        }
        Ok(Self {
            keys,
            open_routes: open,
        })
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// How many keys are configured (what the log may say about them).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The routes open without a key.
    pub fn open_routes(&self) -> &[String] {
        &self.open_routes
    }

    /// Whether `path` needs a key.
    pub fn protects(&self, path: &str) -> bool {
        self.enabled() && !self.open_routes.iter().any(|open| open == path)
    }

    /// Whether `presented` is one of the keys: compared with every key, without early exit.
    fn accepts(&self, presented: &[u8]) -> bool {
        let mut found = Choice::from(0);
        for key in &self.keys {
            // `ct_eq` on slices of unequal length returns at once: only the length leaks.
            found |= key.as_slice().ct_eq(presented);
        }
        found.into()
    }

    /// Checks one request's `Authorization` header value.
    fn check(&self, header: Option<&[u8]>) -> Result<(), ApiError> {
        let Some(header) = header else {
            return Err(ApiError::Unauthorized {
                message: "this route needs an API key: send `Authorization: Bearer <key>`".into(),
                error_code: None,
            });
        };
        let token = header
            .split_first_chunk::<7>()
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii())
            .filter(|token| !token.is_empty());
        let Some(token) = token else {
            return Err(ApiError::Unauthorized {
                message: "malformed Authorization header: expected `Bearer <key>`".into(),
                error_code: Some("invalid_request"),
            });
        };
        if self.accepts(token) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized {
                message: "invalid API key".into(),
                error_code: Some("invalid_token"),
            })
        }
    }
}

/// One key per line; blank lines and lines starting with `#` are skipped.
pub fn parse_key_file(text: &str, path: &Path) -> Result<Vec<String>, AuthError> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_key(line, || format!("{} line {}", path.display(), index + 1))?;
        keys.push(line.to_string());
    }
    Ok(keys)
}

fn check_key(key: &str, origin: impl FnOnce() -> String) -> Result<(), AuthError> {
    if key.is_empty() {
        return Err(AuthError::EmptyKey { origin: origin() });
    }
    if key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        Ok(())
    } else {
        Err(AuthError::BadKey { origin: origin() })
    }
}

/// Middleware: answers 401 on a protected route without a valid key.
pub async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let auth = &state.auth;
    // A browser asking `/` for a page gets the playground (no data), like `/ui`.
    let page = request.uri().path() == "/"
        && super::playground::wants_page(request.headers())
        && !auth.protects("/ui");
    if auth.protects(request.uri().path()) && !page {
        auth.check(
            request
                .headers()
                .get(AUTHORIZATION)
                .map(|value| value.as_bytes()),
        )?;
    }
    Ok(next.run(request).await)
}

/// Adds the bearer scheme to the OpenAPI document and marks every protected operation.
pub fn secure_document(document: &mut Value, auth: &Auth) {
    if !auth.enabled() {
        return;
    }
    if let Some(components) = document
        .get_mut("components")
        .and_then(Value::as_object_mut)
    {
        components.insert(
            "securitySchemes".into(),
            json!({SCHEME: {"type": "http", "scheme": "bearer",
                            "description": "One of the keys given to --api-key / CLARITY_API_KEY / --api-key-file."}}),
        );
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !auth.protects(path) {
            continue;
        }
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        // The protocol routes answer errors in its shape (see `request_id`).
        let error_schema = if super::v2::is_v2_path(path) {
            "#/components/schemas/V2Error"
        } else {
            "#/components/schemas/Error"
        };
        for operation in operations.values_mut().filter_map(Value::as_object_mut) {
            operation.insert("security".into(), json!([{SCHEME: []}]));
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses.insert(
                    "401".into(),
                    json!({"description": "Missing or wrong API key (`WWW-Authenticate: Bearer`).",
                           "content": {"application/json": {"schema": {"$ref": error_schema}}}}),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_of(text: &str) -> Result<Vec<String>, AuthError> {
        parse_key_file(text, Path::new("keys.txt"))
    }

    #[test]
    fn key_files_skip_comments_and_blank_lines() {
        let keys = keys_of("# team keys\n\n  alpha-1  \n#beta-2\n\t\ngamma-3\r\n").unwrap();
        assert_eq!(keys, ["alpha-1", "gamma-3"]);
        assert!(keys_of("# nothing\n\n").unwrap().is_empty());
        let err = keys_of("alpha\nwith space\n").unwrap_err().to_string();
        assert!(err.contains("keys.txt line 2"), "{err}");
    }

    #[test]
    fn an_empty_or_missing_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.keys");
        std::fs::write(&empty, "# only a comment\n\n").unwrap();
        let err = Auth::new(&[], Some(&empty), &[]).unwrap_err().to_string();
        assert!(err.contains(&empty.display().to_string()), "{err}");
        assert!(err.contains("holds no key"), "{err}");

        let missing = dir.path().join("missing.keys");
        let err = Auth::new(&[], Some(&missing), &[]).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(err.contains("cannot read"), "{err}");

        let good = dir.path().join("good.keys");
        std::fs::write(&good, "one\ntwo\n").unwrap();
        let auth = Auth::new(&["three".into()], Some(&good), &[]).unwrap();
        assert_eq!(auth.key_count(), 3);
        assert!(auth.accepts(b"two") && auth.accepts(b"three"));
        assert!(!auth.accepts(b"tw") && !auth.accepts(b"twoo") && !auth.accepts(b""));
        assert!(!format!("{auth:?}").contains("three"), "Debug hides keys");
    }

    #[test]
    fn bad_keys_and_open_routes_are_refused() {
        let err = Auth::new(&[" ".into()], None, &[]).unwrap_err().to_string();
        assert!(err.contains("--api-key") && err.contains("empty"), "{err}");
        let err = Auth::new(&["caf\u{e9}".into()], None, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("printable ASCII"), "{err}");
        let err = Auth::new(&["k".into()], None, &["health".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`health`"), "{err}");
        let auth = Auth::new(&[], None, &[]).unwrap();
        assert!(!auth.enabled() && !auth.protects("/classify/x"));
    }
}
