//! Pretrained models from the Hugging Face hub, in the cache Python's `huggingface_hub` uses.
//!
//! hf-hub's sync client does the HTTP and the cache writes (blobs by etag, snapshot links,
//! `refs/main`, following the hub's relative redirects for renamed repos such as
//! `roberta-base` → `FacebookAI/roberta-base`). Around it we add what it lacks:
//! - the environment as Python reads it ([`settings`]: `HF_HUB_CACHE`, `HF_TOKEN`,
//!   `HF_HUB_OFFLINE`, …; hf-hub only knows `HF_HOME` and `HF_ENDPOINT`);
//! - which files make a model ([`files`]), and a cached snapshot that has them all is used
//!   without asking the hub (offline, or when it cannot be reached);
//! - a time limit on silence ([`watchdog`]; hf-hub's client would wait forever);
//! - progress as a bar or log lines ([`progress`]);
//! - errors that say what was tried and how to get the files there by hand.

pub mod cache;
pub mod files;
mod progress;
pub mod settings;
mod watchdog;

#[cfg(test)]
mod tests;

pub use settings::HubSettings;

use files::{FilesError, Source};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::Cache;
use std::path::{Path, PathBuf};

/// Why a hub model could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Offline, unreachable or silent, and the cache does not hold the whole model.
    #[error(transparent)]
    Unavailable(Box<NotCached>),
    /// The hub says there is no such repo, or that we may not read it.
    #[error("the hub at {endpoint} has no model repo `{id}` we may read (HTTP {status}{}); check the name, and for a private or gated model set HF_TOKEN (or run `huggingface-cli login`) for an account with access", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    NotOnHub {
        /// The repo id.
        id: String,
        /// `HF_ENDPOINT`.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The hub's `X-Error-Code`.
        code: Option<String>,
    },
    /// The repo lacks a file the plugins need.
    #[error("`{id}` on the hub at {endpoint}: {source}")]
    Files {
        /// The repo id.
        id: String,
        /// `HF_ENDPOINT`.
        endpoint: String,
        /// What is missing or broken.
        source: FilesError,
    },
    /// `HF_ENDPOINT` is not an http(s) URL, or the server there does not answer like the hub.
    #[error("HF_ENDPOINT {endpoint}: {why}")]
    Endpoint {
        /// `HF_ENDPOINT`.
        endpoint: String,
        /// What is wrong.
        why: String,
    },
    /// Any other failure while downloading `file`.
    #[error("downloading {file} of `{id}` from {endpoint} into {} failed: {why}", cache_dir.display())]
    Download {
        /// The repo id.
        id: String,
        /// The file.
        file: String,
        /// `HF_ENDPOINT`.
        endpoint: String,
        /// The cache folder.
        cache_dir: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// The hub was not (or could not be) asked, and the cache lacks the model: what it lacks and
/// how to put the files there by hand.
#[derive(Debug, thiserror::Error)]
#[error("{why}, and the hub cache does not hold `{id}` ({lacks}).{hint} To use it without the hub: run `huggingface-cli download {id}` on a machine with internet and copy {folder} from its hub cache (~/.cache/huggingface/hub) into {}; or put config.json, the weights and the tokenizer files in {}/snapshots/<any-name>/; or set model_name to a local folder holding them. HF_HUB_CACHE or HF_HOME choose the cache folder", cache_dir.display(), cache_dir.join(folder).display())]
pub struct NotCached {
    /// The repo id.
    pub id: String,
    /// Why the hub was not asked, or did not answer.
    pub why: String,
    /// The cache folder.
    pub cache_dir: PathBuf,
    /// `models--org--name`.
    pub folder: String,
    /// What the cache has of it.
    pub lacks: String,
    /// "Did you mean" for a repo cached under another owner.
    pub hint: String,
}

/// Whether `name` can be a hub model id: `name` or `org/name` of letters, digits, `-`, `_`
/// and `.`, at most 96 characters, without `--` or `..` and not starting or ending with `-`
/// or `.` (the hub's own rules). Paths such as `./x`, `../x`, `/x` or `a/b/c` are not.
pub fn is_repo_id(name: &str) -> bool {
    let part_ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with(['-', '.'])
            && !s.ends_with(['-', '.'])
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let parts: Vec<&str> = name.split('/').collect();
    name.len() <= 96
        && parts.len() <= 2
        && parts.iter().all(|p| part_ok(p))
        && !name.contains("--")
        && !name.contains("..")
}

/// The snapshot folder holding model `id`: the cached one if it is whole, else downloaded
/// (unless offline) into the cache.
pub fn fetch(id: &str, settings: &HubSettings) -> Result<PathBuf, HubError> {
    let repo_dir = cache::repo_dir(&settings.cache_dir, id);
    if let Some(snapshot) = cache::main_snapshot(&repo_dir) {
        if files::complete(&snapshot).is_ok() {
            clarity_sdk::info!("using `{id}` from the hub cache: {}", snapshot.display());
            return Ok(snapshot);
        }
    }
    if settings.offline {
        return Err(unavailable(
            id,
            settings,
            "HF_HUB_OFFLINE is set, so the hub is not asked".into(),
        ));
    }
    let endpoint = &settings.endpoint;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(HubError::Endpoint {
            endpoint: endpoint.clone(),
            why: "not an http:// or https:// URL".into(),
        });
    }
    clarity_sdk::info!(
        "downloading `{id}` from the Hugging Face hub at {endpoint} into {}",
        settings.cache_dir.display()
    );
    let (job_id, job_settings) = (id.to_string(), settings.clone());
    match watchdog::run(settings.timeout, move |beat| {
        download(&job_id, &job_settings, &beat)
    }) {
        Ok(result) => result,
        Err(watchdog::Stopped::Stalled(limit)) => Err(unavailable(
            id,
            settings,
            format!(
                "the hub at {endpoint} sent nothing for {} s (HF_HUB_DOWNLOAD_TIMEOUT sets the limit)",
                limit.as_secs_f64()
            ),
        )),
        Err(stopped) => Err(HubError::Download {
            id: id.to_string(),
            file: "the model".into(),
            endpoint: endpoint.clone(),
            cache_dir: settings.cache_dir.clone(),
            why: stopped.to_string(),
        }),
    }
}

