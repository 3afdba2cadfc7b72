#!/usr/bin/env bash
# API fuzzing: schemathesis (pinned, installed into .venv from PyPI if missing) against a
# real `clarity-host serve` and its own /openapi.json: every route (the model's, /v2, admin),
# once with the API key and once without, checking for 5xx, undocumented statuses and
# content types, bodies that do not match the documented schemas, and routes that answer
# without the key. Prints the cases per operation and exits non-zero on any failed check.
#
#   scripts/fuzz.sh [--max-examples N] [--seed N] [--url URL --api-key KEY] [--out DIR]
#
# Without --url it starts its own server on a free loopback port (a classic model in a
# temporary project; build first with `cargo build -p clarity-host -p clarity-classic-example`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SCHEMATHESIS_VERSION=4.32.5
examples=30
seed=20261206
url=""
key=""
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --max-examples) examples=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --url) url=$2; shift 2 ;;
        --api-key) key=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        *) echo "unknown argument $1 (see the top of $0)" >&2; exit 2 ;;
    esac
done

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
    echo "==> installing schemathesis $SCHEMATHESIS_VERSION into .venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
out=${out:-$work/reports}
mkdir -p "$out"

if [ -z "$url" ]; then
    host="$root/target/debug/clarity-host"
    plugin="$root/target/debug/libclarity_classic_example.so"
    for built in "$host" "$plugin"; do
        [ -f "$built" ] || { echo "$built is missing: cargo build -p clarity-host -p clarity-classic-example" >&2; exit 1; }
    done
    cat > "$work/models.yaml" <<YAML
- name: classic
  type: classic
  plugin: $plugin
  route: /classify/classic
  label_config:
    labels: ["Clear Reply", "Clear Non-Reply", "Ambivalent"]
  data_config:
    train_file: $root/data/sample/train.json
    valid_file: $root/data/sample/valid.json
YAML
    key="fuzz-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    (cd "$work" && CLARITY_API_KEY="$key" CLARITY_NO_TENSORBOARD=true \
        exec "$host" serve --config "$work/models.yaml" --host 127.0.0.1 --port 0) \
        > "$work/serve.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 600); do
        url=$(sed -n 's/.*Listening on \(http:[^ ]*\).*/\1/p' "$work/serve.log" | head -n1)
        [ -n "$url" ] && break
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { echo "the server did not start; log:" >&2; cat "$work/serve.log" >&2; exit 1; }
fi
[ -n "$key" ] || { echo "--url needs --api-key (the server must require a key)" >&2; exit 2; }

# Wait for the models (training the classic one takes a few seconds), then fetch the
# document with the key: it describes the served models' routes.
"$venv/bin/python" - "$url" "$key" "$work/openapi.json" <<'PY'
import json, sys, time, urllib.request, urllib.error
url, key, path = sys.argv[1:]
deadline = time.time() + 120
while True:
    try:
        urllib.request.urlopen(url + "/ready", timeout=5)
        break
    except (urllib.error.URLError, OSError) as e:
        if time.time() > deadline:
            sys.exit(f"{url}/ready not 200 after 120 s: {e}")
        time.sleep(0.5)
request = urllib.request.Request(url + "/openapi.json", headers={"Authorization": f"Bearer {key}"})
document = json.load(urllib.request.urlopen(request, timeout=10))
json.dump(document, open(path, "w"))
print(f"==> {len(document['paths'])} paths in {url}/openapi.json")
PY

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
status=0
for mode in with-key without-key; do
    headers=()
    mode_checks=$checks
    # Without the key every protected route answers 401 whatever the input, so the
    # coverage phase (one case per schema constraint) adds nothing there; it also trips an
    # internal KeyError of schemathesis 4.32.5 on an all-401 run.
    phases=examples,fuzzing,stateful
    if [ "$mode" = with-key ]; then
        headers=(-H "Authorization: Bearer $key")
        mode_checks=$checks,ignored_auth
        phases=examples,coverage,fuzzing,stateful
    fi
    echo "==> schemathesis, $mode, up to $examples examples per operation"
    # From the scratch folder: schemathesis keeps a `.schemathesis/` folder where it runs.
    (cd "$work" && "$venv/bin/schemathesis" run "$work/openapi.json" --url "$url" "${headers[@]}" \
        --checks "$mode_checks" --phases "$phases" --max-examples "$examples" --seed "$seed" \
        --workers 1 --no-color --request-timeout 30 --generation-database none \
        --report ndjson --report-ndjson-path "$out/$mode.ndjson" \
        > "$out/$mode.txt" 2>&1) || status=1
    grep -E "generated|passed|failed|Warnings|⚠" "$out/$mode.txt" | sed 's/^/    /' || true
done
if [ -n "$server_pid" ]; then
    cp "$work/serve.log" "$out/serve.log"
    if ! kill -0 "$server_pid" 2>/dev/null; then
        wait "$server_pid" && code=0 || code=$?
        echo "the server died during the run (exit status $code); its log: $out/serve.log" >&2
        server_pid=""
        status=1
    fi
fi
"$venv/bin/python" "$root/tests/fuzz/summary.py" \
    "with key=$out/with-key.ndjson" "without key=$out/without-key.ndjson" || status=1
if [ "$status" -ne 0 ]; then
    echo "schemathesis found failures: see $out/*.txt (kept)" >&2
    [ "$out" = "$work/reports" ] && cp -r "$out" "$root/target/fuzz-reports" && echo "copied to target/fuzz-reports" >&2
fi
exit "$status"
