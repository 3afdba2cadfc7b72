//! The schema of `logging.yaml` and its loading.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

use super::format::{Template, TimeFormat};
use super::loguru::LoguruConfig;
use super::LoggingError;

/// The contents of `logging.yaml`; `LoggingConfig::default()` is what a missing file means.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Level for the terminal (and the file, unless `file.level` is set).
    pub level: LogLevel,
    pub format: Template,
    pub time_format: TimeFormat,
    pub timezone: TimeZone,
    /// Target prefix (`tower_http`, `clarity_host::server`) → level.
    pub modules: BTreeMap<ModuleTarget, LogLevel>,
    pub file: Option<FileConfig>,
    pub color: ColorMode,
    pub stream: Stream,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        // The HTTP stack is chatty at info.
        let modules = ["hyper", "h2", "tower_http"]
            .into_iter()
            .map(|target| (ModuleTarget(target.to_owned()), LogLevel(LevelFilter::WARN)))
            .collect();
        Self {
            level: LogLevel::default(),
            format: Template::default(),
            time_format: TimeFormat::default(),
            timezone: TimeZone::Local,
            modules,
            file: None,
            color: ColorMode::Auto,
            stream: Stream::Stderr,
        }
    }
}

impl LoggingConfig {
    /// `EnvFilter` directives for `level` plus `modules`, e.g. `info,hyper=warn`.
    pub fn directives(&self, level: LogLevel) -> String {
        let mut out = level.0.to_string();
        for (target, level) in &self.modules {
            out.push_str(&format!(",{}={}", target.0, level.0));
        }
        out
    }
}

/// The `file:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Relative to the working directory.
    pub path: PathBuf,
    #[serde(default)]
    pub rotation: Rotation,
    /// Defaults to the top-level `level`.
    #[serde(default)]
    pub level: Option<LogLevel>,
    /// Keep at most this many log files, deleting the oldest.
    #[serde(default)]
    pub max_files: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    #[default]
    Daily,
    Hourly,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Only on a terminal, and not when `NO_COLOR` is set or `TERM=dumb`.
    #[default]
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    #[default]
    Stderr,
    Stdout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeZone {
    #[default]
    Local,
    Utc,
}

/// A level or `off`, in any case; `warning` is accepted for Python users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogLevel(pub LevelFilter);

impl Default for LogLevel {
    fn default() -> Self {
        LogLevel(LevelFilter::INFO)
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let name = s.trim();
        let name = if name.eq_ignore_ascii_case("warning") {
            "warn"
        } else {
            name
        };
        match LevelFilter::from_str(name) {
            // LevelFilter reads "" as ERROR; an empty level is more likely a mistake.
            Ok(level) if !name.is_empty() => Ok(LogLevel(level)),
            _ => Err(format!(
                "unknown level `{s}`, expected one of off, error, warn, info, debug, trace"
            )),
        }
    }
}

/// A key of `modules:`, checked so that it cannot inject other `EnvFilter` directives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ModuleTarget(String);

impl TryFrom<String> for ModuleTarget {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty module target".to_owned());
        }
        match s
            .chars()
            .find(|&c| c.is_whitespace() || ",=[]{}\"".contains(c))
        {
            Some(c) => Err(format!(
                "module target `{s}` contains `{c}`; use a target prefix such as `tower_http` \
                 or `clarity_host::server`"
            )),
            None => Ok(ModuleTarget(s)),
        }
    }
}

/// Reads `logging.yaml`. A missing or empty file gives [`LoggingConfig::default()`].
pub fn load_config(path: &Path) -> Result<LoggingConfig, LoggingError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_config(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LoggingConfig::default()),
        Err(cause) => Err(LoggingError::Read {
            path: path.to_owned(),
            cause,
        }),
    }
}

/// `logging.yaml` in either form.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    /// Ours (documented in the repository's `logging.yaml`).
    Clarity(LoggingConfig),
    /// The Python Clarity's loguru `handlers:` list.
    Loguru(LoguruConfig),
}

/// Reads `logging.yaml` in either form, told apart by a top-level `handlers` key. A missing
/// or empty file gives our defaults.
pub fn load_settings(path: &Path) -> Result<Settings, LoggingError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Settings::Clarity(LoggingConfig::default()))
        }
        Err(cause) => {
            return Err(LoggingError::Read {
                path: path.to_owned(),
                cause,
            })
        }
    };
    parse_settings(&text, path)
}

/// [`load_settings`] on text; `path` is only for error messages.
pub fn parse_settings(text: &str, path: &Path) -> Result<Settings, LoggingError> {
    let is_loguru = serde_yaml::from_str::<serde_yaml::Value>(text)
        .ok()
        .and_then(|v| v.as_mapping().map(|m| m.contains_key("handlers")))
        .unwrap_or(false);
    if is_loguru {
        let config: Option<LoguruConfig> = parse_yaml(text, path)?;
        config
            .map(Settings::Loguru)
            .ok_or_else(|| LoggingError::Parse {
                location: path.display().to_string(),
                message: "empty file".into(),
            })
    } else {
        parse_config(text, path).map(Settings::Clarity)
    }
}

