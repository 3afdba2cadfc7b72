#!/usr/bin/env python3
"""Soak: a bounded loopback run of the real `clarity-host serve` at saturation (wrk, 64
connections) against two models at once, with single pairs, batches of 8 and 32, and 1% bad
bodies (malformed JSON, answered 400). It runs `--minutes` one-minute wrk rounds (10 by
default) and stops by itself, then prints one table:

- requests, and failures: any status but 200, 429 and the bad bodies' 400s, any socket
  error or timeout, or a 400 count that is not the bad bodies' share (must all be 0);
- p50/p99 latency of the first and of the last minute (last p99 within 1.5x of the first);
- RSS after the first minute (warm-up) and at the end (growth under 5%);
- a clean exit on SIGTERM right after the load; the CPU model and flags.

    python3 bench/soak.py [--minutes 10] [--connections 64] [--bin-dir target/debug]

Exits 1 if a check fails. Loopback only; needs wrk (`apt-get install wrk`) and the built
host and classic-example plugin (`cargo build -p clarity-host -p clarity-classic-example`).
"""

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
from serve_classic import start_server, stop  # noqa: E402  (same folder)

ROUTES = ["/classify/alpha", "/classify/beta"]
BAD_EVERY = 100  # one request in 100 has a malformed body


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="one-minute rounds (default 10)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bin-dir", type=Path, default=ROOT / "target" / "debug",
                        help="where clarity-host and the plugin are (default target/debug)")
    parser.add_argument("--seconds-per-round", type=int, default=60, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minutes < 2:
        parser.error("--minutes must be at least 2 (the first and last minute are compared)")
    return args


def write_config(workdir: Path, bin_dir: Path) -> Path:
    plugin = bin_dir / "libclarity_classic_example.so"
    host = bin_dir / "clarity-host"
    for built in (plugin, host):
        if not built.is_file():
            sys.exit(f"{built} is missing: cargo build -p clarity-host -p clarity-classic-example")
    entries = []
    for route in ROUTES:
        name = route.rsplit("/", 1)[1]
        entries.append(f"""- name: {name}
  type: classic
  plugin: {plugin}
  route: {route}
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: {ROOT}/data/sample/train.json
    valid_file: {ROOT}/data/sample/valid.json
""")
    config = workdir / "models.yaml"
    config.write_text("".join(entries))
    return config


def pair(rng: random.Random) -> dict:
    subject = rng.choice(["the minimum wage", "the budget", "the border", "taxes", "schools"])
    answer = rng.choice(["Yes, we will.", "I won't comment on that.", "It depends on many things.",
                         "We have always said so.", "Let me talk about something else."])
    return {"question": f"Will you change {subject}?",
            "context": f"Q: Will you change {subject}? A: {answer}"}


def write_requests(workdir: Path) -> Path:
    """100 requests: both models in turn; singles, batches of 8 and 32; one malformed body."""
    rng = random.Random(7)
    lines = []
    for i in range(BAD_EVERY):
        route = ROUTES[i % 2]
        if i == BAD_EVERY // 2:
            body = '{"question": "Will you?", "context": '  # cut short: 400
        elif i % 10 == 3:
            body = json.dumps([pair(rng) for _ in range(8)])
        elif i % 25 == 7:
            body = json.dumps([pair(rng) for _ in range(32)])
        else:
            body = json.dumps(pair(rng))
        lines.append(f"{route}\t{body}")
    path = workdir / "requests.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


def cpu() -> tuple[str, str]:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.MULTILINE)
    wanted = ("avx", "avx2", "avx512f", "fma", "sse4_2", "f16c", "bmi2")
    have = flags.group(1).split() if flags else []
    return (model.group(1) if model else "unknown",
            " ".join(f for f in wanted if f in have) + f" ({len(have)} flags)")


def wrk_round(port: int, requests: Path, connections: int, seconds: int) -> dict:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
               "-s", str(BENCH_DIR / "soak.lua"), f"http://127.0.0.1:{port}", "--", str(requests)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
    if out.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return json.loads(line)


