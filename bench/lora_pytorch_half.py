"""The PyTorch + peft half of the LoRA training benchmark (`lora_vs_peft.py` runs it in its venv).

    python lora_pytorch_half.py make-opt CASE_DIR [--seed 7]
    python lora_pytorch_half.py train CASE_DIR --threads 2 --steps 8 --base f32|bf16
        [--r 8 --alpha 16 --dropout 0.05 --targets q_proj,v_proj --lr 2e-4]

`make-opt` writes a tiny random OPT (transformers' OPTConfig, its own random init, seeded) as
a transformers folder in CASE_DIR/model: config.json, model.safetensors and a word-level
tokenizer.json (the Rust loader wants one; the benchmark feeds token ids, not text). Dropout
of the base model is off, as in our decoder, which only drops the adapters' input.

`train` loads CASE_DIR/model as LlamaForSequenceClassification or OPTForSequenceClassification
(by model_type), wraps it as peft does it (`get_peft_model` with `LoraConfig(r, lora_alpha,
lora_dropout, target_modules, task_type=SEQ_CLS)`: adapters plus a trainable copy of the
`score` head), sets the adapters and head to the values the Rust half started from
(CASE_DIR/init.safetensors, when present), and runs N training steps on CASE_DIR/inputs.json:
train mode, cross-entropy, backward, gradient clipping to norm 1, AdamW over the trainable
parameters (weight decay 0.01, constant learning rate), zero_grad. `--base bf16` loads the
frozen base in bfloat16 (peft keeps the adapters in float32). Prints one JSON object: seconds
and loss of every step, peak RSS of this process (getrusage ru_maxrss) after loading and at
the end, trainable parameters.
"""

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path

import torch

LABELS = 3
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
# The tiny OPT: big enough that a step is real work (about 5M parameters, 4 layers), small
# enough that framework overhead shows; widths split into Q8_0 blocks of 32 for `use_8bit`.
TINY_OPT = dict(vocab_size=8192, hidden_size=256, word_embed_proj_dim=256, ffn_dim=1024,
                num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=512,
                do_layer_norm_before=True, activation_function="relu", enable_bias=True,
                dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0,
                pad_token_id=1, bos_token_id=2, eos_token_id=2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make-opt", help="write the tiny random OPT into CASE_DIR/model")
    make.add_argument("case", type=Path)
    make.add_argument("--seed", type=int, default=7)
    train = sub.add_parser("train", help="time LoRA training steps")
    train.add_argument("case", type=Path)
    train.add_argument("--threads", type=int, default=2)
    train.add_argument("--steps", type=int, default=8)
    train.add_argument("--base", choices=("f32", "bf16"), default="f32")
    train.add_argument("--r", type=int, default=8)
    train.add_argument("--alpha", type=float, default=16.0)
    train.add_argument("--dropout", type=float, default=0.05)
    train.add_argument("--targets", default="q_proj,v_proj")
    train.add_argument("--lr", type=float, default=2e-4)
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--gradient-checkpointing", action="store_true",
                       help="transformers' per-layer checkpointing (non-reentrant)")
    return parser.parse_args()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_opt(case: Path, seed: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import OPTConfig, OPTForSequenceClassification

    out = case / "model"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = OPTConfig(**TINY_OPT, num_labels=LABELS)
    model = OPTForSequenceClassification(config)
    model.save_pretrained(out)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # OPT's ids 0..3
    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({f"t{i}": i for i in range(len(specials), config.vocab_size)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(out / "tokenizer.json"))
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"model_dir": str(out), "parameters": params, "config": TINY_OPT}))


def model_class(model_dir: Path):
    from transformers import LlamaForSequenceClassification, OPTForSequenceClassification

    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    classes = {"llama": LlamaForSequenceClassification, "opt": OPTForSequenceClassification}
    if model_type not in classes:
        sys.exit(f"{model_dir}: model_type {model_type!r} is not one this benchmark runs")
    return classes[model_type]


