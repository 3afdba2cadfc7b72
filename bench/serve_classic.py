#!/usr/bin/env python3
"""Serve the classic model through clarity-host and through FastAPI + scikit-learn, load both
with the same client (wrk), and print one comparison table (also written to results.md).

    python3 bench/serve_classic.py [--bin-dir target/release] [--duration 10]

Steps: build a cached venv with the pinned Python baseline (requirements.txt); train both
models on the same train file (timed); start each server in turn; check its predictions on
the test file; warm it up; measure (a) sequential single-pair latency, (b) throughput with 16
connections, (c) latency of 32-pair batch requests; read its peak RSS; stop it. The servers
take turns for --rounds rounds and the table shows the median of each metric over the rounds,
so a burst of other work on the machine skews one round, not the result.

By default the server runs on CPU 0 and wrk on CPU 1 (taskset), so on a 2-core machine each
side has one core and the client never steals cycles from the server. --no-pin lets both
share every core.
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
ROUTE = "/classify/classic"
LABELS = ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
BATCH_SIZE = 32
CONCURRENCY = 16
SERVER_CPU, CLIENT_CPU = 0, 1
NAMES = ("clarity-host", "FastAPI+sklearn")


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    startup_seconds: float  # spawn until /ready answers 200


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=REPO / "target" / "release",
                        help="folder with clarity-host and libclarity_classic_example.so")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "sample",
                        help="folder with train.json, valid.json, test.json")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured phase")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="times each server is started and measured (median reported)")
    parser.add_argument("--venv", type=Path, default=BENCH_DIR / ".venv")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin server and client to separate CPUs")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.md")
    return parser.parse_args()


# ---- environment ----


def ensure_venv(venv: Path) -> Path:
    """The baseline's venv, rebuilt only when requirements.txt changes; returns its python."""
    requirements = BENCH_DIR / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    python = venv / "bin" / "python"
    if stamp.exists() and stamp.read_text() == digest and python.exists():
        return python
    print(f"creating {venv} (pip install -r {requirements.name}) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
                   check=True)
    stamp.write_text(digest)
    return python


def check_tools(bin_dir: Path):
    """Fails early, naming what is missing and how to get it."""
    missing = []
    for path in (bin_dir / "clarity-host", bin_dir / "libclarity_classic_example.so"):
        if not path.exists():
            missing.append(f"{path} (cargo build --release -p clarity-host "
                           f"-p clarity-classic-example, or pass --bin-dir)")
    for tool, hint in (("wrk", "apt-get install wrk"), ("taskset", "apt-get install util-linux")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} ({hint})")
    if missing:
        sys.exit("missing: " + "; ".join(missing))


def pinned(cpu: int, pin: bool) -> list[str]:
    """Command prefix that runs a process on one CPU, or nothing when not pinning."""
    return ["taskset", "-c", str(cpu)] if pin else []


def baseline_env() -> dict[str, str]:
    # OpenBLAS starts one thread per core; when the cores are busy (unpinned, or other jobs on
    # the machine) its spinning threads made the sklearn fit ten times slower here. One thread
    # is what a one-worker server should use anyway; pinned, OpenBLAS already uses one.
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


# ---- training ----


def write_clarity_config(workdir: Path, bin_dir: Path, data_dir: Path) -> Path:
    # JSON is valid YAML, and json.dumps quotes paths safely. The options are the defaults of
    # models.yaml (word 1-2, char 2-5, prompt 0.5 / answer 1, C=10, balanced), spelled out.
    model = {
        "name": "classic",
        "type": "classic",
        "plugin": str(bin_dir / "libclarity_classic_example.so"),
        "route": ROUTE,
        "output_dir": str(workdir / "artifacts" / "classic"),
        "model_config": {"options": {
            "word_ngrams": [1, 2], "char_ngrams": [2, 5], "answer_marker": "\nA:",
            "block_weights": {"question": 0, "prompt": 0.5, "answer": 1},
            "c": 10, "class_weight": "balanced"}},
        "label_config": {"labels": LABELS},
        "data_config": {"train_file": str(data_dir / "train.json"),
                        "valid_file": str(data_dir / "valid.json")},
    }
    path = workdir / "models.yaml"
    path.write_text(json.dumps({"models": [model]}, indent=2))
    return path


