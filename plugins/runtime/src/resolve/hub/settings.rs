//! Where the hub is, where its cache lives and how to authenticate, read from the environment
//! with `huggingface_hub`'s variable names and defaults, so a cache filled by Python is ours
//! too and the other way round.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The hub itself, when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// How long the hub may stay silent, as Python's `HF_HUB_DOWNLOAD_TIMEOUT` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a hub lookup depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubSettings {
    /// `HF_ENDPOINT` without a trailing `/` (default [`DEFAULT_ENDPOINT`]).
    pub endpoint: String,
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub` (`HF_HOME`
    /// defaults to `$XDG_CACHE_HOME/huggingface` when that is set).
    pub cache_dir: PathBuf,
    /// `HF_TOKEN`, else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`, where
    /// `huggingface-cli login` writes it).
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is `1`/`ON`/`YES`/`TRUE`: use only the cache.
    pub offline: bool,
    /// Longest silence from the hub before giving up (`HF_HUB_DOWNLOAD_TIMEOUT`, seconds).
    pub timeout: Duration,
    /// Draw a progress bar (standard error is a terminal, and neither `CI` nor
    /// `HF_HUB_DISABLE_PROGRESS_BARS` is set); else log lines.
    pub progress_bar: bool,
}

impl HubSettings {
    /// Read the process environment.
    pub fn from_env() -> Self {
        let mut settings = Self::from_vars(|name| std::env::var(name).ok());
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let no_bars = std::env::var("HF_HUB_DISABLE_PROGRESS_BARS").is_ok_and(|v| is_true(&v));
        settings.progress_bar = std::io::stderr().is_terminal() && !ci && !no_bars;
        settings
    }

    /// Build from a variable lookup (tests pass a map). Empty values count as unset, as in
    /// Python (`os.environ.get(...) or default`).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        let path = |value: String| absolute(&expand_user(&value, &home));
        let hf_home = var("HF_HOME").map(path).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(path)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(path)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_file = var("HF_TOKEN_PATH")
            .map(path)
            .unwrap_or_else(|| hf_home.join("token"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| std::fs::read_to_string(token_file).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let offline = var("HF_HUB_OFFLINE")
            .or_else(|| var("TRANSFORMERS_OFFLINE"))
            .is_some_and(|v| is_true(&v));
        let timeout = var("HF_HUB_DOWNLOAD_TIMEOUT")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        Self {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim().trim_end_matches('/').to_string())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            cache_dir,
            token,
            offline,
            timeout,
            progress_bar: false,
        }
    }
}

/// `huggingface_hub`'s truth test for flags.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// `~` and `~/…` against `home`, as Python's `os.path.expanduser`.
fn expand_user(value: &str, home: &Path) -> PathBuf {
    match value.strip_prefix('~') {
        Some("") => home.to_path_buf(),
        Some(rest) if rest.starts_with('/') || rest.starts_with('\\') => home.join(&rest[1..]),
        _ => PathBuf::from(value),
    }
}

/// Relative cache paths are taken from the working folder, once, so the symlinks hf-hub
/// writes between `snapshots/` and `blobs/` stay right.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> HubSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubSettings::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_pythons() {
        let s = settings(&[("HOME", "/home/u")]);
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert_eq!(s.token, None);
        assert!(!s.offline);
        assert_eq!(s.timeout, Duration::from_secs(10));
        let s = settings(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")]);
        assert_eq!(s.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
    }

    #[test]
    fn hub_cache_beats_hf_home_and_tilde_is_home() {
        let s = settings(&[("HOME", "/home/u"), ("HF_HOME", "~/hf")]);
        assert_eq!(s.cache_dir, PathBuf::from("/home/u/hf/hub"));
        let s = settings(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/elsewhere"),
        ]);
        assert_eq!(s.cache_dir, PathBuf::from("/elsewhere"));
        let s = settings(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]);
        assert_eq!(s.cache_dir, PathBuf::from("/legacy"));
        // Empty means unset.
        let s = settings(&[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "")]);
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
    }

    #[test]
    fn token_from_variable_then_hf_home_token_file() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_str().unwrap();
        assert_eq!(settings(&[("HF_HOME", home)]).token, None);
        std::fs::write(tmp.path().join("token"), "hf_fromfile\n").unwrap();
        assert_eq!(
            settings(&[("HF_HOME", home)]).token.as_deref(),
            Some("hf_fromfile")
        );
        assert_eq!(
            settings(&[("HF_HOME", home), ("HF_TOKEN", "hf_var")])
                .token
                .as_deref(),
            Some("hf_var")
        );
        let other = tmp.path().join("other-token");
        std::fs::write(&other, "hf_path").unwrap();
        assert_eq!(
            settings(&[
                ("HF_HOME", home),
                ("HF_TOKEN_PATH", other.to_str().unwrap())
            ])
            .token
            .as_deref(),
            Some("hf_path")
        );
    }

    #[test]
    fn offline_flags_endpoint_and_timeout() {
        for v in ["1", "true", "ON", "yes"] {
            assert!(settings(&[("HF_HUB_OFFLINE", v)]).offline, "{v}");
        }
        for v in ["0", "false", "no", ""] {
            assert!(!settings(&[("HF_HUB_OFFLINE", v)]).offline, "{v}");
        }
        assert!(settings(&[("TRANSFORMERS_OFFLINE", "1")]).offline);
        assert_eq!(
            settings(&[("HF_ENDPOINT", "http://127.0.0.1:8080/")]).endpoint,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            settings(&[("HF_HUB_DOWNLOAD_TIMEOUT", "2.5")]).timeout,
            Duration::from_millis(2500)
        );
        assert_eq!(
            settings(&[("HF_HUB_DOWNLOAD_TIMEOUT", "soon")]).timeout,
            DEFAULT_TIMEOUT
        );
    }
}
