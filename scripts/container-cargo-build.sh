#!/bin/sh
# The Dockerfile's Rust build step: the host binary and the shipped plugins (no test fixtures),
# copied out of the target/ cache mount to /out and stripped of line tables.
# CARGO_FEATURES: extra features, e.g. "clarity-encoder/cuda-serving clarity-lora/cuda-serving".
set -eu
cargo build --release --locked ${CARGO_FEATURES:+--features "$CARGO_FEATURES"} \
    -p clarity-host -p clarity-classic-example -p clarity-classic-template \
    -p clarity-encoder -p clarity-lora
mkdir -p /out/bin /out/plugins
cp target/release/clarity-host /out/bin/
cp target/release/libclarity_classic_example.so target/release/libclarity_classic_template.so \
    target/release/libclarity_encoder.so target/release/libclarity_lora.so /out/plugins/
strip --strip-debug /out/bin/clarity-host /out/plugins/*.so
ls -l /out/bin /out/plugins