def train_clarity(bin_dir: Path, config: Path, prefix: list[str]) -> dict:
    """Wall time of `clarity-host train` (process start to exit), and its own fit time."""
    started = time.perf_counter()
    subprocess.run(prefix + [str(bin_dir / "clarity-host"), "--config", str(config),
                             "train", "--model", "classic"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    report = json.loads((config.parent / "artifacts" / "classic" / "train_report.json")
                        .read_text())
    return {"wall": wall, "fit": report["seconds"]}


def train_sklearn(python: Path, data_dir: Path, model_path: Path, prefix: list[str]) -> dict:
    """Wall time of the baseline's `train` process, and the time of `Pipeline.fit` alone."""
    started = time.perf_counter()
    done = subprocess.run(prefix + [str(python), str(BENCH_DIR / "fastapi_classic_server.py"),
                                    "train", "--train", str(data_dir / "train.json"),
                                    "--labels", ",".join(LABELS), "--out", str(model_path)],
                          check=True, capture_output=True, text=True, env=baseline_env())
    wall = time.perf_counter() - started
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall": wall, "fit": report["fit_seconds"], "report": report}


# ---- servers ----


def wait_for_port(log: Path, pattern: str, process: subprocess.Popen, timeout=60.0) -> int:
    """Polls the server's log for the line announcing its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"server did not announce its port; log {log}:\n{log.read_text()[-2000:]}")


def wait_ready(port: int, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.05)
    sys.exit(f"server on port {port} not ready after {timeout} s")


def start_server(name: str, command: list[str], pattern: str, log: Path, env=None,
                 ready_timeout=60.0) -> Server:
    """Starts a server and waits for /ready; one that never gets there is killed, not left
    running, before the run stops with its log."""
    started = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        port = wait_for_port(log, pattern, process)
        wait_ready(port, timeout=ready_timeout)
    except SystemExit:
        process.kill()
        process.wait()
        sys.exit(f"{name} did not get ready; its log ({log}):\n"
                 f"{log.read_text(errors='replace')[-3000:]}")
    return Server(name, process, port, time.perf_counter() - started)


def start_clarity(bin_dir: Path, config: Path, prefix: list[str], workdir: Path) -> Server:
    command = prefix + [str(bin_dir / "clarity-host"), "--config", str(config),
                        "serve", "--port", "0", "--no-auto-train"]
    return start_server(NAMES[0], command, r"Listening on http://127\.0\.0\.1:(\d+)",
                        workdir / "clarity-host.log")


def start_fastapi(python: Path, model_path: Path, prefix: list[str], workdir: Path) -> Server:
    command = prefix + [str(python), str(BENCH_DIR / "fastapi_classic_server.py"), "serve",
                        "--model", str(model_path), "--route", ROUTE]
    return start_server(NAMES[1], command, r"PORT (\d+)", workdir / "fastapi.log",
                        env=baseline_env())


def peak_rss_mib(pid: int) -> float:
    """VmHWM: the most resident memory the process has had so far."""
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return kib / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def stop(server: Server):
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# ---- requests ----


def post_json(port: int, body) -> object:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{ROUTE}",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def check_answers(server: Server, test: list[dict]) -> list[str]:
    """Checks the response shape (single and batch) and returns the predicted labels."""
    pairs = [{"question": r["question"], "context": r["context"]} for r in test]
    single = post_json(server.port, pairs[0])
    assert set(single) == {"clarity_label", "confidence", "scores"}, single
    assert set(single["scores"]) == set(LABELS), single
    answers = post_json(server.port, pairs)
    assert isinstance(answers, list) and len(answers) == len(pairs), server.name
    assert answers[0]["clarity_label"] == single["clarity_label"], server.name
    return [a["clarity_label"] for a in answers]


def write_bodies(workdir: Path, test: list[dict]) -> dict[str, Path]:
    """One request body a line: every test pair alone, and 32-pair windows over the test set."""
    pairs = [{"question": r["question"], "context": r["context"]} for r in test]
    windows = [[pairs[(start + i) % len(pairs)] for i in range(BATCH_SIZE)]
               for start in range(len(pairs))]
    files = {"single": workdir / "single.jsonl", "batch": workdir / "batch32.jsonl"}
    files["single"].write_text("".join(json.dumps(p) + "\n" for p in pairs))
    files["batch"].write_text("".join(json.dumps(w) + "\n" for w in windows))
    return files


def run_wrk(port: int, bodies: Path, connections: int, seconds: int, prefix: list[str],
            route: str = ROUTE, timeout: str = "10s") -> dict:
    """One wrk run; the Lua script's done() prints a JSON line with counts and percentiles."""
    command = prefix + ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", timeout,
                        "-s", str(BENCH_DIR / "post_bodies.lua"),
                        f"http://127.0.0.1:{port}{route}", "--", str(bodies)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    line = next(l for l in reversed(done.stdout.splitlines()) if l.startswith("{"))
    result = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["error_count"] = sum(result["errors"].values())
    return result


def measure(server: Server, bodies: dict[str, Path], args, client: list[str]) -> dict:
    """Warm-up, then the three load phases, then the peak RSS (which covers all of them)."""
    phases = {"seq": (bodies["single"], 1),
              "conc": (bodies["single"], CONCURRENCY),
              "batch": (bodies["batch"], 1)}
    results = {}
    for name, (body_file, connections) in phases.items():
        print(f"  {server.name}: {name} ...", file=sys.stderr)
        # Warm-up at the phase's own concurrency: caches, allocator pools, thread pools.
        run_wrk(server.port, body_file, connections, args.warmup, client)
        # Server CPU time per request is less disturbed by other jobs than wall time.
        cpu_before = cpu_seconds(server.process.pid)
        results[name] = run_wrk(server.port, body_file, connections, args.duration, client)
        cpu = cpu_seconds(server.process.pid) - cpu_before
        results[name]["cpu_ms_per_request"] = cpu * 1000 / max(results[name]["requests"], 1)
    results["rss_mib"] = peak_rss_mib(server.process.pid)
    results["startup"] = server.startup_seconds
    return results


def median_run(rounds: list[dict]) -> dict:
    """Per-metric median over rounds; wrk error counts are summed instead (any error counts)."""
    merged = {}
    for key, value in rounds[0].items():
        values = [r[key] for r in rounds]
        if isinstance(value, dict):
            merged[key] = median_run(values)
        elif key == "error_count":
            merged[key] = sum(values)
        else:
            merged[key] = statistics.median(values)
    return merged


# ---- report ----


def accuracy(predicted: list[str], test: list[dict]) -> float:
    return sum(p == r["clarity_label"] for p, r in zip(predicted, test)) / len(test)


def table_rows(runs: dict, predictions: dict, test: list[dict]) -> list[tuple]:
    """(metric, clarity-host, FastAPI, ratio); ratio > 1 means clarity-host is better."""
    c, f = (runs[n] for n in NAMES)
    tc, tf = c["train"], f["train"]

    def lower(metric, a, b, fmt):  # lower is better: FastAPI / clarity
        return (metric, fmt.format(a), fmt.format(b), f"{b / a:.1f}×")

    def higher(metric, a, b, fmt):  # higher is better: clarity / FastAPI
        return (metric, fmt.format(a), fmt.format(b), f"{a / b:.1f}×")

    def ms(us):
        return us / 1000

    def pairs_s(run):
        return run["rps"] * BATCH_SIZE

    return [
        lower("train, whole process (s)", tc["wall"], tf["wall"], "{:.2f}"),
        lower("train, fit only (s)", tc["fit"], tf["fit"], "{:.2f}"),
        lower("start until /ready (s)", c["startup"], f["startup"], "{:.2f}"),
        (f"test accuracy ({len(test)} pairs)", f"{accuracy(predictions[NAMES[0]], test):.3f}",
         f"{accuracy(predictions[NAMES[1]], test):.3f}", ""),
        ("(a) sequential, 1 pair: requests", f'{c["seq"]["requests"]:.0f}',
         f'{f["seq"]["requests"]:.0f}', ""),
        lower("(a) sequential, 1 pair: p50 (ms)", ms(c["seq"]["p50_us"]), ms(f["seq"]["p50_us"]),
              "{:.2f}"),
        lower("(a) sequential, 1 pair: p99 (ms)", ms(c["seq"]["p99_us"]), ms(f["seq"]["p99_us"]),
              "{:.2f}"),
        higher(f"(b) {CONCURRENCY} connections, 1 pair: requests/s", c["conc"]["rps"],
               f["conc"]["rps"], "{:.0f}"),
        lower(f"(b) {CONCURRENCY} connections, 1 pair: p50 (ms)", ms(c["conc"]["p50_us"]),
              ms(f["conc"]["p50_us"]), "{:.2f}"),
        lower(f"(b) {CONCURRENCY} connections, 1 pair: p99 (ms)", ms(c["conc"]["p99_us"]),
              ms(f["conc"]["p99_us"]), "{:.2f}"),
        lower(f"(b) {CONCURRENCY} connections: server CPU per request (ms)",
              c["conc"]["cpu_ms_per_request"], f["conc"]["cpu_ms_per_request"], "{:.3f}"),
        lower(f"(c) sequential, {BATCH_SIZE}-pair batch: p50 (ms)", ms(c["batch"]["p50_us"]),
              ms(f["batch"]["p50_us"]), "{:.2f}"),
        lower(f"(c) sequential, {BATCH_SIZE}-pair batch: p99 (ms)", ms(c["batch"]["p99_us"]),
              ms(f["batch"]["p99_us"]), "{:.2f}"),
        higher(f"(c) sequential, {BATCH_SIZE}-pair batch: pairs/s", pairs_s(c["batch"]),
               pairs_s(f["batch"]), "{:.0f}"),
        lower(f"(c) {BATCH_SIZE}-pair batch: server CPU per pair (ms)",
              c["batch"]["cpu_ms_per_request"] / BATCH_SIZE,
              f["batch"]["cpu_ms_per_request"] / BATCH_SIZE, "{:.3f}"),
        lower("peak RSS of the server (MiB)", c["rss_mib"], f["rss_mib"], "{:.1f}"),
    ]


def markdown_table(rows: list[tuple]) -> str:
    header = ("metric", NAMES[0], NAMES[1], "ratio (>1: clarity-host better)")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]

    def line(cells):  # metric names left-aligned, numbers right-aligned
        padded = [str(v).ljust(w) if i == 0 else str(v).rjust(w)
                  for i, (v, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    # Each cell is its width plus one space a side; a colon on the right aligns numbers right.
    rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":"
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])


def first_line(command: list[str], **kwargs) -> str:
    """First line of a command's output, for version strings."""
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    return (done.stdout or done.stderr).strip().split("\n")[0]


BASELINE_VERSIONS = (
    "import sys, fastapi, uvicorn, sklearn, numpy; "
    "print(f'Python {sys.version.split()[0]}, fastapi {fastapi.__version__}, "
    "uvicorn {uvicorn.__version__}, scikit-learn {sklearn.__version__}, "
    "numpy {numpy.__version__}')"
)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_model() -> str:
    found = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(),
                      re.MULTILINE)
    return found.group(1) if found else "unknown CPU"


