#!/usr/bin/env python3
"""What `serving_config.isolation: process` costs: one server, the same trained classic model
served twice (once in the server's process, once in a model process of its own), loaded with
the same client (wrk) in turns, one table with the ratios.

    python3 bench/isolation.py [--bin-dir target/release] [--duration 10] [--rounds 3]

The classic model is the cheapest one to score (microseconds a pair), so the pipe between the
server and the model's process weighs the most here: for an encoder or a LoRA model, whose
forward pass takes milliseconds, the same overhead is a far smaller share.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import serve_classic as sc
from serve_encoder import cpu_flags

ROUTES = {"thread": "/classify/thread", "process": "/classify/process"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=sc.REPO / "target" / "release")
    parser.add_argument("--data-dir", type=Path, default=sc.REPO / "data" / "sample")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=sc.BENCH_DIR / "results-isolation.md")
    return parser.parse_args()


def write_config(workdir: Path, bin_dir: Path, data_dir: Path) -> Path:
    """Two entries over one trained model: `thread` and `process`."""
    base = json.loads(sc.write_clarity_config(workdir, bin_dir, data_dir).read_text())
    model = base["models"][0]
    thread = {**model, "name": "thread", "route": ROUTES["thread"]}
    process = {**model, "name": "process", "route": ROUTES["process"],
               "serving_config": {"isolation": "process"}}
    path = workdir / "models.yaml"
    path.write_text(json.dumps({"models": [thread, process]}, indent=2))
    return path


def main():
    args = parse_args()
    args.bin_dir = args.bin_dir.resolve()  # models.yaml is read from a temporary folder
    sc.check_tools(args.bin_dir)
    test = json.loads((args.data_dir / "valid.json").read_text())
    server_cpu, client_cpu = sc.pinned(sc.SERVER_CPU, True), sc.pinned(sc.CLIENT_CPU, True)
    with tempfile.TemporaryDirectory(prefix="clarity-isolation-") as tmp:
        workdir = Path(tmp)
        config = write_config(workdir, args.bin_dir, args.data_dir)
        trained = subprocess.run(server_cpu + [str(args.bin_dir / "clarity-host"), "--config",
                                               str(config), "train", "--model", "thread"],
                                 capture_output=True, text=True)
        if trained.returncode != 0:
            sys.exit(f"training failed:\n{trained.stderr[-3000:]}")
        server = sc.start_clarity(args.bin_dir, config, server_cpu, workdir)
        bodies = sc.write_bodies(workdir, test)
        phases = {"seq": (bodies["single"], 1), "conc": (bodies["single"], sc.CONCURRENCY),
                  "batch": (bodies["batch"], 1)}
        runs = {kind: {p: [] for p in phases} for kind in ROUTES}
        try:
            for round_ in range(args.rounds):
                for kind, route in ROUTES.items():
                    for phase, (body, conns) in phases.items():
                        print(f"round {round_ + 1}: {kind} {phase}", file=sys.stderr)
                        sc.run_wrk(server.port, body, conns, args.warmup, client_cpu, route)
                        runs[kind][phase].append(
                            sc.run_wrk(server.port, body, conns, args.duration, client_cpu,
                                       route))
        finally:
            sc.stop(server)
    table = report(runs, args)
    print(table)
    args.out.write_text(table + "\n")


def report(runs: dict, args) -> str:
    def med(kind, phase, key):
        return statistics.median(r[key] for r in runs[kind][phase])

    rows = []
    names = {"seq": "1 client, 1 pair", "conc": f"{sc.CONCURRENCY} clients, 1 pair",
             "batch": f"1 client, {sc.BATCH_SIZE}-pair batches"}
    for phase, name in names.items():
        t, p = med("thread", phase, "rps"), med("process", phase, "rps")
        rows.append((f"{name}: requests/s", f"{t:.0f}", f"{p:.0f}", f"{p / t:.2f}"))
        t, p = med("thread", phase, "p50_us"), med("process", phase, "p50_us")
        rows.append((f"{name}: p50 ms", f"{t / 1000:.2f}", f"{p / 1000:.2f}", f"{p / t:.2f}"))
    errors = {k: sum(r["error_count"] for ph in runs[k].values() for r in ph) for k in runs}
    lines = ["| | isolation: thread | isolation: process | process / thread |",
             "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += ["",
              f"- CPU: {sc.cpu_model()}, {os.cpu_count()} cores, flags: {cpu_flags()}",
              f"- server on CPU {sc.SERVER_CPU}, wrk on CPU {sc.CLIENT_CPU}; {args.rounds} "
              f"rounds of {args.duration} s per phase, medians; wrk errors: {errors}",
              f"- command: `python3 {' '.join(sys.argv)}`; binaries from `{args.bin_dir}`"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
