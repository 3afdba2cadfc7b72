#!/usr/bin/env python3
"""Benchmark our encoder (ONNX Runtime and candle) against PyTorch + transformers on one model.

    python3 bench/encoder_vs_pytorch.py [--quick] [--no-build] [--threads 2]

Steps: build the Rust half (`plugins/encoder/examples/bench_encoder.rs`, release); build a
cached venv with PyTorch (CPU use only) and transformers from requirements-encoder.txt; run
the Rust half into a temporary WORKDIR, where it writes MiniLM with a seeded 3-label head
(safetensors + config.json, and our ONNX export), 32 tokenized rows of 128 tokens and
candle's logits, and measures ONNX Runtime and candle; run the PyTorch half
(`encoder_pytorch_half.py`) in the venv on the same files, which checks its logits against
candle's and measures the same things with the same repetitions. With `--rounds N` the two
halves run N times in turn (Rust, PyTorch, Rust, ...) and the table gives each number's
median over the rounds and each ratio's median over the rounds' own ratios, so that a drift
in the shared machine's load hits both sides. Prints one table and writes every number to
bench/results-encoder.json.

Standard library only; the venv holds the PyTorch side.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cuda_stubs

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REQUIREMENTS = BENCH_DIR / "requirements-encoder.txt"
PYTORCH_HALF = BENCH_DIR / "encoder_pytorch_half.py"
BUILD = ["cargo", "build", "--release", "-p", "clarity-encoder", "--example", "bench_encoder"]
# Without gemm's AVX-512 kernels: the AVX2 path, measurable on an AVX-512 machine.
AVX2_ONLY = ["--no-default-features"]
# Warmup and measured runs, as Plan::new in bench_encoder.rs (used unless its JSON says).
REPS = {
    False: {"b1": [5, 40], "b32": [2, 8], "train": [2, 10]},
    True: {"b1": [3, 10], "b32": [1, 3], "train": [1, 3]},
}
PARITY_LIMIT = 1e-4  # max abs logit difference above which the run is flagged


class BenchError(Exception):
    """A step failed; the message says which and what to do."""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (a smoke run, about 3 minutes)")
    parser.add_argument("--no-build", action="store_true",
                        help="use the bench_encoder binary as built, without cargo")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for ONNX Runtime, candle and PyTorch (default 2)")
    parser.add_argument("--venv", type=Path, default=REPO / "target" / "bench-venv",
                        help="venv for the PyTorch side, created if missing (reused)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results-encoder.json",
                        help="where to write all results as JSON")
    parser.add_argument("--cuda-libs", action="store_true",
                        help="install torch's real CUDA dependencies (nvidia-* wheels and "
                             "triton, 4 GB more) instead of stand-in libraries")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run both halves this many times in turn and report medians "
                             "(default 1; 3 gives ratios that shared-machine noise moves less)")
    parser.add_argument("--avx2-only", action="store_true",
                        help="build the Rust half without gemm's AVX-512 kernels (cargo "
                             "--no-default-features) and hold PyTorch to AVX2 (MKL, oneDNN, "
                             "ATen), to measure both AVX2 paths on an AVX-512 machine")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temporary WORKDIR (model, inputs) and print its path")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def log(message: str):
    print(f"encoder_vs_pytorch: {message}", file=sys.stderr, flush=True)


def run_checked(command: list, what: str, **kwargs):
    """Runs a command (output to the terminal); raises BenchError naming `what` on failure."""
    try:
        done = subprocess.run([str(c) for c in command], **kwargs)
    except FileNotFoundError as e:
        raise BenchError(f"{what}: cannot run {command[0]} ({e})") from e
    if done.returncode != 0:
        raise BenchError(f"{what} failed (exit {done.returncode}): {shlex.join(map(str, command))}")
    return done


# ---- the Rust half ----


def bench_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "examples" / "bench_encoder"


def build_rust(no_build: bool, avx2_only: bool = False) -> Path:
    """Builds bench_encoder in release (unless `no_build`; without AVX-512 kernels with
    `avx2_only`); returns the binary."""
    binary = bench_binary()
    if no_build:
        if not binary.exists():
            raise BenchError(f"{binary} does not exist: build it ({shlex.join(BUILD)}) "
                             f"or drop --no-build")
        return binary
    if shutil.which("cargo") is None:
        raise BenchError("cargo is not on PATH: install Rust (rustup), or build bench_encoder "
                         "elsewhere and pass --no-build")
    build = BUILD + (AVX2_ONLY if avx2_only else [])
    log(shlex.join(build))
    run_checked(build, "building the Rust half", cwd=REPO)
    if not binary.exists():
        raise BenchError(f"cargo succeeded but {binary} is missing")
    return binary


def run_measured(command: list, what: str, env=None) -> tuple[dict, float]:
    """Runs a benchmark process whose last stdout line is JSON (stderr to the terminal).
    Returns that JSON and the process's peak RSS in MB."""
    with tempfile.TemporaryFile("w+") as stdout:
        try:
            process = subprocess.Popen([str(c) for c in command], stdout=stdout, env=env)
        except OSError as e:
            raise BenchError(f"{what}: cannot start {command[0]} ({e})") from e
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = stdout.read()
    if process.returncode != 0:
        raise BenchError(f"{what} failed (exit {process.returncode}): "
                         f"{shlex.join(map(str, command))}")
    lines = text.strip().splitlines()
    try:
        return json.loads(lines[-1]), usage.ru_maxrss / 1024
    except (IndexError, json.JSONDecodeError) as e:
        raise BenchError(f"{what} printed no JSON result; its output ended:\n{text[-2000:]}") from e