def run_notes(args, python: Path, load_before: str, runs: dict, agreement: float,
              test_pairs: int) -> str:
    """How, where and with what the numbers were taken, as a markdown list."""
    fit = runs[NAMES[1]]["train"]["report"]
    errors = {n: {p: int(runs[n][p]["error_count"]) for p in ("seq", "conc", "batch")}
              for n in NAMES}
    if args.no_pin:
        pinning = "none: servers, training and wrk share every core"
    else:
        pinning = (f"server (and training) on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU} "
                   "(taskset): each side has one core")
    notes = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"nproc {os.cpu_count()}, {cpu_model()}, "
                   f"{platform.system()} {platform.release()}",
        "load average before / after": f"{load_before} / {load_average()} "
                                       "(other jobs on the machine show up here)",
        "pinning": pinning,
        "command": "`python3 " + " ".join(shlex.quote(a) for a in sys.argv) + "`",
        "clarity-host": f"{first_line([str(args.bin_dir / 'clarity-host'), '--version'])} "
                        f"from `{args.bin_dir}`",
        "baseline": f"{first_line([str(python), '-c', BASELINE_VERSIONS])}; uvicorn 1 worker "
                    "(uvloop, httptools), sync endpoint (thread pool), OPENBLAS_NUM_THREADS=1; "
                    f"{fit['features']:.0f} features, {fit['lbfgs_iterations']:.0f} L-BFGS iterations",
        "client": f"{first_line(['wrk', '-v'])}, one thread; {args.warmup} s warm-up then "
                  f"{args.duration} s per phase; bodies cycle over the {test_pairs} test pairs "
                  f"of `{args.data_dir}`",
        "rounds": f"{args.rounds}, each training both models then serving one after the other; "
                  "every number is the median over the rounds",
        "label agreement of the two servers on the test set (last round)": f"{agreement:.3f}",
        "wrk errors (non-2xx, timeouts, socket), all rounds": str(errors),
    }
    return "\n".join(f"- {key}: {value}" for key, value in notes.items())


