//! A loguru `format` string (`{time:YYYY-MM-DD HH:mm:ss} | <level>{level: <8}</level> |
//! {message}`) parsed once, and the `tracing` event formatter that renders it.
//!
//! Record fields map onto Rust's: `{name}` is the target (a module path such as
//! `clarity_host::server`), `{module}` its last segment, `{file}` / `{line}` the source
//! position, `{function}` is `?` (Rust records carry no function name), `{extra}` the
//! handler's `extra` plus the event's fields, `{exception}` is empty.

use std::fmt::{self, Write as _};
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::format::EventFields;
use super::loguru_markup::{level_sgr, parse_tag, Tag};
use super::loguru_time::TimeSpec;

/// loguru's own default `format`.
pub const DEFAULT_FORMAT: &str = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | \
    <level>{level: <8}</level> | <cyan>{name}</cyan>:<cyan>{function}</cyan>:<cyan>{line}</cyan> \
    - <level>{message}</level>";

/// The record fields a format may name.
const FIELDS: &str = "time, level, level.name, level.no, level.icon, message, name, module, \
    function, file, file.name, file.path, line, elapsed, extra, extra[KEY], process, process.id, \
    process.name, thread, thread.id, thread.name, exception";

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Time(TimeSpec),
    Level,
    LevelNo,
    LevelIcon,
    Message,
    Name,
    Module,
    Function,
    File,
    FilePath,
    Line,
    Elapsed,
    Extra,
    ExtraKey(String),
    Process,
    ProcessName,
    Thread,
    ThreadName,
    Exception,
}

/// A Python format spec: `[[fill]align][0][width][.precision][type]`.
#[derive(Debug, Clone, PartialEq, Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    width: usize,
    precision: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(Field, Spec),
    Open(Tag),
    Close,
}

/// A parsed loguru `format`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoguruTemplate {
    parts: Vec<Part>,
    /// `{extra}` shows the event's fields, so `{message}` leaves them out.
    fields_in_extra: bool,
}

impl Default for LoguruTemplate {
    fn default() -> Self {
        LoguruTemplate::parse(DEFAULT_FORMAT).unwrap_or(LoguruTemplate {
            parts: vec![Part::Field(Field::Message, Spec::default())],
            fields_in_extra: false,
        })
    }
}

impl TryFrom<String> for LoguruTemplate {
    type Error = String;
    fn try_from(source: String) -> Result<Self, String> {
        LoguruTemplate::parse(&source)
    }
}

impl<'de> serde::Deserialize<'de> for LoguruTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        LoguruTemplate::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl LoguruTemplate {
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut open_tags: Vec<String> = Vec::new();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            let after = &rest[c.len_utf8()..];
            match c {
                '{' if after.starts_with('{') => {
                    literal.push('{');
                    rest = &after[1..];
                }
                '}' if after.starts_with('}') => {
                    literal.push('}');
                    rest = &after[1..];
                }
                '}' => return Err(format!("single `}}` in `{source}` (write `}}}}`)")),
                '{' => {
                    let close = after
                        .find('}')
                        .ok_or_else(|| format!("unclosed `{{` in `{source}`"))?;
                    flush(&mut literal, &mut parts);
                    let (field, spec) = parse_field(&after[..close])?;
                    parts.push(Part::Field(field, spec));
                    rest = &after[close + 1..];
                }
                '\\' if after.starts_with('<') => {
                    literal.push('<');
                    rest = &after[1..];
                }
                '<' if looks_like_tag(after) => {
                    let close = after.find('>').unwrap_or(after.len());
                    let name = &after[..close];
                    flush(&mut literal, &mut parts);
                    if let Some(closing) = name.strip_prefix('/') {
                        let Some(open) = open_tags.pop() else {
                            return Err(format!(
                                "closing tag `<{name}>` has no opening tag in `{source}`"
                            ));
                        };
                        if !closing.is_empty() && closing != open {
                            return Err(format!(
                                "closing tag `<{name}>` does not match the open `<{open}>` in \
                                 `{source}`"
                            ));
                        }
                        parts.push(Part::Close);
                    } else {
                        parts.push(Part::Open(parse_tag(name)?));
                        open_tags.push(name.to_owned());
                    }
                    rest = after.get(close + 1..).unwrap_or("");
                }
                _ => {
                    literal.push(c);
                    rest = after;
                }
            }
        }
        if let Some(open) = open_tags.pop() {
            return Err(format!("tag `<{open}>` is never closed in `{source}`"));
        }
        flush(&mut literal, &mut parts);
        let fields_in_extra = parts
            .iter()
            .any(|p| matches!(p, Part::Field(Field::Extra, _)));
        Ok(LoguruTemplate {
            parts,
            fields_in_extra,
        })
    }
}

