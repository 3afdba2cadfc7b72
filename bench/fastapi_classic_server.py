"""The Python baseline for bench/serve_classic.py: the classic model in scikit-learn, served
by FastAPI + uvicorn (one worker, as the original Clarity did).

    python fastapi_classic_server.py train --train FILE --labels A,B,C --out model.pkl
    python fastapi_classic_server.py serve --model model.pkl --route /classify/classic

`train` prints one JSON line with the fit time. `serve` binds 127.0.0.1 on a free port and
prints `PORT <n>` on stdout once the socket is bound, so the driver never races for a port.

The features mirror plugins/classic-example (src/features.rs): the context is split at the
first "\\nA:" into the interviewer's prompt and the answer; each block gets word 1-2 and
char_wb 2-5 TF-IDF n-grams (min_df 2, sublinear tf), each vectorizer's rows are L2-normalised
on their own, weighted (prompt 0.5, answer 1, question 0 as in models.yaml), and the whole row
is L2-normalised again. The classifier is the same multinomial logistic regression
(class_weight balanced, C=10, max_iter=300).
"""

import argparse
import json
import pickle
import socket
import sys
import time

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import FunctionTransformer, Normalizer

ANSWER_MARKER = "\nA:"
BLOCK_WEIGHTS = {"prompt": 0.5, "answer": 1.0}


# ---- features (module-level functions so the pickled pipeline can find them again) ----


def split_context(context: str) -> tuple[str, str]:
    """(prompt, answer): like the Rust plugin, no marker means the whole context is the answer."""
    at = context.find(ANSWER_MARKER)
    if at < 0:
        return "", context
    return context[:at], context[at + len(ANSWER_MARKER):]


def prompts(contexts):
    return [split_context(c)[0] for c in contexts]


def answers(contexts):
    return [split_context(c)[1] for c in contexts]


def block_vectorizers(block: str, select):
    """Word and char n-gram TF-IDF of one text block, each normalised on its own."""
    # token_pattern keeps one-letter tokens ("I", "a"), as the Rust tokenizer does.
    word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b",
                           min_df=2, sublinear_tf=True)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
    pick = FunctionTransformer(select)
    return [(f"{block}_word", make_pipeline(pick, word)),
            (f"{block}_char", make_pipeline(pick, char))]


def build_model():
    blocks = block_vectorizers("prompt", prompts) + block_vectorizers("answer", answers)
    weights = {name: BLOCK_WEIGHTS[name.split("_")[0]] for name, _ in blocks}
    features = FeatureUnion(blocks, transformer_weights=weights)
    classifier = LogisticRegression(class_weight="balanced", C=10, max_iter=300)
    return make_pipeline(features, Normalizer(), classifier)


# ---- train ----


def train(args):
    with open(args.train) as f:
        records = json.load(f)
    contexts = [r["context"] for r in records]
    labels = [r["clarity_label"] for r in records]
    model = build_model()
    started = time.perf_counter()
    model.fit(contexts, labels)
    fit_seconds = time.perf_counter() - started
    with open(args.out, "wb") as f:
        pickle.dump({"model": model, "labels": args.labels.split(",")}, f)
    n_features = model[-1].coef_.shape[1]
    print(json.dumps({"fit_seconds": fit_seconds, "train_pairs": len(records),
                      "features": n_features, "lbfgs_iterations": int(model[-1].n_iter_[0])}))


# ---- serve ----


def make_app(model, labels, route):
    # Imported here so `train` does not pay for FastAPI.
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Pair(BaseModel):
        question: str
        context: str

    class Answer(BaseModel):
        clarity_label: str
        confidence: float
        scores: dict[str, float]

    # Column of each configured label in predict_proba (classes_ are sorted, labels are not).
    columns = [list(model.classes_).index(label) for label in labels]

    def classify(pairs: list[Pair]) -> list[Answer]:
        probabilities = model.predict_proba([p.context for p in pairs])[:, columns]
        answers = []
        for row in probabilities:
            best = int(np.argmax(row))
            answers.append(Answer(clarity_label=labels[best], confidence=float(row[best]),
                                  scores={label: float(p) for label, p in zip(labels, row)}))
        return answers

    app = FastAPI()

    # A plain `def`: FastAPI runs it in its thread pool, the documented way to serve blocking
    # (CPU-bound) work without stalling the event loop.
    @app.post(route)
    def classify_route(body: Pair | list[Pair]) -> Answer | list[Answer]:
        if isinstance(body, list):
            return classify(body)
        return classify([body])[0]

    @app.get("/ready")
    def ready():
        return {"status": "ready"}

    return app


def serve(args):
    import uvicorn

    with open(args.model, "rb") as f:
        saved = pickle.load(f)
    app = make_app(saved["model"], saved["labels"], args.route)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, workers=1, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("train")
    t.add_argument("--train", required=True)
    t.add_argument("--labels", required=True, help="comma-separated, in response order")
    t.add_argument("--out", required=True)
    s = commands.add_parser("serve")
    s.add_argument("--model", required=True)
    s.add_argument("--route", default="/classify/classic")
    args = parser.parse_args()
    {"train": train, "serve": serve}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