/// Download what the cache lacks; the snapshot folder that then holds every file.
fn download(id: &str, settings: &HubSettings, beat: &watchdog::Beat) -> Result<PathBuf, HubError> {
    let api = ApiBuilder::from_cache(Cache::new(settings.cache_dir.clone()))
        .with_endpoint(settings.endpoint.clone())
        .with_token(settings.token.clone())
        .with_progress(false)
        .with_user_agent("clarity", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| HubError::Endpoint {
            endpoint: settings.endpoint.clone(),
            why: format!("cannot set up the HTTP client: {e}"),
        })?;
    let mut source = HubSource {
        repo: api.model(id.to_string()),
        id,
        settings,
        beat,
    };
    // Files already cached for an older commit stay in its snapshot while new ones land in
    // the newest commit's (and `refs/main` moves there): a second pass downloads the rest
    // into that one, so the plugin gets one folder of one commit.
    for _ in 0..2 {
        let paths = files::fetch_all(&mut source)?;
        let snapshot = paths
            .first()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf);
        if let Some(snapshot) = snapshot {
            if paths.iter().all(|p| p.starts_with(&snapshot)) {
                return Ok(snapshot);
            }
        }
    }
    Err(source.failed(
        "the model",
        "the repo changed during the download; run again".into(),
    ))
}

/// Files of one repo from the cache, else from the hub.
struct HubSource<'a> {
    repo: ApiRepo,
    id: &'a str,
    settings: &'a HubSettings,
    beat: &'a watchdog::Beat,
}