/// `<` starts a tag when a name and `>` follow with no space before it (`fg`/`bg` aside).
fn looks_like_tag(after: &str) -> bool {
    let Some(close) = after.find('>') else {
        return false;
    };
    let name = &after[..close];
    let name = name
        .strip_prefix("fg ")
        .or_else(|| name.strip_prefix("bg "))
        .unwrap_or(name);
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '#')
        && !name.contains(['<', ' ', '\t', '\n'])
}

fn flush(literal: &mut String, parts: &mut Vec<Part>) {
    if !literal.is_empty() {
        parts.push(Part::Literal(std::mem::take(literal)));
    }
}

fn parse_field(inner: &str) -> Result<(Field, Spec), String> {
    let (name, spec) = match inner.split_once(':') {
        Some((name, spec)) => (name, Some(spec)),
        None => (inner, None),
    };
    let name = name.trim();
    let unknown = || format!("unknown loguru field `{{{inner}}}`; known: {FIELDS}");
    if name == "time" {
        return Ok((
            Field::Time(TimeSpec::parse(spec.unwrap_or(""))?),
            Spec::default(),
        ));
    }
    let field = match name {
        "level" | "level.name" => Field::Level,
        "level.no" => Field::LevelNo,
        "level.icon" => Field::LevelIcon,
        "message" => Field::Message,
        "name" => Field::Name,
        "module" => Field::Module,
        "function" => Field::Function,
        "file" | "file.name" => Field::File,
        "file.path" => Field::FilePath,
        "line" => Field::Line,
        "elapsed" => Field::Elapsed,
        "extra" => Field::Extra,
        "process" | "process.id" => Field::Process,
        "process.name" => Field::ProcessName,
        "thread" | "thread.id" => Field::Thread,
        "thread.name" => Field::ThreadName,
        "exception" => Field::Exception,
        _ => match name
            .strip_prefix("extra[")
            .and_then(|k| k.strip_suffix(']'))
        {
            Some(key) if !key.is_empty() => Field::ExtraKey(key.trim_matches(['\'', '"']).into()),
            _ => return Err(unknown()),
        },
    };
    let spec = match spec {
        Some(spec) => parse_spec(spec).map_err(|e| format!("`{{{inner}}}`: {e}"))?,
        None => Spec::default(),
    };
    Ok((field, spec))
}

fn parse_spec(spec: &str) -> Result<Spec, String> {
    let chars: Vec<char> = spec.chars().collect();
    let mut out = Spec::default();
    let mut i = 0;
    let is_align = |c: &char| "<>^=".contains(*c);
    if chars.get(1).is_some_and(is_align) {
        out.fill = Some(chars[0]);
        out.align = Some(chars[1]);
        i = 2;
    } else if chars.first().is_some_and(is_align) {
        out.align = Some(chars[0]);
        i = 1;
    }
    if chars.get(i) == Some(&'0') && out.fill.is_none() {
        out.fill = Some('0');
        out.align.get_or_insert('>');
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        chars[start..*i]
            .iter()
            .collect::<String>()
            .parse::<usize>()
            .ok()
    };
    out.width = digits(&mut i).unwrap_or(0);
    if chars.get(i) == Some(&'.') {
        i += 1;
        out.precision = Some(digits(&mut i).ok_or("a `.` needs a precision")?);
    }
    if matches!(chars.get(i), Some('s' | 'd')) {
        i += 1;
    }
    if i != chars.len() {
        return Err(format!(
            "unsupported format spec `{spec}`; supported: [[fill]align][0][width][.precision]"
        ));
    }
    Ok(out)
}

