//! Logging for `clarity-host`: `logging.yaml`, the Clarity line format and the global
//! `tracing` subscriber.
//!
//! The default line is the one the original (Python) Clarity wrote, with the event's fields
//! appended as ` key=value`:
//!
//! ```text
//! 2025-10-26 12:00:00 | WARNING  | slow batch model=clarity-tfidf rows=512
//! ```
//!
//! The keys of `logging.yaml` are documented in the repository's `logging.yaml`. The Python
//! Clarity's file, loguru's `handlers:` list, is read too (module `loguru`): one layer per
//! handler, each with its own sink, level, format and colours ([`install`] picks the form).
//!
//! The terminal filter is the first of these that is set and non-empty, and it replaces the
//! others entirely (`EnvFilter` syntax, e.g. `info,clarity_host::train=trace,hyper=warn`):
//! the override given to [`init`] (`--log-level`), `CLARITY_LOG`, `RUST_LOG`, then `level` +
//! `modules` from `logging.yaml`. The log file always uses `file.level` + `modules`.

mod config;
mod format;
mod loguru;
mod loguru_format;
mod loguru_markup;
mod loguru_time;
mod rotating;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::RollingFileAppender;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

pub use config::{load_config, load_settings, LoggingConfig, Settings};
use config::{ColorMode, FileConfig, Rotation, Stream};
use format::LineFormat;
use loguru::{LoguruConfig, Sink};
use loguru_format::LoguruFormat;
use rotating::RotatingFile;
use tracing_subscriber::Registry;

/// Environment variables read for terminal filter directives, in order of precedence.
const FILTER_ENV_VARS: [&str; 2] = ["CLARITY_LOG", "RUST_LOG"];

/// Everything that can go wrong while loading the logging configuration or installing it.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot read logging config {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Invalid YAML or schema; `location` is `path:line:column` (or less, when unknown).
    #[error("{location}: {message}")]
    Parse { location: String, message: String },
    #[error("invalid log filter from {origin} `{directives}`: {cause}")]
    Filter {
        origin: String,
        directives: String,
        cause: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot open log file {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("cannot install the logging subscriber: {0}")]
    AlreadyInitialized(String),
}

/// Keeps the background log-file writer alive; dropping it flushes the file. Hold it until
/// the end of `main`.
#[must_use = "dropping the guard stops the log-file writer"]
#[derive(Debug, Default)]
pub struct LoggingGuard {
    _files: Vec<WorkerGuard>,
}

/// Installs the global `tracing` subscriber for `config` (and, through `tracing-log`, forwards
/// `log` crate records to it). `verbosity_override` is an `EnvFilter` string, e.g. from
/// `--log-level`; see the module docs for its precedence.
pub fn init(
    config: &LoggingConfig,
    verbosity_override: Option<&str>,
) -> Result<LoggingGuard, LoggingError> {
    let env = |name: &str| std::env::var(name).ok();
    let (terminal, is_tty) = match config.stream {
        Stream::Stderr => (
            BoxMakeWriter::new(crate::console::Stderr),
            std::io::stderr().is_terminal(),
        ),
        Stream::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
    };
    let color = use_color(config.color, is_tty, &env);
    let (subscriber, guard) = build_subscriber(
        config,
        verbosity_override,
        &env,
        (terminal, color),
        LineFormat::new(config),
    )?;
    subscriber
        .try_init()
        .map_err(|e| LoggingError::AlreadyInitialized(e.to_string()))?;
    Ok(guard)
}