impl Source for HubSource<'_> {
    type Error = HubError;

    fn get(&mut self, file: &str) -> Result<Option<PathBuf>, HubError> {
        self.beat.now();
        let repo_dir = cache::repo_dir(&self.settings.cache_dir, self.id);
        if let Some(path) = cache::main_snapshot(&repo_dir)
            .map(|s| s.join(file))
            .filter(|p| p.is_file())
        {
            return Ok(Some(path));
        }
        let reporter =
            progress::Reporter::new(self.id, self.beat.clone(), self.settings.progress_bar);
        match self.repo.download_with_progress(file, reporter) {
            Ok(path) => Ok(Some(path)),
            Err(e) => self.classify(file, e),
        }
    }

    fn files_error(&self, source: FilesError) -> HubError {
        HubError::Files {
            id: self.id.to_string(),
            endpoint: self.settings.endpoint.clone(),
            source,
        }
    }
}

impl HubSource<'_> {
    /// A 404 for a file of a repo that exists is "no such file" (`Ok(None)`); everything
    /// else is an error saying what to do.
    fn classify(&self, file: &str, e: ApiError) -> Result<Option<PathBuf>, HubError> {
        let endpoint = &self.settings.endpoint;
        match e {
            ApiError::RequestError(boxed) => match *boxed {
                ureq::Error::Status(status, response) => {
                    let code = response.header("X-Error-Code").map(str::to_string);
                    match (status, code.as_deref()) {
                        (404, None | Some("EntryNotFound")) => Ok(None),
                        (401 | 403 | 404, _) => Err(HubError::NotOnHub {
                            id: self.id.to_string(),
                            endpoint: endpoint.clone(),
                            status,
                            code,
                        }),
                        _ => Err(self.failed(file, format!("the hub answered HTTP {status}"))),
                    }
                }
                ureq::Error::Transport(t) => Err(unavailable(
                    self.id,
                    self.settings,
                    format!("the hub at {endpoint} cannot be reached ({t})"),
                )),
            },
            ApiError::MissingHeader(_) | ApiError::InvalidHeader(_) => Err(HubError::Endpoint {
                endpoint: endpoint.clone(),
                why: format!("the server does not answer like the Hugging Face hub ({e})"),
            }),
            ApiError::IoError(io) => Err(self.failed(
                file,
                format!(
                    "cannot write the cache ({io}); set HF_HUB_CACHE or HF_HOME to a writable folder"
                ),
            )),
            other => Err(self.failed(file, other.to_string())),
        }
    }

    fn failed(&self, file: &str, why: String) -> HubError {
        HubError::Download {
            id: self.id.to_string(),
            file: file.to_string(),
            endpoint: self.settings.endpoint.clone(),
            cache_dir: self.settings.cache_dir.clone(),
            why,
        }
    }
}

/// The error for "the hub was not (or could not be) asked": what the cache has of `id` and
/// how to put the files there by hand.
fn unavailable(id: &str, settings: &HubSettings, why: String) -> HubError {
    let repo_dir = cache::repo_dir(&settings.cache_dir, id);
    let lacks = match cache::main_snapshot(&repo_dir) {
        None => format!("nothing under {}", repo_dir.display()),
        Some(snapshot) => match files::complete(&snapshot) {
            Err(e) => format!("{}: {e}", snapshot.display()),
            Ok(()) => "it does hold it now: run again".into(),
        },
    };
    let elsewhere = cache::same_name_elsewhere(&settings.cache_dir, id);
    let hint = if elsewhere.is_empty() {
        String::new()
    } else {
        format!(
            " The cache holds {}: set model_name to that.",
            elsewhere
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    HubError::Unavailable(Box::new(NotCached {
        id: id.to_string(),
        why,
        cache_dir: settings.cache_dir.clone(),
        folder: cache::folder_name(id),
        lacks,
        hint,
    }))
}
