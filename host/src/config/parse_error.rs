//! Turning serde_yaml's errors into [`Problem`]s with a file, line, column and field path.

use super::locate::{Locator, Seg};
use super::shape::Shape;
use super::Problem;
use std::path::Path;

/// Turn a serde_yaml error (with the path serde_path_to_error tracked) into a [`Problem`].
pub(super) fn parse_problem(
    file: &Path,
    text: &str,
    shape: Shape,
    err: serde_path_to_error::Error<serde_yaml::Error>,
) -> Problem {
    let mut path: Vec<Seg> = err
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            _ => None,
        })
        .collect();
    let segments: Vec<String> = err
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => format!("[{index}]"),
            serde_path_to_error::Segment::Map { key } => key.clone(),
            serde_path_to_error::Segment::Enum { variant } => variant.clone(),
            serde_path_to_error::Segment::Unknown => "?".into(),
        })
        .collect();
    let inner = err.into_inner();
    let mut location = inner.location().map(|l| (l.line(), l.column()));
    let mut message = bare_message(&inner.to_string(), location);

    // `unknown field `x`` already names the key: point at the mapping that holds it.
    let mut segments = segments;
    if let Some(last) = segments.last() {
        if message.starts_with(&format!("unknown field `{last}`")) {
            segments.pop();
        }
    }
    // serde_yaml places `duplicate field `x`` at the mapping: find the second `x:` instead.
    if let Some(dup) = message
        .strip_prefix("duplicate field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(k, _)| k.to_string())
    {
        path.push(Seg::Second(dup));
        if let Some(found) = (Locator { text, shape }).locate(&path) {
            location = Some(found);
        }
    }
    if let Some(suggested) = suggest_field(&message) {
        message = suggested;
    }
    if let Some((before, after)) = message.split_once("expected struct ") {
        message = format!("{before}expected a mapping ({after})");
    }
    if segments.last().map(String::as_str) == Some("class_weights")
        && message.starts_with("data did not match any variant")
    {
        message = "expected \"balanced\", \"none\" or a list of weights, one per label".into();
    }

    let mut field = String::new();
    if shape == Shape::List && !segments.is_empty() {
        field.push_str("models");
    }
    for segment in &segments {
        if !segment.starts_with('[') && !field.is_empty() {
            field.push('.');
        }
        field.push_str(segment);
    }
    Problem {
        file: file.to_path_buf(),
        line: location.map(|l| l.0),
        column: location.map(|l| l.1),
        field,
        message,
    }
}

/// serde_yaml's message without its own ` at line L column C` suffix and path prefix (we
/// print both ourselves).
pub(super) fn bare_message(full: &str, location: Option<(usize, usize)>) -> String {
    let mut message = full.to_string();
    if let Some((line, column)) = location {
        let at = format!(" at line {line} column {column}");
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // serde_yaml prefixes messages with its own path (`.[0].training_config: ...`). Serde's
    // messages all start with words separated by spaces, so a first `word: ` without spaces
    // is that path.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let looks_like_path = !prefix.is_empty()
            && !prefix.contains(char::is_whitespace)
            && !rest.is_empty()
            && (prefix.starts_with('.') || prefix.starts_with('[') || prefix.starts_with("models"));
        if looks_like_path {
            message = rest.to_string();
        }
    }
    message
}

/// serde's "unknown field `learnin_rate`, expected one of `a`, `b`, ..." as "unknown field
/// `learnin_rate`, did you mean `learning_rate`?" when one valid key is close; `None` when
/// the message is another one or no key is close (serde's list then stays).
fn suggest_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`')?;
    let expected = rest.split_once("expected ")?.1;
    let nearest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|valid| (strsim::damerau_levenshtein(unknown, valid), valid))
        .min_by_key(|(distance, _)| *distance)?;
    // Close: a couple of edits, fewer than a third of the key's length.
    let (distance, valid) = nearest;
    let close = distance <= 2 && distance * 3 <= unknown.chars().count().max(valid.len());
    close.then(|| format!("unknown field `{unknown}`, did you mean `{valid}`?"))
}

#[cfg(test)]
mod suggestion_tests {
    use super::suggest_field;

    #[test]
    fn a_close_key_is_suggested_and_a_far_one_is_not() {
        let serde = "unknown field `learnin_rate`, expected one of `max_length`, `batch_size`, `learning_rate`";
        assert_eq!(
            suggest_field(serde).as_deref(),
            Some("unknown field `learnin_rate`, did you mean `learning_rate`?")
        );
        let far = "unknown field `colour`, expected one of `max_length`, `batch_size`";
        assert_eq!(suggest_field(far), None);
        let one = "unknown field `nam`, expected `name`";
        assert_eq!(
            suggest_field(one).as_deref(),
            Some("unknown field `nam`, did you mean `name`?")
        );
    }
}