def run_rust(binary: Path, workdir: Path, threads: int, quick: bool) -> tuple[dict, float]:
    """The Rust half's JSON (ORT and candle timings, the files it wrote) and peak RSS."""
    command = [binary, workdir, "--threads", threads, "--root", REPO]
    if quick:
        command.append("--quick")
    log(f"Rust half: {shlex.join(map(str, command))}")
    result, rss = run_measured(command, "the Rust half (bench_encoder)")
    for name in ("config", "weights", "inputs", "logits"):
        if not Path(result["files"][name]).exists():
            raise BenchError(f"the Rust half did not write its {name} file")
    return result, rss


def normalize_reps(reps) -> dict | None:
    """Repetitions as {"b1": [warmup, iters], ...}, from lists or {"warmup", "iters"}."""
    if not reps:
        return None
    return {k: [v["warmup"], v["iters"]] if isinstance(v, dict) else list(v)
            for k, v in reps.items()}


# ---- the PyTorch venv ----


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def torch_pin() -> str:
    """The `torch==X` line of the requirements file."""
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip().startswith("torch=="):
            return line.strip()
    raise BenchError(f"{REQUIREMENTS} pins no torch version")


def ensure_venv(venv: Path, real_cuda: bool) -> Path:
    """The PyTorch venv, rebuilt when the requirements or the CUDA choice change; returns
    its python. torch's CUDA libraries are either stand-ins (default) or the real wheels."""
    mode = "cuda-libs" if real_cuda else "cuda-stubs"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + mode.encode()).hexdigest()
    stamp, python = venv / ".requirements-sha256", venv_python(venv)
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return python
    size = "5.6 GB with the CUDA wheels" if real_cuda else "1.6 GB, a 540 MB torch download"
    log(f"creating {venv} ({mode}; about {size}) ...")
    stamp.unlink(missing_ok=True)
    run_checked([sys.executable, "-m", "venv", "--clear", venv], "creating the venv")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run_checked(pip + ["--no-deps", "-r", REQUIREMENTS],
                f"pip install --no-deps -r {REQUIREMENTS.name}")
    if real_cuda:
        run_checked(pip + [torch_pin()], f"pip install {torch_pin()} with its CUDA wheels")
    else:
        add_cuda_stubs(python, venv)
    check_torch(python)
    stamp.write_text(digest)
    return python