/// Writes `text` padded and cut as `spec` says; numbers default to the right.
fn pad(out: &mut String, text: &str, spec: &Spec, number: bool) {
    let text: String = match spec.precision {
        Some(p) if !number => text.chars().take(p).collect(),
        _ => text.to_owned(),
    };
    let len = text.chars().count();
    let gap = spec.width.saturating_sub(len);
    let fill = spec.fill.unwrap_or(' ');
    let align = spec.align.unwrap_or(if number { '>' } else { '<' });
    let (left, right) = match align {
        '>' | '=' => (gap, 0),
        '^' => (gap / 2, gap - gap / 2),
        _ => (0, gap),
    };
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(&text);
    out.extend(std::iter::repeat_n(fill, right));
}

/// loguru's level names (tracing has no SUCCESS or CRITICAL), numbers and icons.
fn level_info(level: Level) -> (&'static str, u8, &'static str) {
    match level {
        Level::TRACE => ("TRACE", 5, "✏️"),
        Level::DEBUG => ("DEBUG", 10, "🐞"),
        Level::INFO => ("INFO", 20, "ℹ️"),
        Level::WARN => ("WARNING", 30, "⚠️"),
        Level::ERROR => ("ERROR", 40, "❌"),
    }
}

/// The event formatter of one loguru handler.
#[derive(Debug, Clone)]
pub struct LoguruFormat {
    template: LoguruTemplate,
    /// The handlers' `extra`, as `key, Python repr`.
    extra: Vec<(String, String)>,
    start: Instant,
    /// Replaces the clock, for tests.
    pub fixed_time: Option<DateTime<FixedOffset>>,
}

impl LoguruFormat {
    pub fn new(template: LoguruTemplate, extra: Vec<(String, String)>) -> Self {
        LoguruFormat {
            template,
            extra,
            start: Instant::now(),
            fixed_time: None,
        }
    }

    /// The line for one event, without the newline.
    fn render(&self, event: &Event<'_>, color: bool) -> String {
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = *meta.level();
        let (level_name, level_no, icon) = level_info(level);
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        let file = fields.log_file.as_deref().or(meta.file()).unwrap_or("");
        let line = fields.log_line.or(meta.line());
        let mut stack: Vec<String> = Vec::new();
        let mut out = String::new();
        for part in &self.template.parts {
            let (field, spec) = match part {
                Part::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Part::Open(tag) => {
                    let code = match tag {
                        Tag::Sgr(code) => code.clone(),
                        Tag::Level => level_sgr(level).to_owned(),
                    };
                    if color {
                        let _ = write!(out, "\x1b[{code}m");
                    }
                    stack.push(code);
                    continue;
                }
                Part::Close => {
                    stack.pop();
                    if color {
                        out.push_str("\x1b[0m");
                        for code in &stack {
                            let _ = write!(out, "\x1b[{code}m");
                        }
                    }
                    continue;
                }
                Part::Field(field, spec) => (field, spec),
            };
            let text = |s: &str| s.to_owned();
            let (value, number) = match field {
                Field::Time(time) => {
                    let now = self
                        .fixed_time
                        .unwrap_or_else(|| Local::now().fixed_offset());
                    let mut s = String::new();
                    time.format(now, &mut s);
                    (s, false)
                }
                Field::Level => (text(level_name), false),
                Field::LevelNo => (level_no.to_string(), true),
                Field::LevelIcon => (text(icon), false),
                Field::Message => {
                    let mut s = fields.message.clone();
                    if !self.template.fields_in_extra {
                        for (name, value) in &fields.pairs {
                            if !s.is_empty() {
                                s.push(' ');
                            }
                            let _ = write!(s, "{name}={value}");
                        }
                    }
                    (s, false)
                }
                Field::Name => (text(target), false),
                Field::Module => {
                    let module = meta.module_path().unwrap_or(target);
                    (text(module.rsplit("::").next().unwrap_or(module)), false)
                }
                Field::Function => (text("?"), false),
                Field::File => (text(file.rsplit(['/', '\\']).next().unwrap_or(file)), false),
                Field::FilePath => (text(file), false),
                Field::Line => (line.map(|l| l.to_string()).unwrap_or_default(), true),
                Field::Elapsed => (elapsed(self.start), false),
                Field::Extra => (self.extra_repr(&fields), false),
                Field::ExtraKey(key) => (self.extra_value(&fields, key), false),
                Field::Process => (std::process::id().to_string(), true),
                Field::ProcessName => (process_name(), false),
                Field::Thread => (thread_id(), true),
                Field::ThreadName => (
                    text(std::thread::current().name().unwrap_or("unnamed")),
                    false,
                ),
                Field::Exception => (String::new(), false),
            };
            pad(&mut out, &value, spec, number);
        }
        out
    }

