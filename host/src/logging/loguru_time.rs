//! loguru's `{time:...}` formats: its tokens (`YYYY-MM-DD HH:mm:ss.SSS`, `A`, `ZZ`, ...),
//! `[literal]` brackets, a `!UTC` suffix, and strftime when the format holds a `%`.

use std::fmt::Write as _;

use chrono::format::StrftimeItems;
use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};

/// Bare `{time}` in loguru: ISO 8601 with microseconds and the offset.
const DEFAULT: &str = "YYYY-MM-DD[T]HH:mm:ss.SSSSSSZZ";

/// loguru's tokens, longest alternatives first, as its own pattern tries them.
const TOKENS: &[&str] = &[
    "HH", "H", "hh", "h", "mm", "m", "ss", "s", "YYYY", "YY", "MMMM", "MMM", "MM", "M", "DDDD",
    "DDD", "DD", "D", "ZZ", "Z", "zz", "A", "X", "x", "E", "Q", "dddd", "ddd", "d",
];

#[derive(Debug, Clone, PartialEq)]
enum Item {
    Literal(String),
    Token(&'static str),
    /// `S`..`SSSSSS`: that many leading digits of the microseconds.
    Fraction(usize),
}

/// A checked `{time:...}` format.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSpec {
    utc: bool,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Tokens(Vec<Item>),
    Strftime(String),
}

impl TimeSpec {
    /// Parses the text after `time:` (empty for bare `{time}`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (spec, utc) = match spec.strip_suffix("!UTC") {
            Some(rest) => (rest, true),
            None => (spec, false),
        };
        if spec.contains('%') {
            if StrftimeItems::new(spec).parse().is_err() {
                return Err(format!("invalid strftime time format `{spec}`"));
            }
            return Ok(TimeSpec {
                utc,
                kind: Kind::Strftime(spec.to_owned()),
            });
        }
        let spec = if spec.is_empty() { DEFAULT } else { spec };
        Ok(TimeSpec {
            utc,
            kind: Kind::Tokens(tokenize(spec)?),
        })
    }

    pub fn format(&self, time: DateTime<FixedOffset>, out: &mut String) {
        let time = if self.utc {
            time.with_timezone(&Utc).fixed_offset()
        } else {
            time
        };
        match &self.kind {
            Kind::Strftime(format) => {
                let _ = write!(out, "{}", time.format(format));
            }
            Kind::Tokens(items) => {
                for item in items {
                    match item {
                        Item::Literal(text) => out.push_str(text),
                        Item::Fraction(digits) => {
                            let micros = time.nanosecond() / 1000 % 1_000_000;
                            let scaled = micros / 10u32.pow(6 - *digits as u32);
                            let _ = write!(out, "{scaled:0digits$}", digits = *digits);
                        }
                        Item::Token(token) => token_text(token, time, self.utc, out),
                    }
                }
            }
        }
    }
}

