#!/usr/bin/env bash
# scripts/install-test-deps.sh (which scripts/demo.sh runs first) asks for
# root only when something must be installed: run as the unprivileged user
# `nobody` after the suite installed everything, on a copy of scripts/ that
# nobody can read, both modes must succeed without apt-get. Skipped (loudly)
# when not run as root or without `nobody`. Takes about 1 s.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ] || ! id nobody >/dev/null 2>&1 || ! command -v su >/dev/null 2>&1; then
    echo "25-nonroot: SKIPPED: needs root, su and the user nobody to switch to"
    exit 0
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/herald-nonroot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r scripts "$tmp/"
chmod -R a+rX "$tmp"
for mode in --build-only ""; do
    out=$(su nobody -s /bin/bash -c "$tmp/scripts/install-test-deps.sh $mode" 2>&1) || {
        printf '%s\n' "$out" >&2
        echo "25-nonroot: FAIL: install-test-deps.sh $mode as nobody" >&2
        exit 1
    }
    grep -q "skipping apt-get" <<<"$out" || { printf '%s\n' "$out" >&2; exit 1; }
done
echo "25-nonroot: ok: install-test-deps.sh runs as nobody when nothing is missing"
