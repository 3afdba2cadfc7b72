//! API keys on the real server: `CLARITY_API_KEY` (two keys) plus a key file (a third),
//! 401 with the Bearer challenge without or with a wrong key, 200 with each key, the health
//! routes open, keys never in the log, and a clear startup error for an empty key file.

use clarity_tests::Project;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::Duration;

const ENV_KEYS: &str = "e2e-key-one,e2e-key-two";
const FILE_KEY: &str = "e2e-key-three";

fn classic_project() -> Project {
    Project::classic("")
}

/// Status, `WWW-Authenticate` and JSON body of a request with an optional Authorization.
fn send(
    client: &Client,
    request: reqwest::blocking::RequestBuilder,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let request = match authorization {
        Some(value) => request.header("authorization", value),
        None => request,
    };
    let response = client
        .execute(request.build().expect("request"))
        .expect("send");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.json().unwrap_or(Value::Null);
    (status, challenge, body)
}

#[test]
fn api_keys_guard_the_model_routes_of_the_real_server() {
    let project = classic_project();
    project.host_ok(&["train", "--model", "classic"]);
    let key_file = project.path().join("api.keys");
    std::fs::write(&key_file, format!("# ops team\n\n{FILE_KEY}\n")).expect("write keys");
    let key_file = key_file.display().to_string();
    let server = project.serve_with_env(
        &["--api-key-file", &key_file],
        &[("CLARITY_API_KEY", ENV_KEYS)],
    );
    // /ready is open: this needs no key.
    server.wait_ready(Duration::from_secs(60));
    let (status, body) = server.get("/health");
    assert_eq!(status, 200, "{body}");
    let (status, _) = server.get("/metrics");
    assert_eq!(status, 200, "/metrics stays open");

    let client = Client::new();
    let url = format!("{}/classify/classic", server.base);
    let pair = json!({"question": "Will you raise the minimum wage?",
                      "context": "Q: Will you raise the minimum wage?\nA: Yes, next year."});
    let post = || client.post(&url).json(&pair);

    let (status, challenge, body) = send(&client, post(), None);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["kind"], "unauthorized", "{body}");
    assert!(body["request_id"].is_string(), "{body}");
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="clarity""#));

    let (status, challenge, body) = send(&client, post(), Some("Bearer e2e-key-on"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Bearer realm="clarity", error="invalid_token""#)
    );

    for key in ["e2e-key-one", "e2e-key-two", FILE_KEY] {
        let (status, _, body) = send(&client, post(), Some(&format!("Bearer {key}")));
        assert_eq!(status, 200, "{key}: {body}");
        assert!(body["clarity_label"].is_string(), "{body}");
    }

    // The model list is guarded too.
    let index = format!("{}/", server.base);
    let (status, _, body) = send(&client, client.get(&index), None);
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = send(&client, client.get(&index), Some("Bearer e2e-key-two"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["models"][0]["name"], "classic", "{body}");

    let log = server.log();
    assert!(log.contains("3 key(s) configured"), "{log}");
    for key in ["e2e-key-one", "e2e-key-two", FILE_KEY] {
        assert!(!log.contains(key), "a key reached the log:\n{log}");
    }
}

#[test]
fn an_empty_key_file_stops_serve_with_the_path() {
    let project = classic_project();
    let key_file = project.path().join("empty.keys");
    std::fs::write(&key_file, "# no keys yet\n\n").expect("write keys");
    let out = project.host(&[
        "serve",
        "--port",
        "0",
        "--api-key-file",
        &key_file.display().to_string(),
    ]);
    assert!(!out.status.success(), "serve started without a key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&key_file.display().to_string()), "{stderr}");
    assert!(stderr.contains("holds no key"), "{stderr}");
}
