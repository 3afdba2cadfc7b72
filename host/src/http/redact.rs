//! Strip the machine's file system layout from text that clients see.
//!
//! A failed model's reason ("cannot open /opt/app/plugins/libx.so: ...") is useful to the
//! operator, who finds it whole in the log; a client of `GET /` gets the same sentence with
//! each absolute path cut to `…/` and its file name, so the server's folders stay private.

/// `text` with every absolute file path (`/a/b/c`, `C:\a\b`) replaced by `…/<its last
/// part>`. A `/a/b` is a file path when its first folder exists at the root of this machine
/// (`/home`, `/opt`, `/srv`, ...), which tells it from an HTTP route such as `/classify/x`.
pub fn paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = next_path(rest) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail
            .find(|c: char| c.is_whitespace() || "'\"`,;()[]{}<>".contains(c))
            .unwrap_or(tail.len());
        // A sentence's `:` or `.` right after a path is not part of it.
        let path = tail[..len].trim_end_matches([':', '.']);
        let name = path
            .rsplit(['/', '\\'])
            .find(|part| !part.is_empty())
            .unwrap_or("");
        out.push_str("…/");
        out.push_str(name);
        rest = &tail[path.len()..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of the next absolute file path in `text`: a `/` or a drive letter's `X:\` at
/// the start of a word, followed by at least one more separator.
fn next_path(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len()).find(|&i| {
        let at_word_start = i == 0 || b" \t\n'\"`(=[{<".contains(&bytes[i - 1]);
        if !at_word_start {
            return false;
        }
        let (body, sep) = if bytes[i] == b'/' {
            (&text[i + 1..], '/')
        } else if bytes[i].is_ascii_alphabetic() && text[i + 1..].starts_with(":\\") {
            (&text[i + 3..], '\\')
        } else {
            return false;
        };
        let word = body.split(char::is_whitespace).next().unwrap_or("");
        if word.is_empty() || word.starts_with(sep) || !word.contains(sep) {
            return false;
        }
        sep == '\\' || on_this_machine(word.split('/').next().unwrap_or(""))
    })
}

/// Whether `/<folder>` exists here.
fn on_this_machine(folder: &str) -> bool {
    std::path::Path::new("/").join(folder).is_dir()
}

#[cfg(test)]
mod tests {
    use super::paths;

    #[test]
    fn absolute_paths_keep_only_their_file_name() {
        assert_eq!(
            paths("load failed: cannot open `/usr/app/plugins/libx.so`: no such file"),
            "load failed: cannot open `…/libx.so`: no such file"
        );
        assert_eq!(
            paths("no trained model in /tmp/clarity/artifacts/minilm. Train it first"),
            "no trained model in …/minilm. Train it first"
        );
        assert_eq!(
            paths(r"plugin C:\Users\me\clarity\plugin.dll is missing"),
            "plugin …/plugin.dll is missing"
        );
        assert_eq!(paths("(/tmp/b/c/)"), "(…/c)");
    }

    #[test]
    fn everything_else_is_left_alone() {
        // Routes look like paths, but no machine has a `/classify` or `/admin` folder.
        assert_eq!(
            paths("route /classify/minilm is taken; POST /admin/models/x/reload"),
            "route /classify/minilm is taken; POST /admin/models/x/reload"
        );
        assert_eq!(paths("labels a/b and c"), "labels a/b and c");
        assert_eq!(
            paths("relative artifacts/minilm is fine"),
            "relative artifacts/minilm is fine"
        );
        assert_eq!(paths("no paths at all"), "no paths at all");
        assert_eq!(paths("a // comment"), "a // comment");
        assert_eq!(paths(""), "");
    }
}
