#!/usr/bin/env python3
"""The Python stack Clarity's users run today, for bench/serve_encoder.py: FastAPI + uvicorn +
transformers (PyTorch), serving a sequence classifier the way the original clarity-models
`EncoderInferenceAPI` does.

    python fastapi_encoder_server.py --model-dir DIR --route /classify/minilm --max-length 128

As in the original: one pair per request, an `async` endpoint that tokenizes with
`truncation=True, padding=True, max_length=...` and runs the model under `torch.no_grad()` on
the event loop (no batching, no thread pool), softmax, and the seed's response shape. The pair
is fed (question, context), the order the Clarity model was trained with, so both servers
score the same input. Prints `PORT n` once listening on a free loopback port.
"""

import argparse
import socket
import sys


def make_app(model_dir: str, route: str, max_length: int, labels: list[str] | None):
    import torch
    import torch.nn.functional as F
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    if labels is None:
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    class ClassificationRequest(BaseModel):
        question: str
        context: str

    app = FastAPI()

    @app.post(route)
    async def classify(data: ClassificationRequest):
        inputs = tokenizer(data.question, data.context, return_tensors="pt", truncation=True,
                           padding=True, max_length=max_length)
        with torch.no_grad():
            probs = F.softmax(model(**inputs).logits, dim=-1).numpy()[0]
        best = int(probs.argmax())
        return {"clarity_label": labels[best], "confidence": float(probs[best]),
                "scores": {label: float(p) for label, p in zip(labels, probs)}}

    @app.get("/ready")
    async def ready():
        return {"status": "ready"}

    return app


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--route", default="/classify/minilm")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--labels", help="comma-separated, in output order (default: id2label)")
    args = parser.parse_args()
    import uvicorn

    labels = args.labels.split(",") if args.labels else None
    app = make_app(args.model_dir, args.route, args.max_length, labels)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