def ensure_venv_with(venv: Path, extra: Path, stamp_name: str) -> Path:
    """The PyTorch venv (see `ensure_venv`, CUDA stand-ins) plus the `extra` requirements
    file, installed again only when that file changes (`stamp_name` remembers it)."""
    python = ensure_venv(venv, real_cuda=False)
    stamp = venv / stamp_name
    wanted = extra.read_text()
    if not (stamp.exists() and stamp.read_text() == wanted):
        log(f"pip install -r {extra.name} into {venv} ...")
        run_checked([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                     "-r", extra], f"pip install -r {extra.name}")
        stamp.write_text(wanted)
    return python


def add_cuda_stubs(python: Path, venv: Path):
    """Builds stand-ins for the CUDA libraries torch's wheel links (see cuda_stubs.py)."""
    missing = cuda_stubs.missing_tools()
    if missing:
        raise BenchError(f"building CUDA stand-ins needs {', '.join(missing)} "
                         f"(apt-get install gcc binutils), or pass --cuda-libs")
    torch_dir = Path(subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('torch').origin)"],
        capture_output=True, text=True, check=True).stdout.strip()).parent
    try:
        made = cuda_stubs.make_stubs(torch_dir, venv / "cuda-stubs-build")
    except cuda_stubs.StubError as e:
        raise BenchError(f"{e} (pass --cuda-libs to install the real CUDA wheels)") from e
    log(f"CUDA stand-ins in {torch_dir / 'lib'}: {', '.join(made) or 'none needed'}")


def check_torch(python: Path):
    """Fails unless torch, transformers and safetensors import and torch computes on CPU."""
    probe = ("import torch, transformers, safetensors; "
             "x = torch.ones(4, 4, requires_grad=True); (x @ x).sum().backward(); "
             "assert float(x.grad.sum()) == 128.0; "
             "print(torch.__version__, transformers.__version__, torch.cuda.is_available())")
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"torch does not work in the venv:\n{done.stderr.strip()[-3000:]}")
    log(f"venv ok: torch, transformers, CUDA available: {done.stdout.strip()}")


def directory_mb(path: Path) -> float:
    files = (f for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return sum(f.stat().st_size for f in files) / 2**20


# ---- the PyTorch half ----


# PyTorch held to AVX2 as well under --avx2-only, or the comparison would set our AVX2 path
# against its AVX-512 one: ATen's own kernels, MKL's sgemm (which every Linear runs through;
# it honours this variable, 256 -> 151 GFLOP/s on a 1024x1536x384 product on a Xeon) and
# oneDNN.
PYTORCH_AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                     "ONEDNN_MAX_CPU_ISA": "AVX2"}


def pytorch_env(threads: int, avx2_only: bool = False) -> dict:
    """Thread counts pinned; transformers kept off the network; AVX2 only if asked."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
            **(PYTORCH_AVX2_ONLY if avx2_only else {})}


def run_pytorch(python: Path, workdir: Path, threads: int, reps: dict,
                avx2_only: bool = False) -> tuple[dict, float]:
    """The PyTorch half's JSON (parity, timings, the CPU capability it ran) and peak RSS."""
    command = [python, PYTORCH_HALF, workdir, "--threads", threads, "--reps", json.dumps(reps)]
    log(f"PyTorch half, reps {json.dumps(reps)}" + (", AVX2 only" if avx2_only else ""))
    return run_measured(command, "the PyTorch half", env=pytorch_env(threads, avx2_only))


# ---- results ----


def ratio(a: float, b: float) -> float | None:
    return a / b if a and b else None


