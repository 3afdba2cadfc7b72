#!/usr/bin/env bash
# The container, built and run for real: run before any change to Dockerfile or
# docker-compose.yaml lands.
#
#   ./scripts/container-test.sh            # docker if its daemon answers, else podman
#   ENGINE=podman ./scripts/container-test.sh
#
# 1. builds the image (clarity:latest, as docker-compose.yaml names it): build time, size;
# 2. runs it as docker-compose.yaml does (same mounts, read-only root, tmpfs /tmp, no
#    capabilities, no-new-privileges) on a scratch copy of models.yaml, logging.yaml and
#    data/sample, with empty artifacts/ and runs/: the first start trains;
# 3. waits for /ready, POSTs a {"question", "context"} pair to every enabled route and checks
#    the answer (a label of the model, scores summing to 1);
# 4. checks TensorBoard answers on 6006 when models.yaml configures it;
# 5. `stop`: within 10 s, exit code 0, and the host stopped TensorBoard itself (its log says so);
# 6. `start` again: ready without training (no new run folder, artifacts unchanged);
# 7. `compose up -d` with the repository's docker-compose.yaml, byte for byte, in the scratch
#    folder: /ready, a POST, `compose down`.
# Everything started is removed by id; the scratch folder too. A summary table ends the output.
#
# Needs python3 (HTTP checks) and, for podman, podman-compose (installed from PyPI into a
# throwaway venv when missing) or a `podman compose` that works. Without a registry, make the
# base images first: scripts/container-base.sh.
#
# Environment: ENGINE (docker|podman), IMAGE (default clarity:latest), SKIP_BUILD=1 (test the
# image already built), READY_TIMEOUT (seconds for the first start, default 1800),
# SKIP_COMPOSE=1, KEEP=1 (keep the scratch folder).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

IMAGE=${IMAGE:-clarity:latest}
READY_TIMEOUT=${READY_TIMEOUT:-1800}
STOP_LIMIT=10

# ---------------------------------------------------------------------------------------------
# Engine and compose.
# ---------------------------------------------------------------------------------------------
if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v podman >/dev/null; then
        ENGINE=podman
    else
        echo "neither a docker daemon nor podman found" >&2
        exit 1
    fi
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/clarity-container-test.XXXXXX")
CONTAINERS=()
COMPOSE_UP=0
COMPOSE=()

# Results for the summary: "step|result|detail".
RESULTS=()
FAILED=0
pass() { RESULTS+=("$1|ok|$2"); echo "  ok    $1: $2"; }
fail() {
    RESULTS+=("$1|FAIL|$2")
    FAILED=1
    echo "  FAIL  $1: $2" >&2
}
step() { echo; echo "==> $*"; }

summary() {
    echo
    echo "== container test summary ($ENGINE, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores) =="
    printf '%-28s %-5s %s\n' step result detail
    printf '%-28s %-5s %s\n' ---- ------ ------
    local row
    for row in "${RESULTS[@]}"; do
        IFS='|' read -r name result detail <<<"$row"
        printf '%-28s %-5s %s\n' "$name" "$result" "$detail"
    done
}

cleanup() {
    local rc=$?
    set +e
    if [ "$COMPOSE_UP" = 1 ]; then
        (cd "$SCRATCH" && "${COMPOSE[@]}" down --volumes >/dev/null 2>&1)
    fi
    local id
    for id in "${CONTAINERS[@]}"; do
        "$ENGINE" rm -f -v "$id" >/dev/null 2>&1
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "scratch folder kept: $SCRATCH"
    elif ! rm -rf "$SCRATCH" 2>/dev/null; then
        # Files the container user wrote (rootless engines map it to another uid).
        "$ENGINE" run --rm --user 0 -v "$SCRATCH:/scratch" --entrypoint /bin/rm "$IMAGE" \
            -rf /scratch/artifacts /scratch/runs >/dev/null 2>&1
        rm -rf "$SCRATCH"
    fi
    summary
    [ "$rc" = 0 ] && [ "$FAILED" = 0 ] && exit 0
    exit 1
}
trap cleanup EXIT

# HTTP and JSON checks, in Python so no curl/jq is needed. `http GET URL` prints the status
# and the body; `check_answer` validates a classification reply.
http() {
    python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method,
                             headers={"Content-Type": "application/json"} if data else {})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(req, timeout=30) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except Exception as e:
    print(0); print(e)
PY
}

status_of() { http GET "$1" | sed -n 1p; }