def canonical(name: str) -> str:
    """A peft parameter name as the Rust half names the variable:
    `base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight` (Llama;
    `model.decoder.layers` for OPT) -> `layers.0.self_attn.q_proj.lora_A.weight`,
    `base_model.model.score.modules_to_save.default.weight` -> `score.weight`."""
    name = name.removeprefix("base_model.model.")
    name = name.replace(".modules_to_save.default.", ".").replace(".default.", ".")
    for prefix in ("model.decoder.", "model."):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def start_from(model, init: Path) -> int:
    """Sets every trainable parameter to the Rust half's initial value; returns how many."""
    from safetensors.torch import load_file

    values = load_file(str(init))
    trainable = {canonical(n): p for n, p in model.named_parameters() if p.requires_grad}
    if set(trainable) != set(values):
        only_ours = sorted(set(values) - set(trainable))[:5]
        only_peft = sorted(set(trainable) - set(values))[:5]
        sys.exit(f"{init} does not match peft's trainable parameters: only in ours "
                 f"{only_ours}, only in peft {only_peft}")
    with torch.no_grad():
        for name, param in trainable.items():
            if tuple(values[name].shape) != tuple(param.shape):
                sys.exit(f"{name}: ours {tuple(values[name].shape)}, peft {tuple(param.shape)}")
            param.copy_(values[name].to(param.dtype))
    return len(trainable)


def train(args):
    import peft
    import transformers
    from peft import LoraConfig, TaskType, get_peft_model

    # The head is missing from the SmolLM2 checkpoint on purpose (it is set from ours below):
    # transformers' load report and peft's deprecation notes would only bury the step log.
    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model_dir = args.case / "model"
    data = json.loads((args.case / "inputs.json").read_text())
    dtype = torch.bfloat16 if args.base == "bf16" else torch.float32

    start = time.perf_counter()
    model, info = model_class(model_dir).from_pretrained(
        model_dir, num_labels=LABELS, dtype=dtype, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if not k.startswith("score.")]
    if missing:
        sys.exit(f"weights missing from {model_dir}: {sorted(missing)[:10]}")
    # transformers pools the last token that is not the pad id (our rows never contain it).
    model.config.pad_token_id = data["pad_token_id"]
    if args.gradient_checkpointing:
        # Non-reentrant: the frozen embedding's output needs no requires_grad hack.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
                        target_modules=args.targets.split(","), task_type=TaskType.SEQ_CLS)
    model = get_peft_model(model, config)
    init = args.case / "init.safetensors"
    started_from = start_from(model, init) if init.exists() else 0
    load_s = time.perf_counter() - start
    peak_after_load = peak_rss_mb()

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=WEIGHT_DECAY)
    ids = torch.tensor(data["input_ids"], dtype=torch.long)
    mask = torch.tensor(data["attention_mask"], dtype=torch.long)
    labels = torch.tensor(data["labels"], dtype=torch.long)
    step_s, forward_s, backward_s, losses = [], [], [], []
    for step in range(args.steps):
        start = time.perf_counter()
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        loss_value = loss.item()
        forward = time.perf_counter() - start
        loss.backward()
        backward = time.perf_counter() - start - forward
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total = time.perf_counter() - start
        print(f"pytorch: step {step + 1}/{args.steps}: {total:.2f} s (forward {forward:.2f}, "
              f"backward {backward:.2f}), loss {loss_value:.4f}", file=sys.stderr, flush=True)
        step_s.append(total)
        forward_s.append(forward)
        backward_s.append(backward)
        losses.append(loss_value)

    print(json.dumps({
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "model_class": type(model.base_model.model).__name__, "base_dtype": str(dtype),
        "adapter_dtype": str(next(p.dtype for n, p in model.named_parameters()
                                  if "lora_A" in n)),
        "batch": ids.shape[0], "seq": ids.shape[1], "steps": args.steps,
        "lora": {"r": args.r, "alpha": args.alpha, "dropout": args.dropout,
                 "target_modules": args.targets.split(",")},
        "lr": args.lr, "weight_decay": WEIGHT_DECAY, "max_grad_norm": MAX_GRAD_NORM,
        "gradient_checkpointing": args.gradient_checkpointing,
        "trainable_params": sum(p.numel() for p in params), "trainable_variables": len(params),
        "started_from_ours": started_from, "load_s": load_s,
        "step_s": step_s, "forward_s": forward_s, "backward_s": backward_s, "losses": losses,
        "peak_rss_after_load_mb": peak_after_load, "peak_rss_mb": peak_rss_mb(),
    }))


def main():
    args = parse_args()
    if args.command == "make-opt":
        make_opt(args.case, args.seed)
    else:
        train(args)


if __name__ == "__main__":
    main()
