#!/usr/bin/env python3
"""Our ONNX graph of MiniLM against `torch.onnx.export`'s, under one ONNX Runtime.

    python3 bench/onnx_graph_vs_torch.py [--rounds 5] [--threads 2] [--no-build]

Steps: build `bench_encoder` (release); reuse the PyTorch venv of encoder_vs_pytorch.py and
add onnx and onnxruntime to it (requirements-graphs.txt); `bench_encoder --graphs-only` writes
MiniLM with a seeded 3-label head and our exports of it (the fused form the plugin writes by
default, the standard-operator form, and both in int8) with 32 real rows of 128 tokens;
`onnx_graph_half.py` exports the same weights with `torch.onnx.export` and times every graph
with the same session options (see its docstring). Prints one table with the CPU model and
flags, and writes every number to bench/results-graphs.json.

Standard library only; the venv holds the PyTorch side.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import encoder_vs_pytorch as ev
from serve_encoder import cpu_flags
from serve_classic import cpu_model

BENCH_DIR = Path(__file__).resolve().parent
HALF = BENCH_DIR / "onnx_graph_half.py"
EXTRA_REQUIREMENTS = BENCH_DIR / "requirements-graphs.txt"
REFERENCE = "torch.onnx.export (eager)"


def log(message: str):
    print(f"onnx_graph_vs_torch: {message}", file=sys.stderr, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (medians)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--no-build", action="store_true", help="use bench_encoder as built")
    parser.add_argument("--venv", type=Path, default=ev.REPO / "target" / "bench-venv")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results-graphs.json")
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be at least 1")
    return args


def ensure_python(venv: Path) -> Path:
    """The PyTorch venv of encoder_vs_pytorch.py plus onnx and onnxruntime."""
    return ev.ensure_venv_with(venv, EXTRA_REQUIREMENTS, ".graphs-requirements")


def render(results: dict) -> str:
    graphs = results["graphs"]
    ref = graphs[REFERENCE]
    lines = [
        f"CPU: {results['cpu']}, {results['cpus']} cores, flags: {results['flags']}",
        f"ONNX Runtime {results['onnxruntime']}, {results['threads']} threads, "
        f"median of {results['rounds']} rounds; ratio = {REFERENCE}'s time / this graph's "
        f"(above 1: faster than the reference)",
        "",
        "| graph | batch 1 (ms) | ratio | batch 32 (ms) | ratio | max abs diff vs candle "
        "| after ONNX Runtime's optimizer |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in graphs.items():
        b1, b32 = statistics.median(g["b1_ms"]), statistics.median(g["b32_ms"])
        r1 = statistics.median(a / b for a, b in zip(ref["b1_ms"], g["b1_ms"]))
        r32 = statistics.median(a / b for a, b in zip(ref["b32_ms"], g["b32_ms"]))
        ops = ", ".join(f"{op} {n}" for op, n in g["fusions"]["optimized"].items())
        lines.append(f"| {name} | {b1:.1f} | {r1:.2f} | {b32:.0f} | {r32:.2f} | "
                     f"{g['max_abs_diff_vs_candle']:.1e} | {g['fusions']['nodes_optimized']} "
                     f"nodes: {ops} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    binary = ev.build_rust(args.no_build)
    python = ensure_python(args.venv.resolve())
    workdir = Path(tempfile.mkdtemp(prefix="graph-bench-"))
    try:
        ours, _ = ev.run_measured([binary, workdir, "--graphs-only", "--root", ev.REPO],
                                  "bench_encoder --graphs-only")
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        measured, _ = ev.run_measured(
            [python, HALF, workdir, "--graphs", json.dumps(ours["graphs"]),
             "--threads", args.threads, "--rounds", args.rounds], "onnx_graph_half.py", env=env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = dict(measured, cpu=cpu_model(), cpus=os.cpu_count(), flags=cpu_flags(),
                   loadavg=os.getloadavg())
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.out}")
    print(render(results))
    bad = [name for name, g in results["graphs"].items()
           if "int8" not in name and g["max_abs_diff_vs_candle"] > results["parity_limit"]]
    if bad:
        sys.exit(f"onnx_graph_vs_torch: fp32 graphs off candle by more than "
                 f"{results['parity_limit']}: {', '.join(bad)}")


if __name__ == "__main__":
    try:
        main()
    except ev.BenchError as e:
        sys.exit(f"onnx_graph_vs_torch: error: {e}")
    except KeyboardInterrupt:
        sys.exit("onnx_graph_vs_torch: interrupted")
