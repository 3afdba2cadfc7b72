//! `logging.yaml` in the Python Clarity's form: loguru's `handlers` list.
//!
//! ```yaml
//! handlers:
//!   - sink: "sys.stdout"          # sys.stdout | sys.stderr | a file path
//!     level: "DEBUG"              # TRACE DEBUG INFO SUCCESS WARNING ERROR CRITICAL, or 0-50
//!     format: "{time:YYYY-MM-DD HH:mm:ss} | <level>{level: <8}</level> | {message}"
//!     colorize: true              # default: only on a terminal
//!     rotation: "10 MB"           # file sinks: size, interval ("1 day"), or "daily"
//!     retention: "7 days"         # file sinks: an age, or a count of rotated files
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

use super::loguru_format::LoguruTemplate;
use super::rotating::{Period, Retention, Rotation};

/// A `logging.yaml` with a `handlers:` list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoguruConfig {
    pub handlers: Vec<Handler>,
    /// Values for `{extra}` / `{extra[key]}`.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_yaml::Value>,
}

/// One loguru handler.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    pub sink: Sink,
    /// loguru's default is DEBUG.
    #[serde(default = "debug")]
    pub level: LoguruLevel,
    #[serde(default)]
    pub format: LoguruTemplate,
    /// `None`: colours only on a terminal (and not with `NO_COLOR`).
    #[serde(default)]
    pub colorize: Option<bool>,
    #[serde(default)]
    pub rotation: Option<RotationRule>,
    #[serde(default)]
    pub retention: Option<RetentionRule>,
    #[serde(default)]
    pub filter: Option<FilterRule>,
    /// loguru options that change nothing here: lines are always written by a background
    /// thread (`enqueue`), and Rust errors have no Python traceback to extend.
    #[serde(default)]
    pub enqueue: Option<bool>,
    #[serde(default)]
    pub backtrace: Option<bool>,
    #[serde(default)]
    pub diagnose: Option<bool>,
    #[serde(default)]
    pub catch: Option<bool>,
}

fn debug() -> LoguruLevel {
    LoguruLevel(LevelFilter::DEBUG)
}

/// Where a handler writes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum Sink {
    Stdout,
    Stderr,
    /// Relative to the working directory, as in loguru.
    File(PathBuf),
}

impl TryFrom<String> for Sink {
    type Error = String;
    fn try_from(sink: String) -> Result<Self, String> {
        match sink.trim() {
            "sys.stdout" | "ext://sys.stdout" => Ok(Sink::Stdout),
            "sys.stderr" | "ext://sys.stderr" => Ok(Sink::Stderr),
            "" => Err("empty sink; use sys.stdout, sys.stderr or a file path".into()),
            path if path.contains('{') => Err(format!(
                "sink `{path}`: placeholders in file names are not supported; use a fixed \
                 name (rotated files get a timestamp)"
            )),
            path => Ok(Sink::File(PathBuf::from(path))),
        }
    }
}

/// A loguru level (name or number) as the nearest `tracing` filter: SUCCESS shows what
/// loguru would (warnings and errors), CRITICAL is ERROR, the most severe Rust level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct LoguruLevel(pub LevelFilter);

impl TryFrom<serde_yaml::Value> for LoguruLevel {
    type Error = String;
    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        let by_number = |n: u64| match n {
            0..=5 => LevelFilter::TRACE,
            6..=10 => LevelFilter::DEBUG,
            11..=20 => LevelFilter::INFO,
            21..=30 => LevelFilter::WARN,
            _ => LevelFilter::ERROR,
        };
        let level = match &value {
            serde_yaml::Value::Number(n) if n.as_u64().is_some() => {
                by_number(n.as_u64().unwrap_or(0))
            }
            serde_yaml::Value::String(name) => match name.trim().to_ascii_uppercase().as_str() {
                "TRACE" => LevelFilter::TRACE,
                "DEBUG" => LevelFilter::DEBUG,
                "INFO" => LevelFilter::INFO,
                "SUCCESS" | "WARNING" | "WARN" => LevelFilter::WARN,
                "ERROR" | "CRITICAL" => LevelFilter::ERROR,
                _ => return Err(level_error(&value)),
            },
            _ => return Err(level_error(&value)),
        };
        Ok(LoguruLevel(level))
    }
}

fn level_error(value: &serde_yaml::Value) -> String {
    let shown = serde_yaml::to_string(value).unwrap_or_default();
    format!(
        "unknown level `{}`; expected TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL \
         or a number 0-50",
        shown.trim()
    )
}

/// `filter:` — a module prefix (only its records), or `{module: level}` with `""` for the
/// rest and `false` for off. Python's dots read as Rust's `::`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct FilterRule {
    /// For targets no entry names; `None`: the handler's level.
    pub default: Option<LevelFilter>,
    pub modules: Vec<(String, LevelFilter)>,
}