/// Parses `logging.yaml` text; `path` is only for error messages, which read
/// `path:line:column: field: message`.
pub fn parse_config(text: &str, path: &Path) -> Result<LoggingConfig, LoggingError> {
    Ok(parse_yaml::<LoggingConfig>(text, path)?.unwrap_or_default())
}

fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    path: &Path,
) -> Result<Option<T>, LoggingError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    // serde_path_to_error names the full field (`modules.tower_http`); serde_yaml alone stops
    // at the map (`modules`).
    let err = match serde_path_to_error::deserialize::<_, Option<T>>(deserializer) {
        Ok(config) => return Ok(config),
        Err(err) => err,
    };
    let field = err.path().to_string();
    let err = err.into_inner();
    let mut location = path.display().to_string();
    if let Some(at) = err.location() {
        location.push_str(&format!(":{}:{}", at.line(), at.column()));
    }
    // serde_yaml's text is "[partial field: ]message[ at line L column C]"; both the field and
    // the position are reported in their own place.
    let mut message = err.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.is_empty() && field.starts_with(head) {
            message = rest.to_owned();
        }
    }
    if field != "." {
        message = format!("{field}: {message}");
    }
    Err(LoggingError::Parse { location, message })
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    fn parse_err(yaml: &str) -> String {
        parse_config(yaml, Path::new("conf/logging.yaml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn full_yaml_parses() {
        let cfg = config(
            "# comment\n\
             level: WARNING\n\
             format: \"{time} {level:<8} {target} {message}\"\n\
             time_format: \"%F %T\"\n\
             timezone: utc\n\
             modules:\n  clarity_host: debug\n  clarity_host::server: trace\n  hyper: warn\n\
             file:\n  path: logs/clarity.log\n  rotation: hourly\n  level: debug\n  max_files: 3\n\
             color: never\n\
             stream: stdout\n",
        );
        assert_eq!(cfg.level, LogLevel(LevelFilter::WARN));
        assert_eq!(
            cfg.format.to_string(),
            "{time} {level:<8} {target} {message}"
        );
        assert_eq!(cfg.time_format.to_string(), "%F %T");
        assert_eq!(cfg.timezone, TimeZone::Utc);
        assert_eq!(
            cfg.file,
            Some(FileConfig {
                path: PathBuf::from("logs/clarity.log"),
                rotation: Rotation::Hourly,
                level: Some(LogLevel(LevelFilter::DEBUG)),
                max_files: Some(3),
            })
        );
        assert_eq!(cfg.color, ColorMode::Never);
        assert_eq!(cfg.stream, Stream::Stdout);
        assert_eq!(
            cfg.directives(cfg.level),
            "warn,clarity_host=debug,clarity_host::server=trace,hyper=warn"
        );
    }

    #[test]
    fn missing_or_empty_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_config(&dir.path().join("logging.yaml")).unwrap();
        assert_eq!(missing, LoggingConfig::default());
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "# only a comment\n").unwrap();
        assert_eq!(load_config(&empty).unwrap(), LoggingConfig::default());
        let partial = config("level: debug\n");
        assert_eq!(partial.modules, LoggingConfig::default().modules);
    }

    #[test]
    fn the_repository_logging_yaml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../logging.yaml");
        assert!(path.is_file(), "{} is missing", path.display());
        let cfg = load_config(&path).unwrap();
        assert_eq!(cfg.format, Template::default());
        assert_eq!(cfg.time_format, TimeFormat::default());
    }

    #[test]
    fn errors_have_path_line_column_and_field() {
        let text = parse_err("level: info\ncolour: auto\n");
        assert!(
            text.starts_with("conf/logging.yaml:2:1: colour: unknown field `colour`"),
            "{text}"
        );
        let text = parse_err("file:\n  path: x.log\n  rotation: weekly\n");
        assert!(
            text.starts_with("conf/logging.yaml:3:13: file.rotation: unknown variant `weekly`"),
            "{text}"
        );
        let text = parse_err("modules:\n  tower_http: loud\n");
        assert!(
            text.starts_with("conf/logging.yaml:2:3: modules.tower_http: unknown level `loud`"),
            "{text}"
        );
        let text = parse_err("format: \"{time} {lvl}\"\n");
        assert!(
            text.starts_with("conf/logging.yaml:1:1: format: unknown placeholder `{lvl}`"),
            "{text}"
        );
        let text = parse_err("time_format: \"%Y %Q\"\n");
        assert!(
            text.contains(":1:1: time_format: invalid chrono strftime"),
            "{text}"
        );
        let text = parse_err("modules:\n  \"a b\": info\n");
        assert!(text.contains("contains ` `"), "{text}");
        let text = parse_err("level: \"\"\n");
        assert!(text.contains("level: unknown level ``"), "{text}");
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let text = parse_err("level: info\nformat: \"{time}\n");
        assert!(text.starts_with("conf/logging.yaml:3:1: "), "{text}");
        assert!(text.contains("quoted scalar"), "{text}");
        let text = parse_err("- just\n- a list\n");
        assert!(
            text.starts_with("conf/logging.yaml:1:1: invalid type"),
            "{text}"
        );
    }
}
