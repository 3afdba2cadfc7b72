//! loguru's colour markup in a `format`: `<red>`, `<b>`, `<fg #ff8800>`, `<LIGHT-BLUE>`
//! (capitals: background), `<level>` (the record's level colour), closed by `</red>` or `</>`.

/// One recognised tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Tag {
    /// An SGR sequence without the `\x1b[` and `m`, e.g. `31` or `38;5;208`.
    Sgr(String),
    /// `<level>`: the colour of the record's level.
    Level,
}

const COLORS: [(&str, &str); 8] = [
    ("black", "k"),
    ("red", "r"),
    ("green", "g"),
    ("yellow", "y"),
    ("blue", "e"),
    ("magenta", "m"),
    ("cyan", "c"),
    ("white", "w"),
];

const STYLES: [(&str, &str, u8); 9] = [
    ("bold", "b", 1),
    ("dim", "d", 2),
    ("normal", "n", 22),
    ("italic", "i", 3),
    ("underline", "u", 4),
    ("strike", "s", 9),
    ("blink", "l", 5),
    ("reverse", "v", 7),
    ("hide", "h", 8),
];

/// The tag for `name` (the text between `<` and `>`), or why there is none.
pub fn parse_tag(name: &str) -> Result<Tag, String> {
    if name == "level" {
        return Ok(Tag::Level);
    }
    if let Some(style) = STYLES
        .iter()
        .find(|(long, short, _)| name == *long || name == *short)
    {
        return Ok(Tag::Sgr(style.2.to_string()));
    }
    if let Some(color) = name.strip_prefix("fg ") {
        return color_code(color.trim(), false).map(Tag::Sgr);
    }
    if let Some(color) = name.strip_prefix("bg ") {
        return color_code(color.trim(), true).map(Tag::Sgr);
    }
    // `<RED>`, `<R>`, `<LIGHT-RED>`, `<LR>` are backgrounds.
    let background = name.chars().any(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| !c.is_ascii_lowercase());
    color_code(&name.to_ascii_lowercase(), background)
        .or_else(|_| color_code(name, false))
        .map(Tag::Sgr)
        .map_err(|_| {
            format!(
                "unknown colour tag `<{name}>` (escape a literal `<` as `\\<`); known: \
                 <level>, colours such as <red>, <light-blue>, <fg #ff8800>, <bg 208>, \
                 styles such as <bold>/<b>, <dim>, <italic>, <underline>"
            )
        })
}

/// An SGR code for a colour name, abbreviation, `#rrggbb`, `r,g,b` or 0-255.
fn color_code(color: &str, background: bool) -> Result<String, String> {
    let base = if background { 40 } else { 30 };
    let (light, plain) = match color
        .strip_prefix("light-")
        .or_else(|| color.strip_prefix('l').filter(|c| c.len() == 1))
    {
        Some(plain) => (true, plain),
        None => (false, color),
    };
    if let Some(i) = COLORS
        .iter()
        .position(|(long, short)| plain == *long || plain == *short)
    {
        let code = if light { base + 60 + i } else { base + i };
        return Ok(code.to_string());
    }
    let prefix = if background { 48 } else { 38 };
    if let Some(hex) = color.strip_prefix('#') {
        let channel = |i: usize| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        };
        if hex.len() == 6 {
            if let (Some(r), Some(g), Some(b)) = (channel(0), channel(2), channel(4)) {
                return Ok(format!("{prefix};2;{r};{g};{b}"));
            }
        }
    }
    let numbers: Vec<Option<u8>> = color.split(',').map(|n| n.trim().parse().ok()).collect();
    match numbers.as_slice() {
        [Some(n)] => Ok(format!("{prefix};5;{n}")),
        [Some(r), Some(g), Some(b)] => Ok(format!("{prefix};2;{r};{g};{b}")),
        _ => Err(format!("unknown colour `{color}`")),
    }
}

/// The SGR codes loguru gives each level's `<level>`.
pub fn level_sgr(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::TRACE => "36;1",
        tracing::Level::DEBUG => "34;1",
        tracing::Level::INFO => "1",
        tracing::Level::WARN => "33;1",
        tracing::Level::ERROR => "31;1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgr(name: &str) -> String {
        match parse_tag(name).unwrap() {
            Tag::Sgr(code) => code,
            Tag::Level => "level".into(),
        }
    }

    #[test]
    fn names_abbreviations_backgrounds_and_true_colour() {
        assert_eq!(sgr("red"), "31");
        assert_eq!(sgr("r"), "31");
        assert_eq!(sgr("RED"), "41");
        assert_eq!(sgr("light-blue"), "94");
        assert_eq!(sgr("le"), "94");
        assert_eq!(sgr("LG"), "102");
        assert_eq!(sgr("bold"), "1");
        assert_eq!(sgr("b"), "1");
        assert_eq!(sgr("u"), "4");
        assert_eq!(sgr("fg #ff8800"), "38;2;255;136;0");
        assert_eq!(sgr("bg 208"), "48;5;208");
        assert_eq!(sgr("fg 1,2,3"), "38;2;1;2;3");
        assert_eq!(sgr("level"), "level");
        for bad in ["rouge", "fg #12", "bg 300", "foo"] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }
}
