//! Hub downloads against a loopback server that speaks the hub's file API
//! (`clarity-fake-hub`); the real hub is never contacted.

use super::*;
use crate::resolve::ModelSearch;
use clarity_fake_hub::{FakeHub, COMMIT};
use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

const TINY_CONFIG: &str = r#"{"model_type": "bert", "vocab_size": 64, "hidden_size": 8,
    "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
    "max_position_embeddings": 32, "type_vocab_size": 2}"#;

/// Weights big enough to arrive in many chunks.
fn weights_bytes() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

fn files(list: &[(&str, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    list.iter()
        .map(|(name, bytes)| (name.to_string(), bytes.clone()))
        .collect()
}

/// config.json, model.safetensors and tokenizer.json.
fn tiny_bert() -> BTreeMap<String, Vec<u8>> {
    files(&[
        ("config.json", TINY_CONFIG.into()),
        ("model.safetensors", weights_bytes()),
        ("tokenizer.json", br#"{"version": "1.0"}"#.to_vec()),
    ])
}

fn settings(endpoint: &str, home: &Path) -> HubSettings {
    HubSettings {
        endpoint: endpoint.to_string(),
        cache_dir: home.join("hub"),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn paths_seen(hub: &FakeHub) -> Vec<String> {
    hub.seen().into_iter().map(|s| s.path).collect()
}

#[test]
fn downloads_land_in_the_python_cache_layout() {
    let hub = FakeHub::start();
    hub.add_repo("clarity-test/tiny-bert", tiny_bert());
    let home = tempfile::tempdir().unwrap();
    let dir = fetch(
        "clarity-test/tiny-bert",
        &settings(hub.endpoint(), home.path()),
    )
    .unwrap();

    let repo = home.path().join("hub/models--clarity-test--tiny-bert");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    for (name, bytes) in tiny_bert() {
        let file = dir.join(&name);
        assert_eq!(fs::read(&file).unwrap(), bytes, "{name}");
        // Snapshot files are relative links into blobs/, as huggingface_hub writes them.
        let link = fs::read_link(&file).unwrap();
        assert!(
            link.starts_with("../../blobs"),
            "{name} -> {}",
            link.display()
        );
    }
    let blobs = fs::read_dir(repo.join("blobs"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_none())
        .count();
    assert_eq!(blobs, 3);
    // Optional files the repo lacks were asked for and are simply absent.
    let seen = paths_seen(&hub);
    assert!(
        seen.contains(&"/clarity-test/tiny-bert/resolve/main/tokenizer_config.json".to_string()),
        "{seen:?}"
    );
    assert!(!dir.join("tokenizer_config.json").exists());
    // The weights came through the LFS redirect to the "CDN".
    assert!(
        seen.iter()
            .any(|p| p == "/cdn/clarity-test~tiny-bert/model.safetensors"),
        "{seen:?}"
    );
}

#[test]
fn a_bare_name_follows_the_hubs_redirect_to_the_renamed_repo() {
    let hub = FakeHub::start();
    hub.add_repo("FacebookAI/tiny-roberta", tiny_bert());
    hub.rename("tiny-roberta", "FacebookAI/tiny-roberta");
    let home = tempfile::tempdir().unwrap();
    let dir = fetch("tiny-roberta", &settings(hub.endpoint(), home.path())).unwrap();
    // Stored under the name asked for, as Python does.
    assert_eq!(
        dir,
        home.path()
            .join("hub/models--tiny-roberta/snapshots")
            .join(COMMIT)
    );
    assert_eq!(
        fs::read(dir.join("model.safetensors")).unwrap(),
        weights_bytes()
    );
    let seen = paths_seen(&hub);
    for path in [
        "/tiny-roberta/resolve/main/config.json",
        "/FacebookAI/tiny-roberta/resolve/main/config.json",
    ] {
        assert!(seen.contains(&path.to_string()), "{path} not in {seen:?}");
    }
}

#[test]
fn a_cached_model_resolves_without_the_hub() {
    let hub = FakeHub::start();
    hub.add_repo("clarity-test/tiny-bert", tiny_bert());
    let home = tempfile::tempdir().unwrap();
    let mut s = settings(hub.endpoint(), home.path());
    let downloaded = fetch("clarity-test/tiny-bert", &s).unwrap();
    hub.stop();

    s.offline = true;
    assert_eq!(fetch("clarity-test/tiny-bert", &s).unwrap(), downloaded);
    // Online but with the hub gone: a whole cached model is used as is.
    s.offline = false;
    assert_eq!(fetch("clarity-test/tiny-bert", &s).unwrap(), downloaded);
}

#[test]
fn offline_with_an_empty_cache_says_where_to_put_the_files() {
    let hub = FakeHub::start();
    hub.add_repo("clarity-test/tiny-bert", tiny_bert());
    let home = tempfile::tempdir().unwrap();
    let mut s = settings(hub.endpoint(), home.path());
    s.offline = true;
    let err = fetch("clarity-test/tiny-bert", &s).unwrap_err().to_string();
    let cache = home.path().join("hub");
    for needle in [
        "HF_HUB_OFFLINE is set".to_string(),
        format!(
            "nothing under {}",
            cache.join("models--clarity-test--tiny-bert").display()
        ),
        "run `huggingface-cli download clarity-test/tiny-bert` on a machine with internet".into(),
        format!(
            "{}/snapshots/<any-name>/",
            cache.join("models--clarity-test--tiny-bert").display()
        ),
        "set model_name to a local folder".into(),
        "HF_HUB_CACHE or HF_HOME".into(),
    ] {
        assert!(err.contains(&needle), "{needle} missing from: {err}");
    }
    assert!(hub.seen().is_empty(), "offline must not ask the hub");
}

#[test]
fn an_unreachable_hub_fails_fast_with_the_manual_route() {
    let hub = FakeHub::start();
    let endpoint = hub.endpoint().to_string();
    hub.stop();
    let home = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let err = fetch("clarity-test/tiny-bert", &settings(&endpoint, home.path()))
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains(&format!("the hub at {endpoint} cannot be reached")),
        "{err}"
    );
    assert!(err.contains("huggingface-cli download"), "{err}");
}

#[test]
fn a_silent_hub_is_given_up_on_after_the_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(4));
        drop(stream);
    });
    let home = tempfile::tempdir().unwrap();
    let mut s = settings(&endpoint, home.path());
    s.timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = fetch("clarity-test/tiny-bert", &s).unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("sent nothing for 1 s") && err.contains("HF_HUB_DOWNLOAD_TIMEOUT"),
        "{err}"
    );
    held.join().unwrap();
}