def comparison(rust: dict, torch: dict) -> list[dict]:
    """The table's rows: each side's number and the row's ratio. Above 1, ORT beats PyTorch
    (inference rows) and candle is slower than PyTorch (training row)."""
    ort, candle = rust["ort"], rust["candle"]

    def row(metric, key, ratio_name, ratio_value, ort_value):
        return {"metric": metric, "ort": ort_value, "candle": candle[key], "pytorch": torch[key],
                "ratio_name": ratio_name, "ratio": ratio_value}

    return [
        row("inference batch 1 (ms)", "b1_ms", "PyTorch / ORT",
            ratio(torch["b1_ms"], ort["b1_ms"]), ort["b1_ms"]),
        row("inference batch 32 (seq/s)", "b32_seq_per_s", "ORT / PyTorch",
            ratio(ort["b32_seq_per_s"], torch["b32_seq_per_s"]), ort["b32_seq_per_s"]),
        row("training step batch 8 (s)", "train_s_per_step", "candle / PyTorch",
            ratio(candle["train_s_per_step"], torch["train_s_per_step"]), None),
    ]


def median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def combined_table(rounds: list[list[dict]]) -> list[dict]:
    """One table from the rounds' tables: each number's median, each ratio's median of the
    per-round ratios (each round pairs runs close in time), and the per-round ratios."""
    table = []
    for i, row in enumerate(rounds[0]):
        rows = [r[i] for r in rounds]
        table.append({**row, **{k: median([r[k] for r in rows])
                                for k in ("ort", "candle", "pytorch", "ratio")},
                      "ratio_per_round": [r["ratio"] for r in rows]})
    return table


def parity(rust: dict, torch: dict) -> dict:
    out = {"ort_vs_candle": rust["ort_vs_candle_max_abs_diff"],
           "pytorch_vs_candle": torch["pytorch_vs_candle_max_abs_diff"],
           "pytorch_vs_ort": torch.get("pytorch_vs_ort_max_abs_diff"), "rows": torch["rows"]}
    out["ok"] = all(v is None or v <= PARITY_LIMIT
                    for k, v in out.items() if k not in ("rows", "ok"))
    return out


def fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def render(results: dict) -> str:
    """The human-readable report: table, parity, memory, load, versions."""
    lines = ["| | ONNX Runtime (ours) | candle (ours) | PyTorch | ratio |",
             "|---|---|---|---|---|"]
    for row in results["table"]:
        lines.append(f"| {row['metric']} | {fmt(row['ort'])} | {fmt(row['candle'])} | "
                     f"{fmt(row['pytorch'])} | {row['ratio_name']} = {fmt(row['ratio'])} |")
    if len(results["rounds"]) > 1:
        lines.append("")
        lines.append(f"{len(results['rounds'])} rounds (medians above); ratio in each round: "
                     + "; ".join(f"{row['ratio_name']} "
                                 + ", ".join(fmt(r) for r in row["ratio_per_round"])
                                 for row in results["table"]))
    p = results["parity"]
    pairs = [("ORT vs candle", p["ort_vs_candle"]), ("PyTorch vs candle", p["pytorch_vs_candle"]),
             ("PyTorch vs ORT", p["pytorch_vs_ort"])]
    lines.append("")
    lines.append(f"parity, max abs diff of eval logits ({p['rows']} rows x 3): "
                 + ", ".join(f"{name} {value:.2e}" for name, value in pairs if value is not None)
                 + ("" if p["ok"] else f"  ** ABOVE {PARITY_LIMIT:g}: not the same model **"))
    rss = results["peak_rss_mb"]
    lines.append(f"peak RSS (MB): Rust half (ORT + candle inference + training) "
                 f"{rss['rust_process']:.0f}; PyTorch inference {rss['pytorch_inference']:.0f}, "
                 f"whole PyTorch half {rss['pytorch_process']:.0f}")
    load = results["loadavg"]
    lines.append("load average (1/5/15 min): " + "; ".join(
        f"{k} {' '.join(f'{x:.2f}' for x in v)}" for k, v in load.items()))
    if max(load["before"][0], load["after"][0]) > results["machine"]["cpus"]:
        lines.append("** load average above the CPU count (other jobs, or a build just "
                     "before): the timings may be disturbed **")
    m = results["machine"]
    lines.append(f"CPU: {m['cpu']}, {m['cpus']} cores, flags: {m.get('flags', '?')}; candle "
                 f"matmul kernels: {results['rust'].get('kernels', 'not reported')}; PyTorch "
                 f"kernels: ATen {results['pytorch'].get('cpu_capability', '?')}, MKL "
                 f"{results['pytorch'].get('mkl_instructions', '?')}")
    v = results["versions"]
    lines.append(f"threads {results['threads']}, {'quick' if results['quick'] else 'full'} "
                 f"reps {json.dumps(results['reps'])}; torch {v['torch']} "
                 f"({v['attn_implementation']} attention, CUDA {v['cuda']}), transformers "
                 f"{v['transformers']}, ORT provider {v['ort_provider']}")
    return "\n".join(lines)


