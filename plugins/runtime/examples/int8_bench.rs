//! fp32 vs int8 on ONNX Runtime for one exported classifier, for each quantized form
//! [`clarity_runtime::onnx::quantize`] can write: file size, batch-1 latency, batch 16 × 128
//! throughput, and probability agreement with fp32 on a labelled JSON file.
//!
//! ```text
//! cargo run --release -p clarity-runtime --example int8_bench -- \
//!     <artifact dir with model.onnx and tokenizer.json> data/sample/valid.json [seconds]
//! ```
//!
//! The timings go round-robin over the variants (so other load on the machine falls on all
//! alike) for about `seconds` (default 8) per variant, at most 30 rounds; the variants are
//! written to a temporary folder, removed at the end. `variants` (e.g. `Integer/Int8,Fused/Int8`)
//! limits which quantized forms are built.

use clarity_runtime::onnx::quantize::{self, MatMulForm, QuantizeOptions, WeightRange};
use clarity_runtime::serve::{init_ort, OrtClassifier};
use clarity_runtime::tokenize::{Encoded, PairTokenizer};
use clarity_sdk::config::Device;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, data, rest @ ..] = args.as_slice() else {
        return Err("usage: int8_bench <artifact dir> <data.json> [seconds [variants]]".into());
    };
    let seconds: u64 = rest.first().map_or(Ok(8), |s| s.parse())?;
    let wanted = rest
        .get(1)
        .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>());
    let budget = Duration::from_secs(seconds);
    let dir = PathBuf::from(dir);
    init_ort(&clarity_runtime::resolve::ort_library(Path::new("."))?)?;
    let tokenizer = PairTokenizer::from_file(&dir.join("tokenizer.json"), 128)?;
    let pairs = read_pairs(Path::new(data))?;
    let batches: Vec<Encoded> = pairs
        .chunks(16)
        .map(|c| tokenizer.encode_pairs(c))
        .collect::<Result<_, _>>()?;
    let one = tokenizer.encode_pairs(&pairs[..1])?;
    let full = synthetic(16, 128);

    let fp32_path = dir.join("model.onnx");
    let fp32_size = std::fs::metadata(&fp32_path)?.len();
    let scratch = tempfile::tempdir()?;
    let mut variants: Vec<(String, PathBuf)> = vec![("fp32".into(), fp32_path.clone())];
    for form in [MatMulForm::Integer, MatMulForm::Fused, MatMulForm::Qdq] {
        for weights in [WeightRange::Int8, WeightRange::Int7, WeightRange::Uint8] {
            let name = format!("{form:?}/{weights:?}");
            if wanted.as_ref().is_some_and(|w| !w.contains(&name)) {
                continue;
            }
            let options = QuantizeOptions {
                form,
                weights,
                ..QuantizeOptions::default()
            };
            let started = Instant::now();
            let (model, summary) =
                quantize::quantize_dynamic(quantize::load(&fp32_path)?, &options)?;
            let path = scratch.path().join(format!("{form:?}-{weights:?}.onnx"));
            clarity_runtime::onnx::save(model, &path)?;
            eprintln!(
                "{form:?}/{weights:?}: {} matmuls, {} gathers int8, {} kept f32, written in {:.1}s",
                summary.matmuls,
                summary.gathers,
                summary.kept_f32,
                started.elapsed().as_secs_f64()
            );
            variants.push((name, path));
        }
    }

    let reference = OrtClassifier::load(&fp32_path, Device::Cpu, Some(2))?;
    let expected: Vec<Vec<f32>> = batches
        .iter()
        .map(|b| reference.classify(b))
        .collect::<Result<Vec<_>, _>>()?
        .concat();
    drop(reference);
    let sessions: Vec<OrtClassifier> = variants
        .iter()
        .map(|(_, path)| OrtClassifier::load(path, Device::Cpu, Some(2)))
        .collect::<Result<_, _>>()?;
    // Round-robin over the variants, so load from other processes on the machine falls on
    // all of them alike; the median of each variant's runs is reported.
    let mut single = vec![Vec::new(); sessions.len()];
    let mut full_runs = vec![Vec::new(); sessions.len()];
    let started = Instant::now();
    let mut round = 0;
    while round < 3 || (started.elapsed() < budget * sessions.len() as u32 && round < 30) {
        for (k, session) in sessions.iter().enumerate() {
            if round == 0 {
                session.logits(&one)?;
                session.logits(&full)?;
            }
            single[k].extend(time_ms(session, &one, 3)?);
            full_runs[k].extend(time_ms(session, &full, 1)?);
        }
        round += 1;
    }
    println!(
        "| variant | size MB (x fp32) | b1 p50 ms | b16x128 pairs/s | max |dp| | mean |dp| | argmax agree |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (k, ((name, path), session)) in variants.iter().zip(&sessions).enumerate() {
        let size = std::fs::metadata(path)?.len();
        let p50 = median(&mut single[k]);
        let per_batch = median(&mut full_runs[k]);
        let got: Vec<Vec<f32>> = batches
            .iter()
            .map(|b| session.classify(b))
            .collect::<Result<Vec<_>, _>>()?
            .concat();
        let (max, mean, agree) = agreement(&expected, &got);
        println!(
            "| {name} | {:.1} ({:.2}) | {p50:.1} | {:.1} | {max:.4} | {mean:.4} | {agree}/{} |",
            size as f64 / 1e6,
            size as f64 / fp32_size as f64,
            16.0 * 1000.0 / per_batch,
            expected.len()
        );
    }
    eprintln!("{round} rounds in {:.0}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Wall times of `runs` runs of `session` on `batch`, in ms.
fn time_ms(session: &OrtClassifier, batch: &Encoded, runs: usize) -> Res<Vec<f64>> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            session.logits(batch)?;
            Ok(t.elapsed().as_secs_f64() * 1000.0)
        })
        .collect()
}

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// `batch` rows of `seq` real tokens (no padding).
fn synthetic(batch: usize, seq: usize) -> Encoded {
    let ids = (0..batch * seq)
        .map(|k| 1000 + (k * 7919 % 20000) as i64)
        .collect();
    Encoded {
        batch,
        seq,
        input_ids: ids,
        attention_mask: vec![1; batch * seq],
        token_type_ids: vec![0; batch * seq],
    }
}

/// Max and mean absolute probability difference, and how many argmaxes agree.
fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32, usize) {
    let mut max = 0f32;
    let mut sum = 0f32;
    let mut n = 0;
    let mut agree = 0;
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            max = max.max((p - q).abs());
            sum += (p - q).abs();
            n += 1;
        }
        agree += usize::from(argmax(x) == argmax(y));
    }
    (max, sum / n.max(1) as f32, agree)
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&i, &j| row[i].total_cmp(&row[j]))
        .unwrap_or(0)
}

/// `(question, context)` pairs of a JSON array of records.
fn read_pairs(path: &Path) -> Res<Vec<(String, String)>> {
    let records: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
    let pairs: Vec<_> = records
        .iter()
        .map(|r| (field(r, "question"), field(r, "context")))
        .collect();
    if pairs.is_empty() {
        return Err(format!("{}: no records", path.display()).into());
    }
    Ok(pairs)
}