fn tokenize(spec: &str) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut literal = String::new();
    let mut rest = spec;
    while let Some(c) = rest.chars().next() {
        if c == '[' {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in time format `{spec}`"))?;
            literal.push_str(&rest[1..close]);
            rest = &rest[close + 1..];
            continue;
        }
        if c == 'S' {
            let digits = rest.len() - rest.trim_start_matches('S').len();
            if digits > 6 {
                return Err(format!(
                    "time format `{spec}`: more than six `S` (sub-microsecond precision is not \
                     supported)"
                ));
            }
            flush(&mut literal, &mut items);
            items.push(Item::Fraction(digits));
            rest = &rest[digits..];
            continue;
        }
        match TOKENS.iter().find(|t| rest.starts_with(**t)) {
            Some(token) => {
                flush(&mut literal, &mut items);
                items.push(Item::Token(token));
                rest = &rest[token.len()..];
            }
            None => {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    flush(&mut literal, &mut items);
    Ok(items)
}

fn flush(literal: &mut String, items: &mut Vec<Item>) {
    if !literal.is_empty() {
        items.push(Item::Literal(std::mem::take(literal)));
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn token_text(token: &str, t: DateTime<FixedOffset>, utc: bool, out: &mut String) {
    let hour12 = (t.hour() + 11) % 12 + 1;
    let month = MONTHS[t.month0() as usize];
    let day = DAYS[t.weekday().num_days_from_monday() as usize];
    let offset = t.offset().local_minus_utc();
    let (sign, offset) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    let (oh, om) = (offset / 3600, offset / 60 % 60);
    let _ = match token {
        "YYYY" => write!(out, "{:04}", t.year()),
        "YY" => write!(out, "{:02}", t.year().rem_euclid(100)),
        "Q" => write!(out, "{}", t.month0() / 3 + 1),
        "MMMM" => write!(out, "{month}"),
        "MMM" => write!(out, "{}", &month[..3]),
        "MM" => write!(out, "{:02}", t.month()),
        "M" => write!(out, "{}", t.month()),
        "DDDD" => write!(out, "{:03}", t.ordinal()),
        "DDD" => write!(out, "{}", t.ordinal()),
        "DD" => write!(out, "{:02}", t.day()),
        "D" => write!(out, "{}", t.day()),
        "dddd" => write!(out, "{day}"),
        "ddd" => write!(out, "{}", &day[..3]),
        "d" => write!(out, "{}", t.weekday().num_days_from_monday()),
        "E" => write!(out, "{}", t.weekday().number_from_monday()),
        "HH" => write!(out, "{:02}", t.hour()),
        "H" => write!(out, "{}", t.hour()),
        "hh" => write!(out, "{hour12:02}"),
        "h" => write!(out, "{hour12}"),
        "mm" => write!(out, "{:02}", t.minute()),
        "m" => write!(out, "{}", t.minute()),
        "ss" => write!(out, "{:02}", t.second()),
        "s" => write!(out, "{}", t.second()),
        "A" => write!(out, "{}", if t.hour() < 12 { "AM" } else { "PM" }),
        "Z" => write!(out, "{sign}{oh:02}:{om:02}"),
        "ZZ" => write!(out, "{sign}{oh:02}{om:02}"),
        // Only the offset is known, not the zone's name.
        "zz" => write!(out, "{}", if utc { "UTC" } else { "" }),
        "X" => write!(out, "{}", t.timestamp()),
        "x" => write!(out, "{}", t.timestamp_micros()),
        _ => Ok(()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(spec: &str, at: &str) -> String {
        let time = DateTime::parse_from_rfc3339(at).unwrap();
        let mut out = String::new();
        TimeSpec::parse(spec).unwrap().format(time, &mut out);
        out
    }

    #[test]
    fn loguru_tokens() {
        let at = "2026-12-06T15:30:07.123456+02:00";
        assert_eq!(render("YYYY-MM-DD HH:mm:ss", at), "2026-12-06 15:30:07");
        assert_eq!(render("", at), "2026-12-06T15:30:07.123456+0200");
        assert_eq!(
            render("YY M D H m s S SS SSS SSSSSS", at),
            "26 12 6 15 30 7 1 12 123 123456"
        );
        assert_eq!(
            render("hh:mm A, dddd ddd d E, MMMM MMM, DDDD DDD Q", at),
            "03:30 PM, Sunday Sun 6 7, December Dec, 340 340 4"
        );
        assert_eq!(render("Z ZZ X", at), "+02:00 +0200 1796563807");
        assert_eq!(render("x", at), "1796563807123456");
        assert_eq!(render("[YYYY is] YYYY", at), "YYYY is 2026");
        assert_eq!(render("HH:mm zz!UTC", at), "13:30 UTC");
        assert_eq!(render("%Y/%m/%d %H", at), "2026/12/06 15");
        assert_eq!(render("h A", "2026-12-06T00:05:00Z"), "12 AM");
        assert_eq!(render("Z", "2026-12-06T00:05:00-03:30"), "-03:30");
    }

    #[test]
    fn bad_time_formats() {
        assert!(TimeSpec::parse("SSSSSSS").unwrap_err().contains("six"));
        assert!(TimeSpec::parse("[oops").unwrap_err().contains("unclosed"));
        assert!(TimeSpec::parse("%Q").unwrap_err().contains("strftime"));
    }
}