#[test]
fn sharded_safetensors_and_a_bpe_tokenizer() {
    let index = r#"{"metadata": {}, "weight_map": {
        "a.weight": "model-00001-of-00002.safetensors",
        "b.weight": "model-00002-of-00002.safetensors"}}"#;
    let hub = FakeHub::start();
    hub.add_repo(
        "facebook/tiny-opt",
        files(&[
            ("config.json", b"{}".to_vec()),
            ("model.safetensors.index.json", index.into()),
            ("model-00001-of-00002.safetensors", vec![1; 1000]),
            ("model-00002-of-00002.safetensors", vec![2; 1000]),
            ("vocab.json", br#"{"a": 0}"#.to_vec()),
            ("merges.txt", b"#version: 0.2\n".to_vec()),
            ("special_tokens_map.json", b"{}".to_vec()),
        ]),
    );
    let home = tempfile::tempdir().unwrap();
    let dir = fetch("facebook/tiny-opt", &settings(hub.endpoint(), home.path())).unwrap();
    for f in [
        "config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "vocab.json",
        "merges.txt",
        "special_tokens_map.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn pytorch_bin_fallback_and_clear_errors_for_missing_files() {
    let hub = FakeHub::start();
    hub.add_repo(
        "org/bin-only",
        files(&[
            ("config.json", b"{}".to_vec()),
            ("pytorch_model.bin", vec![7; 500]),
            ("vocab.txt", b"[PAD]\n[UNK]\n".to_vec()),
        ]),
    );
    hub.add_repo(
        "org/no-weights",
        files(&[
            ("config.json", b"{}".to_vec()),
            ("tokenizer.json", b"{}".to_vec()),
        ]),
    );
    hub.add_repo(
        "org/no-config",
        files(&[("model.safetensors", vec![1; 10])]),
    );
    let home = tempfile::tempdir().unwrap();
    let s = settings(hub.endpoint(), home.path());
    let dir = fetch("org/bin-only", &s).unwrap();
    assert!(dir.join("pytorch_model.bin").is_file());
    assert!(dir.join("vocab.txt").is_file());

    let err = fetch("org/no-weights", &s).unwrap_err().to_string();
    assert!(
        err.contains("`org/no-weights` on the hub at")
            && err.contains("the repo has no weights (model.safetensors"),
        "{err}"
    );
    let err = fetch("org/no-config", &s).unwrap_err().to_string();
    assert!(err.contains("the repo has no config.json"), "{err}");
}

#[test]
fn an_unknown_repo_points_at_the_name_and_hf_token() {
    let hub = FakeHub::start();
    let home = tempfile::tempdir().unwrap();
    let err = fetch("org/nope", &settings(hub.endpoint(), home.path()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no model repo `org/nope`")
            && err.contains("HTTP 401, RepoNotFound")
            && err.contains("HF_TOKEN"),
        "{err}"
    );
}

#[test]
fn the_token_is_sent_as_a_bearer() {
    let hub = FakeHub::start();
    hub.add_repo("org/private", tiny_bert());
    let home = tempfile::tempdir().unwrap();
    let mut s = settings(hub.endpoint(), home.path());
    s.token = Some("hf_secret".into());
    fetch("org/private", &s).unwrap();
    let seen = hub.seen();
    let config = seen
        .iter()
        .find(|r| r.path.ends_with("/config.json"))
        .unwrap();
    assert_eq!(config.authorization.as_deref(), Some("Bearer hf_secret"));
}

/// A cache laid out by Python's huggingface_hub: blobs, relative links, refs/main.
#[cfg(unix)]
fn python_cache(cache: &Path, id: &str, commit: &str, files: &BTreeMap<String, Vec<u8>>) {
    let repo = cache::repo_dir(cache, id);
    fs::create_dir_all(repo.join("blobs")).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    fs::write(repo.join("refs/main"), commit).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let blob = format!("{i:040x}");
        fs::write(repo.join("blobs").join(&blob), bytes).unwrap();
        std::os::unix::fs::symlink(
            Path::new("../../blobs").join(&blob),
            repo.join("snapshots").join(commit).join(name),
        )
        .unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_cache_filled_by_python_is_used_offline() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("hub");
    python_cache(&cache, "FacebookAI/roberta-tiny", "abc123", &tiny_bert());
    let mut s = settings("http://127.0.0.1:1", home.path());
    s.offline = true;
    let dir = fetch("FacebookAI/roberta-tiny", &s).unwrap();
    assert_eq!(
        dir,
        cache.join("models--FacebookAI--roberta-tiny/snapshots/abc123")
    );
    assert_eq!(
        fs::read(dir.join("model.safetensors")).unwrap(),
        weights_bytes()
    );

    // Asked by its bare name, the error points at the full one the cache holds.
    let err = fetch("roberta-tiny", &s).unwrap_err().to_string();
    assert!(
        err.contains("The cache holds `FacebookAI/roberta-tiny`: set model_name to that"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_partial_cache_from_an_older_commit_is_completed_in_one_snapshot() {
    let hub = FakeHub::start();
    hub.add_repo("org/model", tiny_bert());
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("hub");
    python_cache(
        &cache,
        "org/model",
        "oldcommit",
        &files(&[("config.json", TINY_CONFIG.into())]),
    );
    let dir = fetch("org/model", &settings(hub.endpoint(), home.path())).unwrap();
    assert_eq!(dir, cache.join("models--org--model/snapshots").join(COMMIT));
    files::complete(&dir).unwrap();
}

#[test]
fn repo_id_shapes() {
    for ok in [
        "sentence-transformers/all-MiniLM-L6-v2",
        "roberta-base",
        "facebook/opt-1.3b",
        "bert_base.v2",
    ] {
        assert!(is_repo_id(ok), "{ok}");
    }
    for not in [
        "a/b/c", "/abs", "../x", "./x", "x/", "-x", "x.", "a--b", "a..b", "", "a b", "C:\\m",
    ] {
        assert!(!is_repo_id(not), "{not}");
    }
    assert!(!is_repo_id(&"x".repeat(97)));
}

/// The whole search: a folder beside models.yaml wins without asking the hub; without it
/// the same name comes from the hub.
#[test]
fn model_search_tries_the_folder_then_the_hub() {
    let hub = FakeHub::start();
    hub.add_repo("clarity-test/tiny-bert", tiny_bert());
    hub.rename("tiny-bert", "clarity-test/tiny-bert");
    let project = tempfile::tempdir().unwrap();
    let search = ModelSearch {
        config_dir: project.path().to_path_buf(),
        hub: settings(hub.endpoint(), &project.path().join("hf-home")),
        ..Default::default()
    };
    let from_hub = search.find("tiny-bert").unwrap();
    assert!(from_hub.starts_with(project.path().join("hf-home/hub/models--tiny-bert")));
    let asked = hub.seen().len();

    let local = project.path().join("tiny-bert");
    fs::create_dir_all(&local).unwrap();
    assert_eq!(search.find("tiny-bert").unwrap(), local);
    assert_eq!(
        hub.seen().len(),
        asked,
        "a local folder must not ask the hub"
    );
}
