#!/usr/bin/env bash
# Writes a dated snapshot of the RustSec advisory database (CC0-1.0 data) for
# scripts/audit.sh: only crates/ and the licence, plus a SNAPSHOT file naming the commit and
# its date.
#
#   scripts/update-advisory-db.sh [DEST]                  # from GitHub, where it can be reached
#   scripts/update-advisory-db.sh --from GIT_DIR [DEST]   # from a local clone or mirror
#
# DEST defaults to ../shared/advisory-db, where audit.sh looks for it beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

source_dir=
if [ "${1:-}" = --from ]; then
    source_dir=${2:?--from needs the path of a clone of the advisory database}
    shift 2
fi
dest=${1:-../shared/advisory-db}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$source_dir" ]; then
    git clone --quiet --depth 1 https://github.com/rustsec/advisory-db "$work/clone"
    source_dir=$work/clone
fi
# A work tree (path/.git) or a bare repository (path itself).
git_dir=$source_dir
[ -d "$source_dir/.git" ] && git_dir=$source_dir/.git
commit=$(git --git-dir="$git_dir" rev-parse HEAD)
date=$(git --git-dir="$git_dir" log -1 --format=%cs HEAD)

mkdir -p "$work/out"
git --git-dir="$git_dir" archive HEAD crates LICENSE.txt | tar -x -C "$work/out"
printf 'rustsec/advisory-db %s of %s (CC0-1.0, see LICENSE.txt)\n' "$commit" "$date" \
    >"$work/out/SNAPSHOT"
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
mv "$work/out" "$dest"
echo "advisory database snapshot $date ($(ls "$dest/crates" | wc -l) crates) in $dest"
