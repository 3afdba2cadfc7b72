//! Serving speed of a trained LoRA model: ONNX Runtime (the merged export that `serve` runs)
//! against candle (base weights + adapters, as in training), on the same prompts, side by
//! side in one run.
//!
//! ```sh
//! cargo build --release -p clarity-lora --example bench_lora
//! target/release/examples/bench_lora artifacts/smollm2-lora [--data data/sample/valid.json]
//!     [--reps 10] [--threads 2]
//! ```
//!
//! Prompts are real question/context pairs in the model's template, cut to 128 tokens
//! (`SEQ`). Prints batch-1 latency and batch-32 throughput (medians) as a table.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clarity_lora::meta::LoraMeta;
use clarity_lora::model::{DecoderModel, Trainable};
use clarity_lora::prompt::PromptTokenizer;
use clarity_lora::{lora::LoraSettings, weights};
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::resolve;
use clarity_runtime::serve::{self, OrtClassifier};
use clarity_runtime::tokenize::{EncodePairs, Encoded};
use clarity_sdk::config::Device as DeviceChoice;
use std::path::PathBuf;
use std::time::Instant;

/// Tokens per prompt at most.
const SEQ: usize = 128;
/// The throughput batch.
const BATCH: usize = 32;

struct Args {
    dir: PathBuf,
    data: PathBuf,
    reps: usize,
    threads: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .context("usage: bench_lora ARTIFACT_DIR [--data FILE] [--reps N] [--threads N]")?;
    let mut out = Args {
        dir,
        data: PathBuf::from("data/sample/valid.json"),
        reps: 10,
        threads: 2,
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => out.data = PathBuf::from(value),
            "--reps" => out.reps = value.parse()?,
            "--threads" => out.threads = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(out)
}

fn pairs(path: &PathBuf) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let pairs: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.get("question")?.as_str()?.to_string(),
                r.get("context")?.as_str()?.to_string(),
            ))
        })
        .take(BATCH)
        .collect();
    if pairs.len() < BATCH {
        bail!("{} has fewer than {BATCH} pairs", path.display());
    }
    Ok(pairs)
}

/// Median seconds of `reps` runs of `f`, after one warm-up.
fn median_secs(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let meta = LoraMeta::read(&args.dir).map_err(anyhow::Error::msg)?;
    let tokenizer = tokenizers::Tokenizer::from_file(args.dir.join("tokenizer.json"))
        .map_err(anyhow::Error::msg)?;
    let prompt = PromptTokenizer::new(tokenizer, &meta.template, SEQ, meta.pad_id)
        .map_err(anyhow::Error::msg)?;
    let pairs = pairs(&args.data)?;
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, c)| (q.as_str(), c.as_str()))
        .collect();
    let batch = prompt.encode(&refs)?;
    let one = prompt.encode(&refs[..1])?;

    let library = resolve::ort_library(&std::env::current_dir()?)?;
    serve::init_ort(&library)?;
    let session = OrtClassifier::load(
        &args.dir.join("model.onnx"),
        DeviceChoice::Cpu,
        Some(args.threads),
    )?;

    let base = weights::load_base(&PathBuf::from(&meta.base_model), &Device::Cpu)?;
    let lora = LoraSettings {
        r: meta.lora.r,
        alpha: meta.lora.alpha,
        dropout: meta.lora.dropout,
        target_modules: meta.lora.target_modules.clone(),
    };
    let trainable = Trainable {
        lora: &lora,
        num_labels: meta.labels.len(),
        seed: 0,
        use_8bit: meta.use_8bit,
    };
    let (model, _) = DecoderModel::new(meta.arch.clone(), &base.weights, &trainable, &Device::Cpu)?;
    let mut varmap = model.varmap_ref().clone();
    weights::load_adapters(&mut varmap, &args.dir).map_err(anyhow::Error::msg)?;
    let candle = |e: &Encoded| -> Result<()> {
        let t = TensorBatch::from_encoded(e, &Device::Cpu)?;
        model.logits(&t, false)?.to_vec2::<f32>()?;
        Ok(())
    };

    let ort_b1 = median_secs(args.reps, || Ok(session.logits(&one).map(|_| ())?))?;
    let ort_b32 = median_secs(args.reps, || Ok(session.logits(&batch).map(|_| ())?))?;
    let candle_b1 = median_secs(args.reps, || candle(&one))?;
    let candle_b32 = median_secs(args.reps.div_ceil(3), || candle(&batch))?;

    println!(
        "{} ({} layers, hidden {}), prompts of {} tokens (batch {BATCH} padded to {}), {} threads",
        meta.base_model,
        meta.arch.num_layers,
        meta.arch.hidden_size,
        one.seq,
        batch.seq,
        args.threads
    );
    println!("| runtime | b1 latency (ms) | b32 throughput (pairs/s) |");
    println!("|---|---|---|");
    println!(
        "| ONNX Runtime (ours, merged) | {:.1} | {:.1} |",
        ort_b1 * 1e3,
        BATCH as f64 / ort_b32
    );
    println!(
        "| candle (base + adapters) | {:.1} | {:.1} |",
        candle_b1 * 1e3,
        BATCH as f64 / candle_b32
    );
    println!(
        "| ratio ORT / candle | {:.2}x faster | {:.2}x faster |",
        candle_b1 / ort_b1,
        candle_b32 / ort_b32
    );
    Ok(())
}