    /// `{extra}` as Python prints a dict: the configured extras, then the event's fields.
    fn extra_repr(&self, fields: &EventFields) -> String {
        let mut items: Vec<String> = self
            .extra
            .iter()
            .map(|(k, v)| format!("'{k}': {v}"))
            .collect();
        items.extend(fields.pairs.iter().map(|(k, v)| {
            let quoted = v.parse::<f64>().is_err() && !matches!(v.as_str(), "true" | "false");
            if quoted {
                format!("'{k}': '{}'", v.trim_matches('"'))
            } else {
                format!("'{k}': {v}")
            }
        }));
        format!("{{{}}}", items.join(", "))
    }

    fn extra_value(&self, fields: &EventFields, key: &str) -> String {
        if let Some((_, v)) = fields.pairs.iter().find(|(k, _)| *k == key) {
            return v.trim_matches('"').to_owned();
        }
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim_matches('\'').to_owned())
            .unwrap_or_default()
    }
}

/// Like Python's `timedelta`: `0:00:01.234567`.
fn elapsed(start: Instant) -> String {
    let e = start.elapsed();
    let secs = e.as_secs();
    let micros = e.subsec_micros();
    let base = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn thread_id() -> String {
    // ThreadId's Debug is `ThreadId(N)`; N is what a log reader wants.
    let id = format!("{:?}", std::thread::current().id());
    id.trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .to_owned()
}

impl<S, N> FormatEvent<S, N> for LoguruFormat
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
        let color = writer.has_ansi_escapes();
        writeln!(writer, "{}", self.render(event, color))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(source: &str) -> Result<LoguruTemplate, String> {
        LoguruTemplate::parse(source)
    }

    #[test]
    fn fields_specs_and_escapes_parse() {
        let t = template("{{x}} {time:HH:mm} {level: <8} {line:04} {message:.3} \\<b>").unwrap();
        assert!(matches!(t.parts[0], Part::Literal(ref s) if s == "{x} "));
        assert!(matches!(
            t.parts[3],
            Part::Field(
                Field::Level,
                Spec {
                    fill: Some(' '),
                    align: Some('<'),
                    width: 8,
                    ..
                }
            )
        ));
        assert_eq!(t.parts.last(), Some(&Part::Literal(" <b>".into())));
        assert!(template(DEFAULT_FORMAT).is_ok());
        // A `<` that is not a tag is text.
        assert!(template("a < b and c<d e>f").is_ok());
    }

    #[test]
    fn unknown_fields_tags_and_unbalanced_markup_are_errors() {
        let err = template("{time} {foo} {message}").unwrap_err();
        assert!(
            err.starts_with("unknown loguru field `{foo}`; known: time"),
            "{err}"
        );
        let err = template("<rouge>{message}</rouge>").unwrap_err();
        assert!(err.contains("unknown colour tag `<rouge>`"), "{err}");
        assert!(template("<red>{message}")
            .unwrap_err()
            .contains("never closed"));
        assert!(template("<red>{message}</green>")
            .unwrap_err()
            .contains("does not match"));
        assert!(template("{message}</>").unwrap_err().contains("no opening"));
        assert!(template("{level:>>>8}")
            .unwrap_err()
            .contains("unsupported format spec"));
        assert!(template("{message").unwrap_err().contains("unclosed"));
        assert!(template("a } b").unwrap_err().contains("single `}`"));
    }

    #[test]
    fn padding_like_python() {
        let cases = [
            ("<8", "INFO", false, "INFO    "),
            (" <8", "INFO", false, "INFO    "),
            (">8", "INFO", false, "    INFO"),
            ("*^8", "INFO", false, "**INFO**"),
            ("4", "7", true, "   7"),
            ("04", "7", true, "0007"),
            (".3", "message", false, "mes"),
            ("", "x", false, "x"),
        ];
        for (spec, text, number, want) in cases {
            let mut out = String::new();
            pad(&mut out, text, &parse_spec(spec).unwrap(), number);
            assert_eq!(out, want, "{spec}");
        }
    }
}