impl FilterRule {
    /// `EnvFilter` directives for a handler at `level`: an entry never shows more than the
    /// handler's level, and the HTTP stack stays at warnings unless named.
    pub fn directives(rule: Option<&FilterRule>, level: LevelFilter) -> String {
        let default = rule.and_then(|r| r.default).map_or(level, |d| d.min(level));
        let mut out = default.to_string();
        let named = |target: &str| rule.is_some_and(|r| r.modules.iter().any(|(t, _)| t == target));
        for quiet in ["hyper", "h2", "tower_http"] {
            if !named(quiet) {
                out.push_str(&format!(",{quiet}={}", default.min(LevelFilter::WARN)));
            }
        }
        for (target, module_level) in rule.map(|r| r.modules.as_slice()).unwrap_or_default() {
            out.push_str(&format!(",{target}={}", (*module_level).min(level)));
        }
        out
    }
}

fn filter_target(module: &str) -> Result<String, String> {
    let target = module.trim().replace('.', "::");
    match target
        .chars()
        .find(|&c| c.is_whitespace() || ",=[]{}\"".contains(c))
    {
        Some(c) => Err(format!("filter module `{module}` contains `{c}`")),
        None => Ok(target),
    }
}

impl TryFrom<serde_yaml::Value> for FilterRule {
    type Error = String;
    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        match value {
            serde_yaml::Value::String(module) if !module.trim().is_empty() => Ok(FilterRule {
                default: Some(LevelFilter::OFF),
                modules: vec![(filter_target(&module)?, LevelFilter::TRACE)],
            }),
            serde_yaml::Value::String(_) => Ok(FilterRule {
                default: None,
                modules: Vec::new(),
            }),
            serde_yaml::Value::Mapping(entries) => {
                let mut rule = FilterRule {
                    default: None,
                    modules: Vec::new(),
                };
                for (key, level) in entries {
                    let Some(module) = key.as_str() else {
                        return Err(format!("filter keys are module names, got {key:?}"));
                    };
                    let level = match level {
                        serde_yaml::Value::Bool(false) => LevelFilter::OFF,
                        serde_yaml::Value::Bool(true) => LevelFilter::TRACE,
                        other => LoguruLevel::try_from(other)?.0,
                    };
                    if module.trim().is_empty() {
                        rule.default = Some(level);
                    } else {
                        rule.modules.push((filter_target(module)?, level));
                    }
                }
                Ok(rule)
            }
            other => Err(format!(
                "filter must be a module name or a map of module: level, got {other:?}"
            )),
        }
    }
}

/// `rotation:` — `"10 MB"`, `"1 day"`, `"daily"`, or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct RotationRule(pub Rotation);

impl TryFrom<serde_yaml::Value> for RotationRule {
    type Error = String;
    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        let text = match value {
            serde_yaml::Value::Number(n) => match n.as_u64() {
                Some(bytes) if bytes > 0 => return Ok(RotationRule(Rotation::Size(bytes))),
                _ => return Err(format!("rotation `{n}`: a size in bytes must be above 0")),
            },
            serde_yaml::Value::String(s) => s,
            other => {
                return Err(format!(
                    "rotation must be a string or a size, got {other:?}"
                ))
            }
        };
        let period = match text.trim().to_ascii_lowercase().as_str() {
            "hourly" => Some(Period::Hour),
            "daily" => Some(Period::Day),
            "weekly" => Some(Period::Week),
            "monthly" => Some(Period::Month),
            "yearly" | "annually" => Some(Period::Year),
            _ => None,
        };
        if let Some(period) = period {
            return Ok(RotationRule(Rotation::At(period)));
        }
        if let Some(bytes) = parse_size(&text) {
            return if bytes > 0 {
                Ok(RotationRule(Rotation::Size(bytes)))
            } else {
                Err(format!("rotation `{text}`: a size must be above 0"))
            };
        }
        match parse_duration(&text) {
            Some(every) if !every.is_zero() => Ok(RotationRule(Rotation::Every(every))),
            _ => Err(format!(
                "unsupported rotation `{text}`; use a size (\"10 MB\", \"500 KB\"), an interval \
                 (\"1 day\", \"6 hours\", \"1 week, 3 days\") or hourly/daily/weekly/monthly/yearly"
            )),
        }
    }
}

/// `retention:` — `"7 days"` or a count of rotated files.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "serde_yaml::Value")]
pub struct RetentionRule(pub Retention);

impl TryFrom<serde_yaml::Value> for RetentionRule {
    type Error = String;
    fn try_from(value: serde_yaml::Value) -> Result<Self, String> {
        match value {
            serde_yaml::Value::Number(n) => match n.as_u64() {
                Some(count) => Ok(RetentionRule(Retention::Count(count as usize))),
                None => Err(format!(
                    "retention `{n}`: a count of files must be 0 or more"
                )),
            },
            serde_yaml::Value::String(text) => match parse_duration(&text) {
                Some(age) => Ok(RetentionRule(Retention::Age(age))),
                None => Err(format!(
                    "unsupported retention `{text}`; use an age (\"7 days\", \"1 week\") or a \
                     count of files (10)"
                )),
            },
            other => Err(format!(
                "retention must be an age or a count, got {other:?}"
            )),
        }
    }
}

