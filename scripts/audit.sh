#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec advisory database with cargo-audit, offline.
#
# The database (https://github.com/rustsec/advisory-db, CC0-1.0 data, not vendored here) is
# the first of: $CLARITY_ADVISORY_DB; ../shared/advisory-db beside the checkout; a shallow
# clone into target/advisory-db where GitHub can be reached. Without one, the check is
# reported SKIPPED and the script exits 0, unless CLARITY_AUDIT_REQUIRED=1.
#
# cargo-audit is the one on PATH if it is the pinned version, else it is built from crates.io
# into target/tools (no default features: the binary-scanning feature is not needed).
# Ignored advisories, each with its reason, are in .cargo/audit.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

AUDIT_VERSION=0.22.2
DB_URL=https://github.com/rustsec/advisory-db

skip() {
    echo "advisories: SKIPPED: $1" >&2
    if [ "${CLARITY_AUDIT_REQUIRED:-0}" = 1 ]; then
        echo "CLARITY_AUDIT_REQUIRED=1: failing" >&2
        exit 1
    fi
    exit 0
}

# An advisory database is a folder with crates/<name>/RUSTSEC-*.md files.
is_db() { [ -d "$1/crates" ]; }

# Sets `db`, or skips (not in a subshell, so `skip` ends the script).
find_db() {
    if [ -n "${CLARITY_ADVISORY_DB:-}" ]; then
        is_db "$CLARITY_ADVISORY_DB" || skip "CLARITY_ADVISORY_DB=$CLARITY_ADVISORY_DB has no crates/ folder"
        db=$CLARITY_ADVISORY_DB
    elif is_db ../shared/advisory-db; then
        db=../shared/advisory-db
    elif is_db target/advisory-db; then
        git -C target/advisory-db pull --quiet --ff-only 2>/dev/null \
            || echo "advisories: could not refresh target/advisory-db; using it as it is" >&2
        db=target/advisory-db
    elif timeout 120 git clone --quiet --depth 1 "$DB_URL" target/advisory-db 2>/dev/null; then
        db=target/advisory-db
    else
        rm -rf target/advisory-db
        skip "no advisory database: set CLARITY_ADVISORY_DB to a copy of $DB_URL, put one in ../shared/advisory-db (scripts/update-advisory-db.sh), or run where GitHub can be reached"
    fi
}

# Sets `audit` to a cargo-audit of the pinned version, building it if need be.
find_audit() {
    local have
    have=$(cargo-audit --version 2>/dev/null || true)
    if [ "${have##* }" = "$AUDIT_VERSION" ]; then
        audit=$(command -v cargo-audit)
        return
    fi
    audit=target/tools/bin/cargo-audit
    have=$("$audit" --version 2>/dev/null || true)
    if [ "${have##* }" != "$AUDIT_VERSION" ]; then
        echo "advisories: building cargo-audit $AUDIT_VERSION (once per checkout)"
        cargo install cargo-audit --version "$AUDIT_VERSION" --locked --no-default-features \
            --debug --root target/tools --quiet
    fi
}

find_db
find_audit
if [ -d "$db/.git" ]; then
    echo "advisories: database $db at $(git -C "$db" log -1 --format='%h, %cs')"
elif [ -f "$db/SNAPSHOT" ]; then
    echo "advisories: database $db ($(head -n 1 "$db/SNAPSHOT"))"
else
    echo "advisories: database $db"
fi
# --no-fetch: the database above is used as it is; the crates.io index (for yanked crates)
# is not asked either. Warnings (unmaintained, unsound, yanked) are printed; vulnerabilities
# fail unless ignored in .cargo/audit.toml with a reason.
"$audit" audit --no-fetch --db "$db" --file Cargo.lock
