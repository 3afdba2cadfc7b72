#!/usr/bin/env bash
# Local stand-ins for the base images the Dockerfile names, for a machine that reaches Debian's
# package mirrors but no image registry (no Docker Hub). With a registry, skip this script:
# `docker build` pulls the real images.
#
#   sudo ./scripts/container-base.sh            # podman (default) or ENGINE=docker
#
# It makes, once (an image already present is kept; FORCE=1 rebuilds):
#   localhost/debian-rootfs:bookworm          mmdebstrap of Debian bookworm (minbase), imported
#   localhost/debian-base:bookworm            + this machine's local CA certificates (see below)
#   docker.io/library/debian:bookworm-slim    that image, tagged
#   docker.io/library/python:3.11-slim-bookworm
#                                             + bookworm's python3 3.11, pip in a venv on PATH
#   docker.io/library/rust:${RUST_VERSION}-bookworm
#                                             + gcc/libc6-dev and the Rust toolchain of this
#                                             machine (`rustc --print sysroot`, without docs),
#                                             CARGO_HOME=/usr/local/cargo as in the real image
#
# The Rust stand-in copies the host's toolchain because bookworm's rustc-web (1.85) is older
# than the workspace's locked dependencies need (ort 2.0.0-rc.15 wants 1.92);
# bookworm-security's rustc-web (1.96) would also do, if no toolchain is installed here.
# The stand-ins are tagged only in local storage; the Dockerfile keeps the official names, so
# build with `--pull=never` (podman) to use them.
#
# Podman on this kind of machine also needs runc, cgroupfs and ulimits at or below the host's
# hard limits: this script writes that containers.conf (CONTAINERS_CONF, default
# ~/.config/containers/containers.conf if none exists) unless one is already set.
set -euo pipefail
cd "$(dirname "$0")/.."

ENGINE=${ENGINE:-podman}
RUST_VERSION=${RUST_VERSION:-1.95}
SUITE=bookworm
BASE=localhost/debian-base:$SUITE
WORK=$(mktemp -d "${TMPDIR:-/tmp}/clarity-base.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

have_image() { [ "${FORCE:-0}" != 1 ] && "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

if [ "$ENGINE" = podman ] && [ -z "${CONTAINERS_CONF:-}" ]; then
    conf=${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf
    if [ ! -f "$conf" ]; then
        mkdir -p "$(dirname "$conf")"
        hard=$(ulimit -Hn)
        cat >"$conf" <<EOF
# crun fails here (setrlimit RLIMIT_NOFILE; cgroups in hybrid mode): runc and cgroupfs work.
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=$hard:$hard"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
        echo "==> wrote $conf"
    fi
fi

ROOTFS=localhost/debian-rootfs:$SUITE
if ! have_image "$ROOTFS"; then
    command -v mmdebstrap >/dev/null || {
        echo "mmdebstrap not found: apt-get install mmdebstrap" >&2
        exit 1
    }
    echo "==> mmdebstrap $SUITE (about a minute)"
    mmdebstrap --quiet --variant=minbase --include=ca-certificates "$SUITE" "$WORK/rootfs.tar"
    "$ENGINE" import --change 'CMD ["/bin/bash"]' "$WORK/rootfs.tar" "$ROOTFS"
    rm -f "$WORK/rootfs.tar"
fi

# Behind a TLS-inspecting proxy (how this machine reaches the registries), builds that fetch
# crates or wheels must trust its CA: this machine's local CAs (EXTRA_CA_DIR) are added to the
# base, and so to every stand-in and to Clarity images built from them. Stand-ins only: images
# built from the official bases do not carry them.
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
if ! have_image "$BASE"; then
    echo "==> $BASE (+ local CAs from $EXTRA_CA_DIR)"
    mkdir -p "$WORK/base/ca"
    find "$EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -exec cp {} "$WORK/base/ca/" \; 2>/dev/null || true
    cat >"$WORK/base/Dockerfile" <<EOF
FROM $ROOTFS
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt
EOF
    "$ENGINE" build --pull=never -t "$BASE" "$WORK/base"
fi
"$ENGINE" tag "$BASE" docker.io/library/debian:$SUITE-slim

PY=docker.io/library/python:3.11-slim-$SUITE
if ! have_image "$PY"; then
    echo "==> $PY"
    mkdir -p "$WORK/python"
    cat >"$WORK/python/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \\
 && rm -rf /var/lib/apt/lists/* \\
 && python3 -m venv /usr/local/python \\
 && ln -s /usr/local/python/bin/pip /usr/local/python/bin/pip3 /usr/local/bin/ \\
 && ln -s /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
EOF
    "$ENGINE" build --pull=never -t "$PY" "$WORK/python"
fi

RUST=docker.io/library/rust:$RUST_VERSION-$SUITE
if ! have_image "$RUST"; then
    sysroot=$(rustc --print sysroot)
    have=$(rustc --version | awk '{print $2}')
    case "$have" in
        "$RUST_VERSION" | "$RUST_VERSION".*) ;;
        *) echo "warning: this machine's rustc is $have, tagging it as rust:$RUST_VERSION" >&2 ;;
    esac
    echo "==> $RUST from $sysroot (rustc $have)"
    mkdir -p "$WORK/rust/toolchain"
    # -h: rustup's versioned toolchain names are symlinks. Docs (share/) are left out.
    tar -C "$sysroot" -ch bin lib libexec etc | tar -C "$WORK/rust/toolchain" -x
    cat >"$WORK/rust/Dockerfile" <<EOF
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev make pkg-config \\
 && rm -rf /var/lib/apt/lists/*
COPY toolchain/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
EOF
    "$ENGINE" build --pull=never -t "$RUST" "$WORK/rust"
fi

echo "==> stand-ins ready:"
"$ENGINE" images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' |
    grep -E "debian-base|library/(debian|python|rust)" || true
