//! The Clarity line format: the `format` template, the `time_format` and the `tracing`
//! event formatter that applies them.

use std::fmt::{self, Write as _};

use chrono::format::StrftimeItems;
use chrono::{DateTime, FixedOffset, Local, Utc};
use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::config::{LoggingConfig, TimeZone};

/// The default `format`: the line of the original (Python) Clarity.
const DEFAULT_FORMAT: &str = "{time} | {level:<8} | {message}";
/// The default `time_format`.
const DEFAULT_TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A parsed `format:` template: literal text and the placeholders `{time}`, `{level}`
/// (optionally padded: `{level:<8}`), `{target}` and `{message}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Time,
    /// Left-aligned and padded with spaces to `width` characters.
    Level {
        width: usize,
    },
    Target,
    /// The message, then the event's fields as ` key=value`.
    Message,
}

impl Part {
    fn parse(placeholder: &str) -> Result<Part, String> {
        Ok(match placeholder {
            "time" => Part::Time,
            "level" => Part::Level { width: 0 },
            "target" => Part::Target,
            "message" => Part::Message,
            _ => {
                let Some(spec) = placeholder.strip_prefix("level:") else {
                    return Err(format!(
                        "unknown placeholder `{{{placeholder}}}`; expected {{time}}, {{level}}, \
                         {{level:<8}}, {{target}} or {{message}}"
                    ));
                };
                let width = spec.strip_prefix('<').unwrap_or(spec).parse();
                let width = width.map_err(|_| {
                    format!("`{{{placeholder}}}`: a level spec is only a width, as in {{level:<8}}")
                })?;
                Part::Level { width }
            }
        })
    }
}