# Seconds until GET url/ready is 200, or empty on timeout / the container stopping.
wait_ready() {
    local base=$1 id=$2 limit=$3 start now
    start=$(date +%s)
    while :; do
        if [ "$(status_of "$base/ready")" = 200 ]; then
            echo $(($(date +%s) - start))
            return 0
        fi
        now=$(date +%s)
        if [ $((now - start)) -ge "$limit" ]; then
            return 1
        fi
        if [ -n "$id" ] && [ "$("$ENGINE" inspect --format '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
            return 1
        fi
        sleep 2
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Every served model's route and labels, from GET / ("route<TAB>label1|label2|...").
served_routes() {
    http GET "$1/" | tail -n +2 | python3 -c '
import json, sys
doc = json.load(sys.stdin)
for m in doc.get("models", []):
    print(m["route"] + "\t" + "|".join(m.get("labels", [])))'
}

# POST the seed shape to one route; print "label confidence" or a reason, exit 1 on failure.
post_pair() {
    local base=$1 route=$2 labels=$3 reply
    reply=$(http POST "$base$route" \
        '{"question": "Will you raise taxes next year?", "context": "Q: Will you raise taxes next year?\nA: We will look at every option and decide when the budget is ready."}')
    python3 - "$reply" "$labels" <<'PY'
import json, math, sys
status, _, body = sys.argv[1].partition("\n")
labels = sys.argv[2].split("|")
if status != "200":
    print(f"HTTP {status}: {body[:200]}"); sys.exit(1)
ans = json.loads(body)
label, conf, scores = ans.get("clarity_label"), ans.get("confidence"), ans.get("scores", {})
problems = []
if label not in labels: problems.append(f"label {label!r} not one of {labels}")
if sorted(scores) != sorted(labels): problems.append(f"score keys {sorted(scores)}")
elif not math.isclose(sum(scores.values()), 1.0, abs_tol=1e-3): problems.append("scores do not sum to 1")
elif not math.isclose(max(scores.values()), conf, abs_tol=1e-6): problems.append("confidence is not the top score")
if problems:
    print("; ".join(problems) + f": {body[:200]}"); sys.exit(1)
print(f"{label} ({conf:.3f})")
PY
}

# docker-compose.yaml's settings, as flags of `run` (its named volumes are anonymous ones here).
hardening=(--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges)

# ---------------------------------------------------------------------------------------------
step "1. build $IMAGE with $ENGINE"
# ---------------------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" = 1 ]; then
    pass build "skipped (SKIP_BUILD=1), testing the existing $IMAGE"
else
    start=$(date +%s)
    # podman's default OCI format drops HEALTHCHECK; the docker format keeps it.
    format=()
    [ "$ENGINE" = podman ] && format=(--format docker)
    if "$ENGINE" build "${format[@]}" -t "$IMAGE" . 2>&1 | tee "$SCRATCH/build.log" | grep -E '^(STEP|#[0-9]+ \[|Successfully|COMMIT|Error|ERROR)'; then
        :
    fi
    if "$ENGINE" image inspect "$IMAGE" >/dev/null 2>&1 && ! grep -qE '^(Error|ERROR)' "$SCRATCH/build.log"; then
        secs=$(($(date +%s) - start))
        pass build "$((secs / 60)) min $((secs % 60)) s"
    else
        tail -n 30 "$SCRATCH/build.log" >&2
        fail build "see the build output above"
        exit 1
    fi
fi
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
pass "image size" "$((size / 1000000)) MB ($size bytes)"

# ---------------------------------------------------------------------------------------------
step "2. first start (trains the untrained models) with docker-compose.yaml's mounts"
# ---------------------------------------------------------------------------------------------
mkdir -p "$SCRATCH/data" "$SCRATCH/artifacts" "$SCRATCH/runs"
cp models.yaml logging.yaml docker-compose.yaml "$SCRATCH/"
cp -r data/sample "$SCRATCH/data/"
# The container user (uid 10001) writes here.
chmod 0777 "$SCRATCH/artifacts" "$SCRATCH/runs"
api_port=$(free_port)
tb_port=$(free_port)
# (podman without systemd logs that it cannot schedule the HEALTHCHECK: shown only on failure.)
id=$("$ENGINE" run -d "${hardening[@]}" \
    -p "127.0.0.1:$api_port:8000" -p "127.0.0.1:$tb_port:6006" \
    -v "$SCRATCH/models.yaml:/app/models.yaml:ro" \
    -v "$SCRATCH/logging.yaml:/app/logging.yaml:ro" \
    -v "$SCRATCH/artifacts:/app/artifacts" \
    -v "$SCRATCH/runs:/app/runs" \
    -v "$SCRATCH/data:/app/data:ro" \
    -v /app/logs -v /app/huggingface \
    "$IMAGE" 2>"$SCRATCH/run.err") || {
    cat "$SCRATCH/run.err" >&2
    fail "first start" "run failed"
    exit 1
}
CONTAINERS+=("$id")
echo "container ${id:0:12}, API on 127.0.0.1:$api_port, TensorBoard on 127.0.0.1:$tb_port"
base=http://127.0.0.1:$api_port
if secs=$(wait_ready "$base" "$id" "$READY_TIMEOUT"); then
    pass "first start /ready" "$secs s, training included"
    while read -r line; do
        pass "first start training" "${line#*Training finished: }"
    done < <("$ENGINE" logs "$id" 2>&1 | grep 'Training finished' || true)
else
    "$ENGINE" logs --tail 40 "$id" >&2 || true
    fail "first start /ready" "not ready within ${READY_TIMEOUT} s: $(http GET "$base/ready" | tail -n +2 | head -c 300)"
    exit 1
fi

# ---------------------------------------------------------------------------------------------
step "3. every enabled route answers the seed shape"
# ---------------------------------------------------------------------------------------------
routes=$(served_routes "$base")
[ -n "$routes" ] || fail routes "GET / lists no model"
while IFS=$'\t' read -r route labels; do
    [ -n "$route" ] || continue
    if answer=$(post_pair "$base" "$route" "$labels"); then
        pass "POST $route" "$answer"
    else
        fail "POST $route" "$answer"
    fi
done <<<"$routes"

# ---------------------------------------------------------------------------------------------
step "4. TensorBoard"
# ---------------------------------------------------------------------------------------------
tb_expected=0
grep -q '^[[:space:]]*tensorboard_config:' "$SCRATCH/models.yaml" && tb_expected=1
if [ "$tb_expected" = 1 ]; then
    tb=0
    for _ in $(seq 1 30); do
        [ "$(status_of "http://127.0.0.1:$tb_port/")" = 200 ] && tb=1 && break
        sleep 2
    done
    if [ "$tb" = 1 ]; then
        pass "TensorBoard :6006" "HTTP 200 ($(${ENGINE} top "$id" 2>/dev/null | grep -c '[t]ensorboard') tensorboard process(es) in the container)"
    else
        fail "TensorBoard :6006" "no answer; log: $("$ENGINE" logs "$id" 2>&1 | grep -i tensorboard | tail -n 2)"
    fi
else
    pass "TensorBoard :6006" "not configured in models.yaml, not checked"
fi

# ---------------------------------------------------------------------------------------------
step "5. stop: within $STOP_LIMIT s, exit code 0, TensorBoard stopped by the host"
# ---------------------------------------------------------------------------------------------
stop_and_check() {
    local label=$1 start ms code
    start=$(date +%s%N)
    "$ENGINE" stop -t 30 "$id" >/dev/null
    ms=$((($(date +%s%N) - start) / 1000000))
    code=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$id")
    if [ "$ms" -le $((STOP_LIMIT * 1000)) ] && [ "$code" = 0 ]; then
        pass "$label" "$((ms / 1000)).$(printf %03d $((ms % 1000))) s, exit code $code"
    else
        fail "$label" "$ms ms, exit code $code (limit ${STOP_LIMIT} s, code 0)"
    fi
    if [ "$tb_expected" = 1 ]; then
        if "$ENGINE" logs "$id" 2>&1 | tail -n 20 | grep -q 'TensorBoard stopped'; then
            pass "$label: TensorBoard" "stopped by clarity-host before exit (no orphan)"
        else
            fail "$label: TensorBoard" "no 'TensorBoard stopped' in the last log lines"
        fi
    fi
}
stop_and_check stop

# ---------------------------------------------------------------------------------------------
step "6. restart keeps the trained artifacts (no retraining)"
# ---------------------------------------------------------------------------------------------
runs_before=$(find "$SCRATCH/runs" -mindepth 2 -maxdepth 2 -type d | sort)
sums_before=$(find "$SCRATCH/artifacts" -type f -not -path '*/checkpoints/*' -exec sha256sum {} + | sort)
log_lines=$("$ENGINE" logs "$id" 2>&1 | wc -l)
"$ENGINE" start "$id" >/dev/null
if secs=$(wait_ready "$base" "$id" 300); then
    runs_after=$(find "$SCRATCH/runs" -mindepth 2 -maxdepth 2 -type d | sort)
    sums_after=$(find "$SCRATCH/artifacts" -type f -not -path '*/checkpoints/*' -exec sha256sum {} + | sort)
    trains=$("$ENGINE" logs "$id" 2>&1 | tail -n +$((log_lines + 1)) | grep -ci 'training started\|auto-train' || true)
    if [ "$runs_before" = "$runs_after" ] && [ "$sums_before" = "$sums_after" ] && [ "$trains" = 0 ]; then
        pass "restart /ready" "$secs s, no training run, artifacts byte-identical ($(echo "$sums_after" | wc -l) files)"
    else
        fail "restart /ready" "$secs s, but it trained again (new runs: $(comm -13 <(echo "$runs_before") <(echo "$runs_after") | wc -l), training log lines: $trains)"
    fi
    first_route=$(echo "$routes" | head -n1)
    if answer=$(post_pair "$base" "${first_route%%$'\t'*}" "${first_route#*$'\t'}"); then
        pass "restart POST ${first_route%%$'\t'*}" "$answer"
    else
        fail "restart POST ${first_route%%$'\t'*}" "$answer"
    fi
else
    "$ENGINE" logs --tail 20 "$id" >&2 || true
    fail "restart /ready" "not ready within 300 s"
fi
stop_and_check "stop after restart"
"$ENGINE" rm -f -v "$id" >/dev/null

# ---------------------------------------------------------------------------------------------
step "7. compose up with the repository's docker-compose.yaml, unchanged"
# ---------------------------------------------------------------------------------------------
if [ "${SKIP_COMPOSE:-0}" = 1 ]; then
    pass "compose up" "skipped (SKIP_COMPOSE=1)"
    exit 0
fi
if [ "$ENGINE" = docker ] && docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif [ "$ENGINE" = docker ] && command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
elif [ "$ENGINE" = podman ] && command -v podman-compose >/dev/null; then
    COMPOSE=(podman-compose)
elif [ "$ENGINE" = podman ]; then
    echo "podman-compose not found: installing it from PyPI into a throwaway venv"
    python3 -m venv "$SCRATCH/venv"
    "$SCRATCH/venv/bin/pip" install --quiet --disable-pip-version-check podman-compose
    COMPOSE=("$SCRATCH/venv/bin/podman-compose")
else
    fail "compose up" "no docker compose / docker-compose found"
    exit 1
fi
cmp -s "$REPO/docker-compose.yaml" "$SCRATCH/docker-compose.yaml" || fail "compose file" "copy differs"
busy=""
for port in 8000 6006; do
    python3 -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)) != 0)" && busy="$busy $port"