# ---- main ----


@dataclass
class Setup:
    """What every round needs: the tools, the files, the CPU prefixes."""
    args: argparse.Namespace
    python: Path
    config: Path
    model_path: Path
    bodies: dict[str, Path]
    workdir: Path
    server_cpu: list[str]
    client_cpu: list[str]


def run_round(setup: Setup, test: list[dict]) -> tuple[dict, dict]:
    """Trains both models (timed), then serves and measures each in turn, one at a time so
    neither competes with the other for the CPU. Returns results and predicted labels."""
    args = setup.args
    trained = {NAMES[0]: train_clarity(args.bin_dir, setup.config, setup.server_cpu),
               NAMES[1]: train_sklearn(setup.python, args.data_dir, setup.model_path,
                                       setup.server_cpu)}
    starters = {
        NAMES[0]: lambda: start_clarity(args.bin_dir, setup.config, setup.server_cpu,
                                        setup.workdir),
        NAMES[1]: lambda: start_fastapi(setup.python, setup.model_path, setup.server_cpu,
                                        setup.workdir),
    }
    results, predictions = {}, {}
    for name, start in starters.items():
        print(f"serving {name} ...", file=sys.stderr)
        server = start()
        try:
            predictions[name] = check_answers(server, test)
            results[name] = {"train": trained[name], **measure(server, setup.bodies, args,
                                                               setup.client_cpu)}
        finally:
            stop(server)
    return results, predictions