/// The subscriber without installing it, so that tests can capture the terminal and fix the
/// clock. `terminal` is the writer and whether it gets colors.
fn build_subscriber(
    config: &LoggingConfig,
    verbosity_override: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    terminal: (BoxMakeWriter, bool),
    format: LineFormat,
) -> Result<(impl Subscriber + Send + Sync + 'static, LoggingGuard), LoggingError> {
    let (writer, color) = terminal;
    let terminal = tracing_subscriber::fmt::layer()
        .event_format(format.clone())
        .with_writer(writer)
        .with_ansi(color)
        .with_filter(terminal_filter(config, verbosity_override, env)?);

    let mut guard = LoggingGuard::default();
    let file_layer = match &config.file {
        Some(file) => {
            let directives = config.directives(file.level.unwrap_or(config.level));
            let filter = parse_filter("logging.yaml (file)", &directives)?;
            let (writer, worker) = file_writer(file)?;
            guard._files.push(worker);
            let layer = tracing_subscriber::fmt::layer()
                .event_format(format)
                .with_writer(writer)
                .with_ansi(false)
                .with_filter(filter);
            Some(layer)
        }
        None => None,
    };
    let subscriber = tracing_subscriber::registry()
        .with(terminal)
        .with(file_layer);
    Ok((subscriber, guard))
}

fn parse_filter(origin: &str, directives: &str) -> Result<EnvFilter, LoggingError> {
    // Targets that no directive names are off, so `CLARITY_LOG=noisy=info` shows only `noisy`.
    EnvFilter::builder()
        .with_default_directive(LevelFilter::OFF.into())
        .parse(directives)
        .map_err(|cause| LoggingError::Filter {
            origin: origin.to_owned(),
            directives: directives.to_owned(),
            cause,
        })
}