impl Default for Template {
    fn default() -> Self {
        let separator = || Part::Literal(" | ".to_owned());
        Template {
            source: DEFAULT_FORMAT.to_owned(),
            parts: vec![
                Part::Time,
                separator(),
                Part::Level { width: 8 },
                separator(),
                Part::Message,
            ],
        }
    }
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(source: String) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{source}`"))?;
            parts.push(Part::parse(&rest[open + 1..open + close])?);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { source, parts })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// A `time_format`: a chrono strftime string, checked when loaded so that formatting a line
/// cannot fail. chrono re-parses it for every line, which costs far less than the write.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct TimeFormat(String);

impl Default for TimeFormat {
    fn default() -> Self {
        TimeFormat(DEFAULT_TIME_FORMAT.to_owned())
    }
}

impl TryFrom<String> for TimeFormat {
    type Error = String;
    fn try_from(format: String) -> Result<Self, String> {
        match StrftimeItems::new(&format).parse() {
            Ok(_) => Ok(TimeFormat(format)),
            Err(_) => Err(format!(
                "invalid chrono strftime format `{format}`: unknown or incomplete `%` directive \
                 (write `%%` for a literal %)"
            )),
        }
    }
}

impl fmt::Display for TimeFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `tracing` event formatter for the terminal and the file (the layer decides on colors).
#[derive(Debug, Clone)]
pub(super) struct LineFormat {
    template: Template,
    time_format: TimeFormat,
    timezone: TimeZone,
    /// Replaces the clock, for tests.
    pub(super) fixed_time: Option<DateTime<FixedOffset>>,
}

impl LineFormat {
    pub(super) fn new(config: &LoggingConfig) -> Self {
        LineFormat {
            template: config.format.clone(),
            time_format: config.time_format.clone(),
            timezone: config.timezone,
            fixed_time: None,
        }
    }

    fn now(&self) -> DateTime<FixedOffset> {
        match (self.fixed_time, self.timezone) {
            (Some(time), _) => time,
            (None, TimeZone::Local) => Local::now().fixed_offset(),
            (None, TimeZone::Utc) => Utc::now().fixed_offset(),
        }
    }
}

/// Python's level names (so that logs read and grep as before) and their ANSI colors.
fn level_style(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::TRACE => ("TRACE", "\x1b[35m"),
        Level::DEBUG => ("DEBUG", "\x1b[34m"),
        Level::INFO => ("INFO", "\x1b[32m"),
        Level::WARN => ("WARNING", "\x1b[33m"),
        Level::ERROR => ("ERROR", "\x1b[1;31m"),
    }
}

const RESET: &str = "\x1b[0m";

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        for part in &self.template.parts {
            match part {
                Part::Literal(text) => writer.write_str(text)?,
                Part::Time => write!(writer, "{}", self.now().format(&self.time_format.0))?,
                Part::Level { width } => {
                    let (name, color) = level_style(*meta.level());
                    if writer.has_ansi_escapes() {
                        write!(writer, "{color}{name:<width$}{RESET}")?;
                    } else {
                        write!(writer, "{name:<width$}")?;
                    }
                }
                Part::Target => {
                    writer.write_str(fields.log_target.as_deref().unwrap_or(meta.target()))?
                }
                Part::Message => {
                    writer.write_str(&fields.message)?;
                    let mut separator = if fields.message.is_empty() { "" } else { " " };
                    for (name, value) in &fields.pairs {
                        write!(writer, "{separator}{name}={value}")?;
                        separator = " ";
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// The message and `key=value` fields of one event.
#[derive(Default)]
pub(super) struct EventFields {
    pub(super) message: String,
    pub(super) pairs: Vec<(&'static str, String)>,
    /// The real target, file and line of a record forwarded from the `log` crate (whose
    /// `tracing` target is just `log`); its other `log.*` fields are dropped.
    pub(super) log_target: Option<String>,
    pub(super) log_file: Option<String>,
    pub(super) log_line: Option<u32>,
}

/// Quotes a text value that would not read as one `key=value` token.
fn quote_if_needed(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control());
    if plain {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_owned()),
            "log.file" => self.log_file = Some(value.to_owned()),
            name if name.starts_with("log.") => {}
            name => self.pairs.push((name, quote_if_needed(value))),
        }
    }

    /// The error and its chain of sources, `outer: inner`, rather than its `Debug`.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(inner) = source {
            let _ = write!(text, ": {inner}");
            source = inner.source();
        }
        match field.name() {
            "message" => self.message.push_str(&text),
            name => self.pairs.push((name, quote_if_needed(&text))),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "log.line" => self.log_line = u32::try_from(value).ok(),
            name if name.starts_with("log.") => {}
            "message" => {
                let _ = write!(self.message, "{value}");
            }
            name => self.pairs.push((name, value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            name if name.starts_with("log.") => {}
            name => self.pairs.push((name, format!("{value:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{config, Run};
    use super::*;

    fn template(source: &str) -> Result<Template, String> {
        Template::try_from(source.to_owned())
    }

    #[test]
    fn default_line_is_the_python_one() {
        let out = Run::new(LoggingConfig::default()).capture(|| tracing::info!("Training started"));
        assert_eq!(out, "2025-10-26 12:00:00 | INFO     | Training started\n");
        assert_eq!(template(DEFAULT_FORMAT), Ok(Template::default()));
    }

    #[test]
    fn every_level_is_padded_to_eight() {
        let out = Run::new(config("level: trace\nmodules: {}\n")).capture(|| {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        assert_eq!(
            out,
            "2025-10-26 12:00:00 | TRACE    | t\n\
             2025-10-26 12:00:00 | DEBUG    | d\n\
             2025-10-26 12:00:00 | INFO     | i\n\
             2025-10-26 12:00:00 | WARNING  | w\n\
             2025-10-26 12:00:00 | ERROR    | e\n"
        );
    }

    #[test]
    fn fields_follow_the_message() {
        let out = Run::new(LoggingConfig::default()).capture(|| {
            tracing::info!(model = "tfidf", rows = 512, ok = true, "Training started");
            tracing::info!(name = "two words", empty = "", ratio = 0.5, "quoted");
            tracing::info!(dbg = ?vec![1, 2], disp = %"a b", "debug and display");
            tracing::warn!(only = 1);
            let err = std::io::Error::other("disk full");
            let err: &(dyn std::error::Error + 'static) = &err;
            tracing::error!(error = err, "save failed");
        });
        let lines: Vec<&str> = out.lines().map(|l| &l[22..]).collect();
        assert_eq!(
            lines,
            [
                "INFO     | Training started model=tfidf rows=512 ok=true",
                "INFO     | quoted name=\"two words\" empty=\"\" ratio=0.5",
                "INFO     | debug and display dbg=[1, 2] disp=a b",
                "WARNING  | only=1",
                "ERROR    | save failed error=\"disk full\"",
            ]
        );
    }

    #[test]
    fn custom_template() {
        let cfg = config("format: \"[{level}] {target}: {message} {level:10}|\"\n");
        let out = Run::new(cfg).capture(|| tracing::warn!(target: "clarity_host::train", "slow"));
        assert_eq!(out, "[WARNING] clarity_host::train: slow WARNING   |\n");
    }

    #[test]
    fn template_errors() {
        let err = template("{time} {lvl}").unwrap_err();
        assert!(err.starts_with("unknown placeholder `{lvl}`"), "{err}");
        assert!(template("{time").unwrap_err().contains("unclosed"));
        assert!(template("{level:>8}").unwrap_err().contains("{level:<8}"));
        assert!(template("{level:<}").is_err());
    }

    #[test]
    fn time_format_is_chrono_strftime() {
        let cfg = config("format: \"{time}\"\ntime_format: \"%a %d %B %Y %T%.3f %:z, %6f\"\n");
        let mut run = Run::new(cfg);
        run.time = Some(DateTime::parse_from_rfc3339("2025-10-06T15:04:05.123456+02:00").unwrap());
        let out = run.capture(|| tracing::info!("x"));
        assert_eq!(out, "Mon 06 October 2025 15:04:05.123 +02:00, 123456\n");
        assert_eq!(
            TimeFormat::try_from(DEFAULT_TIME_FORMAT.to_owned()),
            Ok(TimeFormat::default())
        );
        for bad in ["%Q", "%Y-%", "%:"] {
            assert!(TimeFormat::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn real_clock_in_local_time_and_utc() {
        let mut run = Run::new(LoggingConfig::default());
        run.time = None;
        let out = run.capture(|| tracing::info!("now"));
        let (stamp, rest) = out.split_at(19);
        assert_eq!(rest, " | INFO     | now\n");
        assert!(
            DateTime::parse_from_str(&format!("{stamp} +0000"), "%F %T %z").is_ok(),
            "{stamp}"
        );

        let mut run = Run::new(config(
            "format: \"{time}\"\ntime_format: \"%z\"\ntimezone: utc\n",
        ));
        run.time = None;
        assert_eq!(run.capture(|| tracing::info!("x")), "+0000\n");
    }

    #[test]
    fn log_crate_records_show_their_own_target() {
        // What tracing-log makes of a `log` record: target `log` plus `log.*` fields.
        let out = Run::new(config("format: \"{target} {message}\"\n")).capture(|| {
            tracing::event!(
                target: "log",
                Level::INFO,
                log.target = "reqwest::connect",
                log.module_path = "reqwest::connect",
                log.file = "src/connect.rs",
                log.line = 42u64,
                "connecting"
            );
        });
        assert_eq!(out, "reqwest::connect connecting\n");
    }
}