def main():
    args = parse_args()
    args.bin_dir = args.bin_dir.resolve()  # models.yaml is read from a temporary folder
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="clarity-soak-"))
    config = write_config(workdir, args.bin_dir)
    requests = write_requests(workdir)
    command = [str(args.bin_dir / "clarity-host"), "--config", str(config), "serve",
               "--host", "127.0.0.1", "--port", "0"]
    import os
    env = dict(os.environ, CLARITY_NO_TENSORBOARD="true")
    # The two classic models train on the sample data at startup (a few seconds).
    server = start_server("clarity-host", command, r"Listening on http://127\.0\.0\.1:(\d+)",
                          workdir / "serve.log", env=env, ready_timeout=300)
    rounds, rss = [], []
    started = time.monotonic()
    try:
        for minute in range(args.minutes):
            result = wrk_round(server.port, requests, args.connections, args.seconds_per_round)
            result["rss_kib"] = rss_kib(server.process.pid)
            # Other work on the machine shows in the latency: keep the 1-minute load average.
            result["load"] = float(Path("/proc/loadavg").read_text().split()[0])
            rounds.append(result)
            print(f"minute {minute + 1}: {result['requests']} requests, "
                  f"p50 {result['p50_us'] / 1000:.1f} ms, p99 {result['p99_us'] / 1000:.1f} ms, "
                  f"statuses {result['statuses']}, RSS {result['rss_kib'] / 1024:.1f} MiB, "
                  f"load {result['load']:.2f}",
                  flush=True)
    finally:
        stop_started = time.monotonic()
        stop(server)
        exit_code = server.process.returncode
        stop_seconds = time.monotonic() - stop_started
    elapsed = time.monotonic() - started

    total = sum(r["requests"] for r in rounds)
    statuses = {}
    for r in rounds:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    socket_errors = sum(sum(r["errors"].values()) for r in rounds)
    answered = sum(statuses.values())
    bad_expected = answered / BAD_EVERY
    bad_seen = statuses.get("400", 0)
    # Each round stops mid-cycle on each connection: the 400 count may be off by a round's
    # connections at most.
    bad_ok = abs(bad_seen - bad_expected) <= args.connections * len(rounds)
    other = {s: n for s, n in statuses.items() if s not in ("200", "429", "400")}
    failures = sum(other.values()) + socket_errors + (0 if bad_ok else 1)
    first, last = rounds[0], rounds[-1]
    p99_ratio = last["p99_us"] / max(first["p99_us"], 1)
    growth = (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
    model, flags = cpu()
    checks = {
        "no failures": failures == 0,
        "last-minute p99 within 1.5x of the first": p99_ratio <= 1.5,
        "RSS growth after warm-up under 5%": growth < 0.05,
        "clean exit on SIGTERM": exit_code == 0,
    }
    rows = [
        ("duration", f"{elapsed / 60:.1f} min ({len(rounds)} one-minute wrk rounds, "
                     f"{args.connections} connections, 2 models)"),
        ("requests", f"{total:,} ({total / elapsed:,.0f}/s)"),
        ("statuses", ", ".join(f"{s}: {n:,}" for s, n in sorted(statuses.items()))),
        ("bad bodies (400)", f"{bad_seen:,} (1% of requests: {bad_expected:,.0f})"),
        ("failures (other statuses, socket errors, timeouts)", f"{failures}"),
        ("p50 / p99 first minute", f"{first['p50_us'] / 1000:.1f} / {first['p99_us'] / 1000:.1f} ms"),
        ("p50 / p99 last minute", f"{last['p50_us'] / 1000:.1f} / {last['p99_us'] / 1000:.1f} ms "
                                  f"(p99 x{p99_ratio:.2f})"),
        ("load average, first / last minute", f"{first['load']:.2f} / {last['load']:.2f} "
                                               f"(the server and wrk need about 2)"),
        ("RSS after warm-up / end", f"{first['rss_kib'] / 1024:.1f} / {last['rss_kib'] / 1024:.1f} MiB "
                                    f"({growth * 100:+.1f}%)"),
        ("stop on SIGTERM", f"exit {exit_code} after {stop_seconds:.1f} s"),
        ("CPU", f"{model}; {flags}"),
        ("binary", str(args.bin_dir / "clarity-host")),
    ]
    print("\n| soak | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print()
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}: {name}")
    if other:
        print(f"unexpected statuses: {other}")
    shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
