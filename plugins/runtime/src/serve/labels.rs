//! Label names from a Hugging Face `config.json`, for serving folders exported elsewhere
//! (optimum writes `model.onnx` + `tokenizer.json` + `config.json`, with labels in `id2label`).

use super::ServeError;
use std::collections::BTreeMap;
use std::path::Path;

/// The `id2label` names ordered by id, or `None` when the config has no `id2label`.
/// Ids must be exactly `0..n`: a gap would shift every later label onto the wrong logit.
pub fn hf_labels(config_json: &Path) -> Result<Option<Vec<String>>, ServeError> {
    let fail = |message: String| ServeError::Labels {
        path: config_json.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(config_json).map_err(|e| fail(e.to_string()))?;
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
    let Some(id2label) = config.get("id2label") else {
        return Ok(None);
    };
    let map = id2label
        .as_object()
        .ok_or_else(|| fail("`id2label` is not an object".into()))?;
    let mut by_id = BTreeMap::new();
    for (id, label) in map {
        let id: usize = id
            .trim()
            .parse()
            .map_err(|_| fail(format!("`id2label` key `{id}` is not a label id")))?;
        let label = label
            .as_str()
            .ok_or_else(|| fail(format!("`id2label[{id}]` is not a string")))?;
        by_id.insert(id, label.to_string());
    }
    if let Some((position, (id, _))) = by_id.iter().enumerate().find(|(i, (id, _))| i != *id) {
        return Err(fail(format!(
            "`id2label` ids must be 0..{}, but id {position} is missing (next is {id})",
            by_id.len()
        )));
    }
    Ok(Some(by_id.into_values().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(json: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        (dir, path)
    }

    #[test]
    fn labels_are_ordered_by_numeric_id() {
        let (_d, path) = write(
            r#"{"id2label": {"10": "k", "2": "c", "0": "a", "1": "b", "3": "d", "4": "e",
                "5": "f", "6": "g", "7": "h", "8": "i", "9": "j"}}"#,
        );
        let labels = hf_labels(&path).unwrap().unwrap();
        assert_eq!(labels.join(""), "abcdefghijk");
    }

    #[test]
    fn no_id2label_is_none() {
        let (_d, path) = write(r#"{"hidden_size": 384}"#);
        assert_eq!(hf_labels(&path).unwrap(), None);
    }

    #[test]
    fn gaps_and_bad_entries_are_errors_naming_the_file() {
        for json in [
            r#"{"id2label": {"0": "a", "2": "c"}}"#,
            r#"{"id2label": {"zero": "a"}}"#,
            r#"{"id2label": {"0": 5}}"#,
            r#"{"id2label": ["a"]}"#,
            "not json",
        ] {
            let (_d, path) = write(json);
            let err = hf_labels(&path).unwrap_err().to_string();
            assert!(err.contains("config.json"), "{json}: {err}");
        }
        let err = hf_labels(Path::new("/nonexistent/config.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/config.json"));
    }
}