/// loguru's sizes: `"10 MB"` (decimal), `"10 MiB"` (binary), lower-case `b` is bits.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let number: f64 = text[..split].trim().parse().ok()?;
    let unit = &text[split..];
    let (bits, unit) = match unit.strip_suffix('B') {
        Some(rest) => (false, rest),
        None => (true, unit.strip_suffix('b')?),
    };
    let (binary, unit) = match unit.strip_suffix(['i', 'I']) {
        Some(rest) if !rest.is_empty() => (true, rest),
        _ => (false, unit),
    };
    let power = match unit.to_ascii_lowercase().as_str() {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        _ => return None,
    };
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let bytes = number * base.powi(power) / if bits { 8.0 } else { 1.0 };
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// loguru's durations: `"1 day"`, `"2 hours"`, `"1 week, 3 days"`, `"30 s"`.
fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = rest[number_end..].trim_start();
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds = match rest[..unit_end].to_ascii_lowercase().as_str() {
            "us" | "microsecond" | "microseconds" => 1e-6,
            "ms" | "millisecond" | "milliseconds" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "mo" | "month" | "months" => 30.0 * 86_400.0,
            "y" | "year" | "years" => 365.0 * 86_400.0,
            _ => return None,
        };
        total += number * seconds;
        rest = rest[unit_end..].trim_start_matches([',', ' ']);
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The `extra` values as Python would print them inside a dict.
pub fn extra_reprs(extra: &BTreeMap<String, serde_yaml::Value>) -> Vec<(String, String)> {
    extra
        .iter()
        .map(|(key, value)| {
            let repr = match value {
                serde_yaml::Value::String(s) => format!("'{s}'"),
                serde_yaml::Value::Bool(true) => "True".into(),
                serde_yaml::Value::Bool(false) => "False".into(),
                serde_yaml::Value::Null => "None".into(),
                other => serde_yaml::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            (key.clone(), repr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(yaml: &str) -> serde_yaml::Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn levels() {
        let level = |y: &str| LoguruLevel::try_from(value(y)).map(|l| l.0);
        assert_eq!(level("DEBUG"), Ok(LevelFilter::DEBUG));
        assert_eq!(level("success"), Ok(LevelFilter::WARN));
        assert_eq!(level("CRITICAL"), Ok(LevelFilter::ERROR));
        assert_eq!(level("20"), Ok(LevelFilter::INFO));
        assert_eq!(level("25"), Ok(LevelFilter::WARN));
        assert!(level("LOUD").unwrap_err().contains("unknown level `LOUD`"));
    }

    #[test]
    fn filters_become_directives() {
        let rule = |y: &str| FilterRule::try_from(value(y)).unwrap();
        let directives = |r: Option<&FilterRule>, l| FilterRule::directives(r, l);
        assert_eq!(
            directives(None, LevelFilter::DEBUG),
            "debug,hyper=warn,h2=warn,tower_http=warn"
        );
        assert_eq!(
            directives(Some(&rule("clarity_host.server")), LevelFilter::INFO),
            "off,hyper=off,h2=off,tower_http=off,clarity_host::server=info"
        );
        let map = rule("{\"\": WARNING, clarity_host: TRACE, hyper: false, noisy: 40}");
        assert_eq!(
            directives(Some(&map), LevelFilter::DEBUG),
            "warn,h2=warn,tower_http=warn,clarity_host=debug,hyper=off,noisy=error"
        );
        assert!(FilterRule::try_from(value("\"a,b\""))
            .unwrap_err()
            .contains("contains `,`"));
        assert!(FilterRule::try_from(value("{m: LOUD}")).is_err());
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("10 MB"), Some(10_000_000));
        assert_eq!(parse_size("500 KB"), Some(500_000));
        assert_eq!(parse_size("1 MiB"), Some(1_048_576));
        assert_eq!(parse_size("0.5 GB"), Some(500_000_000));
        assert_eq!(parse_size("8 Kb"), Some(1000));
        assert_eq!(parse_size("200 B"), Some(200));
        assert_eq!(parse_size("1 day"), None);
        assert_eq!(parse_duration("1 day"), Some(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("1 week, 3 days"),
            Some(Duration::from_secs(10 * 86_400))
        );
        assert_eq!(parse_duration("90 s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("soon"), None);
        let rule = |y: &str| RotationRule::try_from(value(y)).map(|r| r.0);
        assert_eq!(rule("\"10 MB\""), Ok(Rotation::Size(10_000_000)));
        assert_eq!(rule("1024"), Ok(Rotation::Size(1024)));
        assert_eq!(rule("daily"), Ok(Rotation::At(Period::Day)));
        assert_eq!(
            rule("\"1 day\""),
            Ok(Rotation::Every(Duration::from_secs(86_400)))
        );
        assert!(rule("\"12:00\"")
            .unwrap_err()
            .contains("unsupported rotation `12:00`"));
        let keep = |y: &str| RetentionRule::try_from(value(y)).map(|r| r.0);
        assert_eq!(keep("5"), Ok(Retention::Count(5)));
        assert_eq!(
            keep("\"7 days\""),
            Ok(Retention::Age(Duration::from_secs(7 * 86_400)))
        );
        assert!(keep("forever").is_err());
    }
}