done
if [ -n "$busy" ]; then
    fail "compose up" "port(s)$busy on this machine already in use (the compose file publishes 8000 and 6006)"
    exit 1
fi
echo "${COMPOSE[*]} up -d in $SCRATCH (artifacts from step 2)"
COMPOSE_UP=1
if ! (cd "$SCRATCH" && "${COMPOSE[@]}" up -d) >"$SCRATCH/compose.log" 2>&1; then
    tail -n 20 "$SCRATCH/compose.log" >&2
    fail "compose up" "up failed"
    exit 1
fi
if secs=$(wait_ready http://127.0.0.1:8000 "" 300); then
    first_route=$(served_routes http://127.0.0.1:8000 | head -n1)
    answer=$(post_pair http://127.0.0.1:8000 "${first_route%%$'\t'*}" "${first_route#*$'\t'}") || true
    pass "compose up /ready" "$secs s; POST ${first_route%%$'\t'*}: $answer"
else
    (cd "$SCRATCH" && "${COMPOSE[@]}" logs) 2>&1 | tail -n 20 >&2
    fail "compose up /ready" "not ready within 300 s"
fi
# `compose stop` ends the service within its stop_grace_period (10 s), exit code 0.
# (By image id: podman 4.3 does not match a short name such as clarity:latest.)
ids=$("$ENGINE" ps -aq --filter "ancestor=$("$ENGINE" image inspect --format '{{.Id}}' "$IMAGE")")
start=$(date +%s%N)
(cd "$SCRATCH" && "${COMPOSE[@]}" stop) >>"$SCRATCH/compose.log" 2>&1 || true
ms=$((($(date +%s%N) - start) / 1000000))
codes=$(for c in $ids; do "$ENGINE" inspect --format '{{.State.ExitCode}}' "$c"; done | sort -u | tr '\n' ' ')
if [ -n "$ids" ] && [ "$ms" -le $((STOP_LIMIT * 1000)) ] && [ "$codes" = "0 " ]; then
    pass "compose stop" "$((ms / 1000)).$(printf %03d $((ms % 1000))) s, exit code 0"
else
    fail "compose stop" "$ms ms, exit code(s) ${codes:-none} (containers: ${ids:-none found})"
fi
start=$(date +%s)
if (cd "$SCRATCH" && "${COMPOSE[@]}" down --volumes) >>"$SCRATCH/compose.log" 2>&1; then
    COMPOSE_UP=0
    pass "compose down" "$(($(date +%s) - start)) s"
else
    tail -n 20 "$SCRATCH/compose.log" >&2
    fail "compose down" "failed"
fi