/// The first non-empty one of: the override, `CLARITY_LOG`, `RUST_LOG`, the YAML. Only the
/// one used is parsed, so a broken variable behind a valid override does no harm.
fn terminal_filter(
    config: &LoggingConfig,
    verbosity_override: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvFilter, LoggingError> {
    match override_filter(verbosity_override, env) {
        Some(filter) => filter,
        None => parse_filter("logging.yaml", &config.directives(config.level)),
    }
}

/// The override's or the environment's filter, if one is set.
fn override_filter(
    verbosity_override: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<EnvFilter, LoggingError>> {
    let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    if let Some(value) = set(verbosity_override.map(str::to_owned)) {
        return Some(parse_filter("the log level override", value.trim()));
    }
    for name in FILTER_ENV_VARS {
        if let Some(value) = set(env(name)) {
            return Some(parse_filter(name, value.trim()));
        }
    }
    None
}

/// Installs the subscriber for `logging.yaml` in either form.
pub fn install(
    settings: &Settings,
    verbosity_override: Option<&str>,
) -> Result<LoggingGuard, LoggingError> {
    let config = match settings {
        Settings::Clarity(config) => return init(config, verbosity_override),
        Settings::Loguru(config) => config,
    };
    let env = |name: &str| std::env::var(name).ok();
    let terminal = |sink: &Sink| match sink {
        Sink::Stdout => Some((
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        )),
        Sink::Stderr => Some((
            BoxMakeWriter::new(crate::console::Stderr),
            std::io::stderr().is_terminal(),
        )),
        Sink::File(_) => None,
    };
    let (layers, guard) = loguru_layers(config, verbosity_override, &env, &terminal, None)?;
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| LoggingError::AlreadyInitialized(e.to_string()))?;
    Ok(guard)
}

/// Plain `LEVEL target: message` lines on stderr at `level` (default `info`), for a
/// model's process: its server reads them and logs them with its own settings.
pub fn install_plain_stderr(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_new(level.unwrap_or("info"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// A terminal writer for a `sys.stdout` / `sys.stderr` sink and whether it is a terminal.
type TerminalFor<'a> = &'a dyn Fn(&Sink) -> Option<(BoxMakeWriter, bool)>;

/// One layer per loguru handler. Terminal sinks follow `--log-level` / `CLARITY_LOG` /
/// `RUST_LOG` when set; every sink keeps the HTTP stack at warnings, as our defaults do.
fn loguru_layers(
    config: &LoguruConfig,
    verbosity_override: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    terminal: TerminalFor<'_>,
    fixed_time: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> Result<(Vec<BoxedLayer>, LoggingGuard), LoggingError> {
    let extra = loguru::extra_reprs(&config.extra);
    let mut layers = Vec::new();
    let mut guard = LoggingGuard::default();
    for handler in &config.handlers {
        let mut format = LoguruFormat::new(handler.format.clone(), extra.clone());
        format.fixed_time = fixed_time;
        let directives = loguru::FilterRule::directives(handler.filter.as_ref(), handler.level.0);
        let own_filter = || parse_filter("logging.yaml", &directives);
        let layer = match (&handler.sink, terminal(&handler.sink)) {
            (Sink::File(path), _) => {
                let rotation = handler.rotation.map(|r| r.0);
                let retention = handler.retention.map(|r| r.0);
                let file = RotatingFile::open(path, rotation, retention).map_err(|e| {
                    LoggingError::File {
                        path: path.clone(),
                        message: e.to_string(),
                    }
                })?;
                let (writer, worker) = NonBlockingBuilder::default()
                    .lossy(false)
                    .thread_name("clarity-log-file")
                    .finish(file);
                guard._files.push(worker);
                tracing_subscriber::fmt::layer()
                    .event_format(format)
                    .with_writer(writer)
                    .with_ansi(handler.colorize.unwrap_or(false))
                    .with_filter(own_filter()?)
                    .boxed()
            }
            (_, Some((writer, is_tty))) => {
                let color = match handler.colorize {
                    Some(color) => color,
                    None => use_color(ColorMode::Auto, is_tty, env),
                };
                let filter = match override_filter(verbosity_override, env) {
                    Some(filter) => filter?,
                    None => own_filter()?,
                };
                tracing_subscriber::fmt::layer()
                    .event_format(format)
                    .with_writer(writer)
                    .with_ansi(color)
                    .with_filter(filter)
                    .boxed()
            }
            (_, None) => continue,
        };
        layers.push(layer);
    }
    Ok((layers, guard))
}

/// A non-blocking writer to the (rotated) log file. With rotation the date goes between the
/// file stem and the extension: `logs/clarity.log` → `logs/clarity.2025-10-26.log`.
fn file_writer(file: &FileConfig) -> Result<(NonBlocking, WorkerGuard), LoggingError> {
    let err = |message: String| LoggingError::File {
        path: file.path.clone(),
        message,
    };
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| err("the path has no (UTF-8) file name".to_owned()))?;
    let dir = match file.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| err(format!("cannot create directory {}: {e}", dir.display())))?;
    let rotation = match file.rotation {
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
    };
    let mut builder = RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix(stem);
    if let Some(extension) = file.path.extension().and_then(|e| e.to_str()) {
        builder = builder.filename_suffix(extension);
    }
    if let Some(max) = file.max_files {
        // tracing-appender reads 0 as "unlimited"; for us it means "keep just the current one".
        builder = builder.max_log_files(max.max(1));
    }
    let appender = builder.build(dir).map_err(|e| err(e.to_string()))?;
    Ok(NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("clarity-log-file")
        .finish(appender))
}

/// Whether the terminal gets colors (`NO_COLOR`: <https://no-color.org>).
fn use_color(mode: ColorMode, is_tty: bool, env: &dyn Fn(&str) -> Option<String>) -> bool {
    match mode {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => {
            is_tty
                && env("NO_COLOR").is_none_or(|v| v.is_empty())
                && env("TERM").as_deref() != Some("dumb")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, FixedOffset};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` appending to a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The fixed clock of these tests.
    fn t0() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2025-10-26T12:00:00Z").unwrap()
    }

    /// One subscriber built from `config`, with a captured terminal and a fixed clock.
    pub(super) struct Run<'a> {
        pub config: LoggingConfig,
        pub verbosity: Option<&'a str>,
        pub env: Vec<(&'a str, &'a str)>,
        pub tty: bool,
        pub time: Option<DateTime<FixedOffset>>,
    }

    impl<'a> Run<'a> {
        pub fn new(config: LoggingConfig) -> Self {
            Run {
                config,
                verbosity: None,
                env: Vec::new(),
                tty: false,
                time: Some(t0()),
            }
        }

        pub fn try_capture(self, f: impl FnOnce()) -> Result<String, LoggingError> {
            let env: HashMap<&str, &str> = self.env.into_iter().collect();
            let lookup = |name: &str| env.get(name).map(|v| v.to_string());
            let capture = Capture::default();
            let sink = capture.clone();
            let terminal = BoxMakeWriter::new(move || sink.clone());
            let color = use_color(self.config.color, self.tty, &lookup);
            let mut format = LineFormat::new(&self.config);
            format.fixed_time = self.time;
            let (subscriber, guard) = build_subscriber(
                &self.config,
                self.verbosity,
                &lookup,
                (terminal, color),
                format,
            )?;
            tracing::subscriber::with_default(subscriber, f);
            drop(guard);
            let bytes = capture.0.lock().unwrap().clone();
            Ok(String::from_utf8(bytes).unwrap())
        }

        pub fn capture(self, f: impl FnOnce()) -> String {
            self.try_capture(f).unwrap()
        }
    }

    pub(super) fn config(yaml: &str) -> LoggingConfig {
        super::config::parse_config(yaml, Path::new("logging.yaml")).unwrap()
    }

    /// The messages of default-format lines (after `2025-10-26 12:00:00 | LEVEL    | `).
    fn messages(out: &str) -> Vec<&str> {
        out.lines().map(|l| &l[33..]).collect()
    }

    #[test]
    fn colors_only_the_level_and_only_on_a_tty() {
        let emit = || tracing::warn!(n = 1, "careful");
        let colored = "2025-10-26 12:00:00 | \x1b[33mWARNING \x1b[0m | careful n=1\n";
        let plain = "2025-10-26 12:00:00 | WARNING  | careful n=1\n";
        let run = |yaml: &str, tty: bool, env: Vec<(&'static str, &'static str)>| {
            let mut run = Run::new(config(yaml));
            run.tty = tty;
            run.env = env;
            run.capture(emit)
        };
        assert_eq!(run("", true, vec![]), colored);
        assert_eq!(run("", false, vec![]), plain, "auto, not a tty");
        assert_eq!(run("", true, vec![("NO_COLOR", "1")]), plain, "NO_COLOR");
        assert_eq!(run("color: never", true, vec![]), plain);
        assert_eq!(run("color: always", false, vec![]), colored);
    }

    #[test]
    fn per_module_levels_filter() {
        let cfg = config(
            "level: info\nmodules:\n  noisy: warn\n  chatty: debug\n  chatty::deep: error\n",
        );
        let out = Run::new(cfg).capture(|| {
            tracing::info!(target: "noisy", "noisy info");
            tracing::warn!(target: "noisy::sub", "noisy warn");
            tracing::debug!(target: "chatty", "chatty debug");
            tracing::warn!(target: "chatty::deep", "deep warn");
            tracing::error!(target: "chatty::deep", "deep error");
            tracing::debug!(target: "other", "other debug");
            tracing::info!(target: "other", "other info");
        });
        assert_eq!(
            messages(&out),
            ["noisy warn", "chatty debug", "deep error", "other info"]
        );
    }

    #[test]
    fn override_then_clarity_log_then_rust_log_then_yaml() {
        let emit = || {
            tracing::info!(target: "noisy", "noisy info");
            tracing::debug!(target: "other", "other debug");
            tracing::warn!(target: "keep", "keep warn");
            tracing::trace!(target: "other", "other trace");
        };
        let run = |verbosity: Option<&'static str>, env: Vec<(&'static str, &'static str)>| {
            let mut run = Run::new(config("modules:\n  noisy: warn\n  keep: error\n"));
            run.verbosity = verbosity;
            run.env = env;
            run.capture(emit)
        };

        assert!(run(None, vec![]).is_empty(), "YAML");
        let out = run(
            None,
            vec![("CLARITY_LOG", "noisy=info"), ("RUST_LOG", "trace")],
        );
        assert_eq!(
            messages(&out),
            ["noisy info"],
            "CLARITY_LOG wins over RUST_LOG"
        );
        let out = run(None, vec![("CLARITY_LOG", " "), ("RUST_LOG", "debug")]);
        assert_eq!(
            messages(&out),
            ["noisy info", "other debug", "keep warn"],
            "an empty CLARITY_LOG falls back to RUST_LOG"
        );
        let out = run(
            Some("trace,noisy=warn,keep=off"),
            vec![("CLARITY_LOG", "debug")],
        );
        assert_eq!(
            messages(&out),
            ["other debug", "other trace"],
            "the override wins over the environment"
        );
        let out = run(Some("error"), vec![("CLARITY_LOG", "not=valid=at all")]);
        assert!(out.is_empty(), "an unused variable is not parsed");
    }

    #[test]
    fn invalid_filters_name_their_origin() {
        let mut run = Run::new(LoggingConfig::default());
        run.env = vec![("CLARITY_LOG", "foo=loud")];
        let err = run.try_capture(|| {}).unwrap_err();
        assert!(
            err.to_string().contains("from CLARITY_LOG `foo=loud`"),
            "{err}"
        );

        let mut run = Run::new(LoggingConfig::default());
        run.verbosity = Some("[[[");
        let err = run.try_capture(|| {}).unwrap_err();
        assert!(err.to_string().contains("override"), "{err}");
    }

    #[test]
    fn log_file_gets_its_own_level_and_no_colors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/clarity.log");
        let yaml = format!(
            "color: always\nfile:\n  path: {}\n  rotation: never\n  level: debug\n",
            path.display()
        );
        let mut run = Run::new(config(&yaml));
        run.env = vec![("CLARITY_LOG", "error")];
        let terminal = run.capture(|| {
            tracing::debug!("to the file only");
            tracing::error!(code = 7, "everywhere");
        });
        assert_eq!(
            terminal,
            "2025-10-26 12:00:00 | \x1b[1;31mERROR   \x1b[0m | everywhere code=7\n"
        );
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "2025-10-26 12:00:00 | DEBUG    | to the file only\n\
             2025-10-26 12:00:00 | ERROR    | everywhere code=7\n"
        );
    }

    #[test]
    fn rotated_file_name_puts_the_date_before_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "file: {{path: {}/clarity.log, rotation: daily}}\n",
            dir.path().display()
        );
        Run::new(config(&yaml)).capture(|| tracing::info!("hello"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let [name] = names.as_slice() else {
            panic!("{names:?}")
        };
        assert!(
            name.starts_with("clarity.") && name.ends_with(".log"),
            "{name}"
        );
        assert_eq!(name.len(), "clarity.2025-10-26.log".len(), "{name}");
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.ends_with(" | INFO     | hello\n"), "{text}");
    }

    /// Runs `f` under the layers of a loguru `yaml`, the terminal sinks captured.
    fn loguru_capture(yaml: &str, verbosity: Option<&str>, f: impl FnOnce()) -> (String, String) {
        let Settings::Loguru(cfg) =
            config::parse_settings(yaml, Path::new("logging.yaml")).unwrap()
        else {
            panic!("not read as the loguru form");
        };
        let (stdout, stderr) = (Capture::default(), Capture::default());
        let (out, err) = (stdout.clone(), stderr.clone());
        let terminal = move |sink: &Sink| -> Option<(BoxMakeWriter, bool)> {
            let capture = match sink {
                Sink::Stdout => out.clone(),
                Sink::Stderr => err.clone(),
                Sink::File(_) => return None,
            };
            Some((BoxMakeWriter::new(move || capture.clone()), false))
        };
        let no_env = |_: &str| None;
        let (layers, guard) =
            loguru_layers(&cfg, verbosity, &no_env, &terminal, Some(t0())).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layers), f);
        drop(guard);
        let text = |c: Capture| String::from_utf8(c.0.lock().unwrap().clone()).unwrap();
        (text(stdout), text(stderr))
    }

    const PYTHON_CLARITY: &str = "handlers:\n  - sink: \"sys.stdout\"\n    level: \"DEBUG\"\n    \
        format: \"{time:YYYY-MM-DD HH:mm:ss} | <level>{level: <8}</level> | {message}\"\n    \
        colorize: COLORIZE\n";

    #[test]
    fn the_python_clarity_logging_yaml_gives_its_line() {
        let emit = || {
            tracing::trace!("hidden below DEBUG");
            tracing::debug!("Loading");
            tracing::info!("Training started");
            tracing::warn!(rows = 3, "slow");
        };
        let (out, err) = loguru_capture(&PYTHON_CLARITY.replace("COLORIZE", "true"), None, emit);
        assert_eq!(
            out,
            "2025-10-26 12:00:00 | \x1b[34;1mDEBUG   \x1b[0m | Loading\n\
             2025-10-26 12:00:00 | \x1b[1mINFO    \x1b[0m | Training started\n\
             2025-10-26 12:00:00 | \x1b[33;1mWARNING \x1b[0m | slow rows=3\n"
        );
        assert!(err.is_empty());
        let (out, _) = loguru_capture(&PYTHON_CLARITY.replace("COLORIZE", "false"), None, emit);
        assert_eq!(
            out,
            "2025-10-26 12:00:00 | DEBUG    | Loading\n\
             2025-10-26 12:00:00 | INFO     | Training started\n\
             2025-10-26 12:00:00 | WARNING  | slow rows=3\n"
        );
        // The command line's level wins on the terminal, as with our own form.
        let (out, _) = loguru_capture(
            &PYTHON_CLARITY.replace("COLORIZE", "false"),
            Some("warn"),
            emit,
        );
        assert_eq!(out, "2025-10-26 12:00:00 | WARNING  | slow rows=3\n");
    }

    #[test]
    fn several_loguru_handlers_with_their_own_levels_formats_and_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("logs/app.log");
        let yaml = format!(
            "extra: {{app: clarity}}\n\
             handlers:\n\
             - sink: sys.stderr\n  level: SUCCESS\n  \
               format: \"<red><b>{{level.no:>3}}</b></red> {{name}}:{{function}}:{{line}} {{message}} {{extra}}\"\n  \
               colorize: true\n\
             - sink: {}\n  level: 20\n  format: \"{{time:HH:mm:ss.SSS ZZ!UTC}} {{module}} {{file}} <level>{{message}}</level> {{extra[app]}}\"\n  \
               rotation: 10 MB\n  retention: 3\n",
            file.display()
        );
        let error_line = std::cell::Cell::new(0);
        let (out, err) = loguru_capture(&yaml, None, || {
            tracing::info!(target: "clarity_host::train", "epoch done");
            error_line.set(line!() + 1);
            tracing::error!(model = "m", "failed");
        });
        assert!(out.is_empty());
        let line = error_line.get();
        assert_eq!(
            err,
            format!(
                "\x1b[31m\x1b[1m 40\x1b[0m\x1b[31m\x1b[0m clarity_host::logging::tests:?:{line} failed \
                 {{'app': 'clarity', 'model': 'm'}}\n"
            )
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            "12:00:00.000 +0000 tests mod.rs epoch done clarity\n\
             12:00:00.000 +0000 tests mod.rs failed model=m clarity\n"
        );
    }

    #[test]
    fn a_loguru_filter_picks_modules() {
        let yaml =
            "handlers:\n- sink: sys.stdout\n  level: INFO\n  format: \"{name} {message}\"\n  \
                    filter: {\"\": ERROR, clarity_host.train: DEBUG}\n";
        let (out, _) = loguru_capture(yaml, None, || {
            tracing::debug!(target: "clarity_host::train", "below the handler's level");
            tracing::info!(target: "clarity_host::train::loop", "epoch");
            tracing::info!(target: "other", "hidden");
            tracing::error!(target: "other", "shown");
        });
        assert_eq!(out, "clarity_host::train::loop epoch\nother shown\n");
    }
}
