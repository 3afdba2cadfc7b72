# syntax=docker/dockerfile:1
#
# Clarity: the clarity-host binary, its shipped plugins, ONNX Runtime (for later backends) and
# TensorBoard, on Debian bookworm.
#
#   docker build -t clarity .
#   docker run --rm -p 8000:8000 -p 6006:6006 clarity
#
# Needs BuildKit (the default builder of current Docker; `docker compose build` uses it).

ARG RUST_VERSION=1.95
ARG ORT_VERSION=1.31.1

# ---------------------------------------------------------------------------------------------
# 1. builder: the host binary and the plugin libraries.
# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-bookworm AS builder

WORKDIR /src
COPY . .

# target/ and the cargo registry are BuildKit cache mounts, so the results are copied out to
# /out inside the same step. Test fixtures (libclarity_fixture_*) are not shipped.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --workspace \
 && mkdir -p /out/bin /out/plugins \
 && cp target/release/clarity-host /out/bin/ \
 && for lib in target/release/libclarity_*.so; do \
        case "$lib" in \
            */libclarity_fixture_*) ;; \
            *) cp "$lib" /out/plugins/ ;; \
        esac; \
    done \
 && ls -l /out/bin /out/plugins \
 && test -n "$(ls /out/plugins)"

# ---------------------------------------------------------------------------------------------
# 2. onnxruntime: libonnxruntime.so from the official manylinux wheel (only the C library).
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

# ---------------------------------------------------------------------------------------------
# 3. runtime
# ---------------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
ARG ORT_VERSION

# tini reaps the TensorBoard child processes and forwards signals to clarity-host.
# Versions come from bookworm (stable), so they are not pinned here.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 python3-venv tini \
 && rm -rf /var/lib/apt/lists/*

# TensorBoard, for the training runs the host manages (`tensorboard` on PATH).
ARG TENSORBOARD_VERSION=2.21.0
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install "tensorboard==${TENSORBOARD_VERSION}" \
 && /opt/venv/bin/tensorboard --version

RUN groupadd --gid 10001 clarity \
 && useradd --uid 10001 --gid clarity --home-dir /home/clarity --create-home \
        --shell /usr/sbin/nologin clarity

COPY --from=builder /out/bin/clarity-host /usr/local/bin/clarity-host
COPY --from=builder /out/plugins/ /opt/clarity/plugins/
COPY --from=onnxruntime /opt/clarity/lib/ /opt/clarity/lib/

ENV PATH=/opt/venv/bin:$PATH \
    CLARITY_PLUGIN_DIR=/opt/clarity/plugins \
    CLARITY_TENSORBOARD_HOST=0.0.0.0 \
    ORT_DYLIB_PATH=/opt/clarity/lib/libonnxruntime.so.${ORT_VERSION} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
COPY models.yaml logging.yaml /app/
COPY data/sample/ /app/data/sample/
# Writable by the service user: trained artifacts, TensorBoard runs, optional log files.
RUN mkdir -p /app/artifacts /app/runs /app/logs \
 && chown clarity:clarity /app/artifacts /app/runs /app/logs

USER 10001:10001

EXPOSE 8000 6006

# GET /health answers as soon as the listener is up (models may still be loading: see /ready).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request as u; r = u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:8000/health', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["clarity-host", "serve", "--host", "0.0.0.0", "--port", "8000"]