def main():
    args = parse_args()
    args.bin_dir = args.bin_dir.resolve()
    args.data_dir = args.data_dir.resolve()
    check_tools(args.bin_dir)
    python = ensure_venv(args.venv)
    test = json.loads((args.data_dir / "test.json").read_text())
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="clarity-bench-") as tmp:
        workdir = Path(tmp)
        setup = Setup(args=args, python=python,
                      config=write_clarity_config(workdir, args.bin_dir, args.data_dir),
                      model_path=workdir / "sklearn_model.pkl",
                      bodies=write_bodies(workdir, test), workdir=workdir,
                      server_cpu=pinned(SERVER_CPU, not args.no_pin),
                      client_cpu=pinned(CLIENT_CPU, not args.no_pin))
        # Rounds take turns between the servers, so a slow spell of the machine (other jobs)
        # lands on both, and the median drops it.
        rounds = []
        for number in range(1, args.rounds + 1):
            print(f"round {number}/{args.rounds}: training both models ...", file=sys.stderr)
            results, predictions = run_round(setup, test)
            rounds.append(results)
    runs = {name: median_run([r[name] for r in rounds]) for name in NAMES}

    agreement = sum(a == b for a, b in zip(*predictions.values())) / len(test)
    table = markdown_table(table_rows(runs, predictions, test))
    notes = run_notes(args, python, load_before, runs, agreement, len(test))
    print(table)
    print()
    print(notes)
    args.out.write_text("# clarity-host vs FastAPI + scikit-learn: the classic model\n\n"
                        "Written by `bench/serve_classic.py`; see bench/README.md.\n\n"
                        f"{table}\n\n{notes}\n")
    print(f"\nwritten to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
