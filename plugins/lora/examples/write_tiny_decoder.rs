//! Write a tiny random decoder model folder (config.json, model.safetensors, tokenizer.json)
//! that the lora plugin loads like a real checkpoint. The end-to-end tests run it.
//!
//! ```sh
//! cargo run -p clarity-lora --example write_tiny_decoder -- OUT_DIR llama|qwen2|opt|gpt2 TOKENIZER_JSON
//! ```

use anyhow::{bail, Context};
use clarity_lora::arch::Family;
use clarity_lora::tiny;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, family, tokenizer] = args.as_slice() else {
        bail!("usage: write_tiny_decoder OUT_DIR llama|qwen2|opt|gpt2 TOKENIZER_JSON");
    };
    let family = match family.as_str() {
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        "opt" => Family::Opt,
        "gpt2" => Family::Gpt2,
        other => bail!("unknown family {other}: llama, qwen2, opt or gpt2"),
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let vocab = tokenizers::Tokenizer::from_file(tokenizer)
        .map_err(|e| anyhow::anyhow!("{tokenizer}: {e}"))?
        .get_vocab_size(true);
    let arch = tiny::arch(family, vocab);
    let weights = tiny::base_weights(&arch, 11)?;
    candle_core::safetensors::save(&weights, out.join("model.safetensors"))?;
    std::fs::write(
        out.join("config.json"),
        serde_json::to_string_pretty(&arch.to_hf_config())?,
    )?;
    std::fs::copy(tokenizer, out.join("tokenizer.json"))
        .with_context(|| format!("copy {tokenizer}"))?;
    println!("{}", out.display());
    Ok(())
}
