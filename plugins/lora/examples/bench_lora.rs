//! Serving speed of a trained LoRA model: ONNX Runtime (the merged export that `serve` runs)
//! against candle (base weights + adapters, as in training), on the same prompts, side by
//! side in one run.
//!
//! ```sh
//! cargo build --release -p clarity-lora --example bench_lora
//! target/release/examples/bench_lora artifacts/smollm2-lora [--data data/sample/valid.json]
//!     [--reps 10] [--threads 2] [--int8]
//! ```
//!
//! Prompts are real question/context pairs in the model's template, cut to 128 tokens
//! (`SEQ`). Prints batch-1 latency and batch-32 throughput (medians) as a table, and how much
//! the process's resident memory grew when the ONNX Runtime session loaded. `--int8` serves an
//! int8 export of the same merged weights (what `use_8bit: true` writes) instead of
//! `model.onnx`.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clarity_lora::meta::LoraMeta;
use clarity_lora::model::{DecoderModel, Trainable};
use clarity_lora::prompt::PromptTokenizer;
use clarity_lora::{export, lora::LoraSettings, weights};
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::meta::MetaFile;
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
    int8: bool,
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
        int8: false,
    };
    while let Some(flag) = args.next() {
        if flag == "--int8" {
            out.int8 = true;
            continue;
        }
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

/// This process's resident set, in MB (Linux).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
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
        gradient_checkpointing: false,
    };
    let (model, _) = DecoderModel::new(meta.arch.clone(), base.weights, &trainable, &Device::Cpu)?;
    let mut varmap = model.varmap_ref().clone();
    weights::load_adapters(&mut varmap, &args.dir).map_err(anyhow::Error::msg)?;

    let scratch = tempfile::tempdir()?;
    let onnx = if args.int8 {
        let path = scratch.path().join("model-int8.onnx");
        let options = export::ExportOptions {
            max_length: meta.max_length,
            int8: true,
        };
        export::export(&model, options, &path)?;
        path
    } else {
        args.dir.join("model.onnx")
    };
    let file_mb = std::fs::metadata(&onnx)?.len() as f64 / 1e6;
    let library = resolve::ort_library(&std::env::current_dir()?)?;
    serve::init_ort(&library)?;
    let before = rss_mb();
    let session = OrtClassifier::load(&onnx, DeviceChoice::Cpu, Some(args.threads))?;
    session.logits(&one)?;
    let session_mb = rss_mb() - before;

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
    println!(
        "ONNX file {file_mb:.0} MB ({}); the session added {session_mb:.0} MB of resident memory",
        if args.int8 { "int8" } else { "f32" }
    );
    println!("| runtime | b1 latency (ms) | b32 throughput (pairs/s) |");
    println!("|---|---|---|");
    println!(
        "| ONNX Runtime (ours, merged, {}) | {:.1} | {:.1} |",
        if args.int8 { "int8" } else { "f32" },
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