def cpu_flags() -> str:
    """The SIMD flags that decide which kernels run, as /proc/cpuinfo lists them."""
    info = Path("/proc/cpuinfo")
    line = next((l for l in info.read_text().splitlines() if l.startswith("flags")), "") \
        if info.exists() else ""
    flags = set(line.split(":", 1)[-1].split())
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni")
             if f in flags]
    return " ".join(shown) + ("" if "avx512f" in flags else " (no AVX-512)")


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cpus": os.cpu_count(), "flags": cpu_flags(),
            "platform": platform.platform(), "python": platform.python_version()}


def collect(args, rounds, loadavg, venv_info, reps) -> dict:
    """All results; `rounds` holds (rust, rust_rss, torch, torch_rss) per round, and the
    top-level `rust`/`pytorch` are the last round's."""
    rust, rust_rss, torch, torch_rss = rounds[-1]
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "threads": args.threads, "quick": args.quick, "reps": reps,
        "loadavg": loadavg, "venv": venv_info,
        "versions": {"torch": torch["torch"], "transformers": torch["transformers"],
                     "attn_implementation": torch["attn_implementation"],
                     "cuda": "real wheels" if args.cuda_libs else "stand-ins",
                     "ort_provider": rust.get("ort_provider"),
                     "ort_library": rust.get("ort_library")},
        "table": combined_table([comparison(r, t) for r, _, t, _ in rounds]),
        "rounds": [{"table": comparison(r, t), "rust": r, "pytorch": t} for r, _, t, _ in rounds],
        "parity": parity(rust, torch),
        "peak_rss_mb": {"rust_process": max(r[1] for r in rounds),
                        "pytorch_process": max(r[3] for r in rounds),
                        "pytorch_inference": torch["peak_rss_inference_mb"]},
        "rust": rust, "pytorch": torch,
    }


def write_results(path: Path, results: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {path}")


def main():
    args = parse_args()
    loadavg = {"start": os.getloadavg()}
    binary = build_rust(args.no_build, args.avx2_only)
    python = ensure_venv(args.venv.resolve(), args.cuda_libs)
    venv_info = {"path": str(args.venv.resolve()), "size_mb": round(directory_mb(args.venv), 1),
                 "requirements": str(REQUIREMENTS.relative_to(REPO))}
    workdir = Path(tempfile.mkdtemp(prefix="encoder-bench-"))
    rounds = []
    try:
        loadavg["before"] = os.getloadavg()
        for round_index in range(args.rounds):
            if args.rounds > 1:
                log(f"round {round_index + 1} of {args.rounds}")
            rust, rust_rss = run_rust(binary, workdir, args.threads, args.quick)
            reps = normalize_reps(rust.get("reps")) or REPS[args.quick]
            loadavg.setdefault("between", os.getloadavg())
            torch, torch_rss = run_pytorch(python, workdir, args.threads, reps, args.avx2_only)
            rounds.append((rust, rust_rss, torch, torch_rss))
        loadavg["after"] = os.getloadavg()
    finally:
        if args.keep_workdir:
            log(f"WORKDIR kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = collect(args, rounds, loadavg, venv_info, reps)
    write_results(args.out, results)
    print(render(results))
    if not results["parity"]["ok"]:
        sys.exit(2)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"encoder_vs_pytorch: error: {e}")
    except KeyboardInterrupt:
        sys.exit("encoder_vs_pytorch: interrupted")
