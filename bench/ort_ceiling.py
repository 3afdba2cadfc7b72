#!/usr/bin/env python3
"""The ceiling for bench/serve_encoder.py: a bare ONNX Runtime session running the served
graph in a loop, no HTTP, no queue. Tokenizes the benchmark's pairs with the model folder's
`tokenizer.json` exactly as Clarity does ((question, context), the context cut first, padded to
the batch's longest), then runs batches back to back for --seconds.

    python ort_ceiling.py --onnx model.onnx --tokenizer tokenizer.json --bodies single.jsonl

Prints one JSON line: pairs/s at each of --batches, and the median single-pair latency.
"""

import argparse
import json
import statistics
import sys
import time


def main():
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--bodies", required=True, help="JSON lines with question, context")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batches", default="1,16", help="batch sizes to measure")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: ORT's)")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(args.tokenizer)
    tokenizer.enable_truncation(args.max_length, strategy="only_second")
    tokenizer.enable_padding()
    pairs = [json.loads(line) for line in open(args.bodies) if line.strip()]
    pairs = [(p["question"], p["context"]) for p in pairs]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.onnx, options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}

    def feed(batch):
        encodings = tokenizer.encode_batch(batch)
        columns = {"input_ids": [e.ids for e in encodings],
                   "attention_mask": [e.attention_mask for e in encodings],
                   "token_type_ids": [e.type_ids for e in encodings]}
        return {k: np.array(v, dtype=np.int64) for k, v in columns.items() if k in wanted}

    sizes = [int(b) for b in args.batches.split(",")]
    singles = [feed([p]) for p in pairs]

    def loop(inputs, seconds):
        done, started, times = 0, time.perf_counter(), []
        while time.perf_counter() - started < seconds:
            t = time.perf_counter()
            session.run(None, inputs[done % len(inputs)])
            times.append(time.perf_counter() - t)
            done += 1
        return done, time.perf_counter() - started, times

    throughput = {}
    for size in sizes:
        batches = [feed([pairs[(s + i) % len(pairs)] for i in range(size)])
                   for s in range(0, len(pairs), size)]
        loop(batches, 2.0)  # warm-up: arena, kernels
        runs, elapsed, _ = loop(batches, args.seconds)
        throughput[str(size)] = runs * size / elapsed
    _, _, times = loop(singles, args.seconds / 2)
    print(json.dumps({"pairs_per_s": throughput,
                      "p50_single_ms": statistics.median(times) * 1000}))


if __name__ == "__main__":
    sys.exit(main())
