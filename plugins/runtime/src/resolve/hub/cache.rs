//! The hub cache's layout, shared with Python's `huggingface_hub`:
//! `<cache>/models--org--name/{blobs/<etag>, refs/main, snapshots/<commit>/<file>}`, where each
//! snapshot file links to its blob and `refs/main` holds the commit of the `main` branch.

use std::path::{Path, PathBuf};

/// `models--org--name`: the repo's folder name in the cache.
pub fn folder_name(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// The repo's folder in the cache.
pub fn repo_dir(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir.join(folder_name(id))
}

/// The snapshot `refs/main` points at; without that file, the only snapshot there is (a
/// folder placed by hand). None if there is neither.
pub fn main_snapshot(repo_dir: &Path) -> Option<PathBuf> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        let dir = snapshots.join(commit.trim());
        return dir.is_dir().then_some(dir);
    }
    let mut dirs = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir());
    match (dirs.next(), dirs.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Repos in the cache stored under another owner with the same name (`roberta-base` →
/// `models--FacebookAI--roberta-base`), as hub ids, for "did you mean".
pub fn same_name_elsewhere(cache_dir: &Path, id: &str) -> Vec<String> {
    let name = id.rsplit('/').next().unwrap_or(id);
    let suffix = format!("--{name}");
    let own = folder_name(id);
    let mut found: Vec<String> = std::fs::read_dir(cache_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|f| f != &own && f.starts_with("models--") && f.ends_with(&suffix))
        .map(|f| f["models--".len()..].replace("--", "/"))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn folder_names_are_pythons() {
        assert_eq!(
            folder_name("FacebookAI/roberta-base"),
            "models--FacebookAI--roberta-base"
        );
        assert_eq!(folder_name("roberta-base"), "models--roberta-base");
    }

    #[test]
    fn refs_main_wins_else_the_only_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("models--org--m");
        assert_eq!(main_snapshot(&repo), None);
        fs::create_dir_all(repo.join("snapshots/by-hand")).unwrap();
        assert_eq!(main_snapshot(&repo), Some(repo.join("snapshots/by-hand")));
        fs::create_dir_all(repo.join("snapshots/abc123")).unwrap();
        assert_eq!(main_snapshot(&repo), None, "two snapshots and no ref");
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::write(repo.join("refs/main"), "abc123\n").unwrap();
        assert_eq!(main_snapshot(&repo), Some(repo.join("snapshots/abc123")));
        fs::write(repo.join("refs/main"), "gone").unwrap();
        assert_eq!(main_snapshot(&repo), None);
    }

    #[test]
    fn same_name_under_another_owner() {
        let tmp = tempfile::tempdir().unwrap();
        for f in [
            "models--FacebookAI--roberta-base",
            "models--roberta-base",
            "datasets--x--roberta-base",
            "models--x--roberta-base-2",
        ] {
            fs::create_dir_all(tmp.path().join(f)).unwrap();
        }
        assert_eq!(
            same_name_elsewhere(tmp.path(), "roberta-base"),
            vec!["FacebookAI/roberta-base".to_string()]
        );
    }
}
