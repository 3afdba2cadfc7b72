"""The PyTorch half of the encoder benchmark (`encoder_vs_pytorch.py` runs it in its venv).

    python encoder_pytorch_half.py WORKDIR --threads 2 --reps '{"b1": [3, 10], ...}'

WORKDIR is what `bench_encoder` wrote: config.json + model.safetensors (transformers names,
3-label head), inputs.json (32 rows of 128 token ids) and logits.json (candle's and ONNX
Runtime's eval logits of the first rows). This loads the same model as
BertForSequenceClassification, checks its eval logits against those, and measures what the
Rust half measures, the same way (warmup runs, then the median of the measured runs):

- inference latency at batch 1 (row 0) and throughput at batch 32 (all rows): eval mode,
  `torch.inference_mode()`;
- seconds per training step at batch 8 (rows 0..8): train mode (dropout), cross-entropy,
  backward, gradient clipping to norm 1, AdamW (lr 2e-5, weight decay 0.01 except on biases
  and LayerNorm weights, as transformers' Trainer and the Rust training loop do), zero_grad.

Inference is measured before training (training changes the weights). Prints one JSON object.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers
from transformers import BertForSequenceClassification

TRAIN_BATCH = 8
LEARNING_RATE = 2e-5
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=json.loads, required=True,
                        help='JSON: {"b1": [warmup, iters], "b32": [...], "train": [...]}')
    return parser.parse_args()


def load_model(workdir: Path) -> BertForSequenceClassification:
    """The benchmark's model from WORKDIR; fails if any weight was not in the file."""
    model, info = BertForSequenceClassification.from_pretrained(
        workdir, output_loading_info=True, dtype=torch.float32)
    if info.get("missing_keys"):
        sys.exit(f"weights missing from {workdir / 'model.safetensors'}: "
                 f"{sorted(info['missing_keys'])}")
    return model


def load_inputs(workdir: Path) -> dict:
    """inputs.json as int64 tensors [rows, seq], plus the labels."""
    data = json.loads((workdir / "inputs.json").read_text())
    batch = {key: torch.tensor(data[key], dtype=torch.long)
             for key in ("input_ids", "attention_mask", "token_type_ids")}
    return {"batch": batch, "labels": torch.tensor(data["labels"], dtype=torch.long)}


def rows(batch: dict, start: int, count: int) -> dict:
    return {key: value[start:start + count].contiguous() for key, value in batch.items()}


def max_abs_diff(a, b) -> float:
    return float((torch.tensor(a) - torch.tensor(b)).abs().max())


def parity(model, batch: dict, workdir: Path) -> dict:
    """Eval logits of the rows in logits.json against candle's and ONNX Runtime's."""
    reference = json.loads((workdir / "logits.json").read_text())
    model.eval()
    with torch.inference_mode():
        logits = model(**rows(batch, 0, reference["rows"])).logits
    ours = logits.tolist()
    out = {"rows": reference["rows"], "pytorch_logits": ours,
           "pytorch_vs_candle_max_abs_diff": max_abs_diff(ours, reference["candle"])}
    if "ort" in reference:
        out["pytorch_vs_ort_max_abs_diff"] = max_abs_diff(ours, reference["ort"])
    return out


def measure(reps: list[int], run) -> list[float]:
    """Seconds of each measured call of `run`, after `reps[0]` warmup calls."""
    warmup, iters = reps
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def inference(model, batch: dict, reps: dict) -> dict:
    """Batch-1 latency and batch-32 throughput, eval mode, no autograd."""
    model.eval()
    b1, b32 = rows(batch, 0, 1), batch
    with torch.inference_mode():
        b1_s = measure(reps["b1"], lambda: model(**b1).logits)
        b32_s = measure(reps["b32"], lambda: model(**b32).logits)
    n = b32["input_ids"].shape[0]
    return {"b1_ms": statistics.median(b1_s) * 1e3, "b32_seq_per_s": n / statistics.median(b32_s),
            "b32_rows": n, "b1_s": b1_s, "b32_s": b32_s}


def optimizer_for(model) -> torch.optim.AdamW:
    """AdamW with weight decay on every weight but biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE)


def training(model, batch: dict, labels, reps: list[int]) -> dict:
    """Full training steps on rows 0..TRAIN_BATCH, timed in phases like the Rust half."""
    model.train()
    inputs, targets = rows(batch, 0, TRAIN_BATCH), labels[:TRAIN_BATCH]
    optimizer = optimizer_for(model)
    phases = {"total": [], "forward": [], "backward": [], "optimizer": []}
    losses = []
    warmup, iters = reps
    for step in range(warmup + iters):
        start = time.perf_counter()
        logits = model(**inputs).logits
        loss = torch.nn.functional.cross_entropy(logits, targets)
        loss_value = loss.item()
        forward = time.perf_counter() - start
        loss.backward()
        backward = time.perf_counter() - start - forward
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total = time.perf_counter() - start
        if step >= warmup:
            for key, value in (("total", total), ("forward", forward),
                               ("backward", backward), ("optimizer", total - forward - backward)):
                phases[key].append(value)
            losses.append(loss_value)
    return {"train_s_per_step": statistics.median(phases["total"]),
            "train_forward_s": statistics.median(phases["forward"]),
            "train_backward_s": statistics.median(phases["backward"]),
            "train_optimizer_s": statistics.median(phases["optimizer"]),
            "train_losses": losses, "train_s": phases["total"]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.workdir)
    data = load_inputs(args.workdir)
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "threads": torch.get_num_threads(), "cuda_available": torch.cuda.is_available(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "mkl_instructions": os.environ.get("MKL_ENABLE_INSTRUCTIONS", "all the CPU has"),
           "attn_implementation": getattr(model.config, "_attn_implementation", None),
           "reps": args.reps}
    print("pytorch: parity check", file=sys.stderr)
    out.update(parity(model, data["batch"], args.workdir))
    print("pytorch: inference", file=sys.stderr)
    out.update(inference(model, data["batch"], args.reps))
    out["peak_rss_inference_mb"] = peak_rss_mb()
    print("pytorch: training", file=sys.stderr)
    out.update(training(model, data["batch"], data["labels"], args.reps["train"]))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
