"""The Python half of bench/onnx_graph_vs_torch.py: runs in the PyTorch venv.

    python onnx_graph_half.py WORKDIR --graphs '{"fused": "model.onnx", ...}' \
        [--threads 2] [--rounds 5]

WORKDIR is what `bench_encoder --graphs-only` wrote: MiniLM with a seeded 3-label head
(config.json + model.safetensors), our ONNX exports of it (the `--graphs` JSON names them),
inputs.json (32 rows of 128 real token ids) and logits.json (candle's logits of the first
rows). This adds `torch.onnx.export`'s graphs of the same weights (transformers' default
attention and its eager attention), then, for every graph under one ONNX Runtime with the same
session options:

- which fusions ONNX Runtime's load-time optimizer made (op counts of the optimized graph);
- its logits against candle's (fp32 graphs must agree to 1e-4);
- batch-1 latency and batch-32 time, as the median of `--rounds` rounds; in each round every
  graph gets a fresh session, a warmup and its runs in a block (interleaving runs would let
  one session's spinning pool threads steal the cores from the next), and the order of the
  graphs rotates from round to round.

Prints one JSON object.
"""

import argparse
import collections
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from transformers import BertForSequenceClassification

PARITY_LIMIT = 1e-4
REPS = {1: (5, 30), 32: (1, 4)}  # batch: (warmup, measured runs) per round
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FUSED_OPS = ("Attention", "QAttention", "SkipLayerNormalization", "LayerNormalization",
             "BiasGelu", "FusedMatMul", "MatMul", "MatMulInteger", "Transpose", "Softmax")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--graphs", type=json.loads, required=True,
                        help="JSON: {name: path} of our graphs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def torch_exports(workdir: Path) -> dict:
    """`torch.onnx.export` (TorchScript exporter, opset 17, dynamic batch and sequence) of
    the benchmark's model with each attention implementation; {name: path}."""
    out = {}
    for implementation in ("sdpa", "eager"):
        model = BertForSequenceClassification.from_pretrained(
            workdir, dtype=torch.float32, attn_implementation=implementation).eval()
        example = tuple(torch.ones(2, 16, dtype=torch.long) for _ in INPUTS)
        path = workdir / f"torch-{implementation}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, str(path), input_names=list(INPUTS),
                              output_names=["logits"], opset_version=17, dynamo=False,
                              dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUTS})
        out[f"torch.onnx.export ({implementation})"] = str(path)
    return out


def session(path: str, threads: int, optimized: str | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized:
        options.optimized_model_filepath = optimized
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(workdir: Path, session_inputs: list) -> dict:
    data = json.loads((workdir / "inputs.json").read_text())
    batch = {k: np.asarray(data[k], dtype=np.int64) for k in INPUTS if k in session_inputs}
    return {n: {k: v[:n] for k, v in batch.items()} for n in (1, 32)}


def fusions(path: str, threads: int, workdir: Path, name: str) -> dict:
    """Op counts of the graph as written and after ONNX Runtime's optimizer."""
    optimized = workdir / f"optimized-{abs(hash(name))}.onnx"
    session(path, threads, str(optimized))
    count = lambda p: collections.Counter(
        n.op_type for n in onnx.load(str(p), load_external_data=False).graph.node)
    written, after = count(path), count(optimized)
    return {"nodes_written": sum(written.values()), "nodes_optimized": sum(after.values()),
            "optimized": {op: after[op] for op in FUSED_OPS if after[op]}}


def parity(path: str, threads: int, workdir: Path) -> float:
    reference = json.loads((workdir / "logits.json").read_text())
    s = session(path, threads)
    rows = feeds(workdir, [i.name for i in s.get_inputs()])[32]
    rows = {k: v[:reference["rows"]] for k, v in rows.items()}
    logits = s.run(None, rows)[0]
    return float(np.abs(logits - np.asarray(reference["candle"], dtype=np.float32)).max())


def timed_round(path: str, threads: int, workdir: Path) -> dict:
    s = session(path, threads)
    batches = feeds(workdir, [i.name for i in s.get_inputs()])
    out = {}
    for n, (warmup, runs) in REPS.items():
        for _ in range(warmup):
            s.run(None, batches[n])
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            s.run(None, batches[n])
            times.append(time.perf_counter() - start)
        out[n] = statistics.median(times) * 1000
    return out


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    graphs = dict(args.graphs)
    graphs.update(torch_exports(args.workdir))
    results = {name: {"path": path, "fusions": fusions(path, args.threads, args.workdir, name),
                      "max_abs_diff_vs_candle": parity(path, args.threads, args.workdir),
                      "b1_ms": [], "b32_ms": []}
               for name, path in graphs.items()}
    names = list(graphs)
    for r in range(args.rounds):
        print(f"onnx_graph_half: round {r + 1} of {args.rounds}", file=sys.stderr)
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = timed_round(graphs[name], args.threads, args.workdir)
            results[name]["b1_ms"].append(t[1])
            results[name]["b32_ms"].append(t[32])
    print(json.dumps({"graphs": results, "threads": args.threads, "rounds": args.rounds,
                      "reps": REPS, "onnxruntime": ort.__version__, "torch": torch.__version__,
                      "parity_limit": PARITY_LIMIT}))


if __name__ == "__main__":
    main()
