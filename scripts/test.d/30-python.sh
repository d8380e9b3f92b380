#!/usr/bin/env bash
# The Python binding (bindings/python): builds libherald (debug, as `cargo
# test` left it), makes a venv with the first python3 on PATH, installs pytest
# (PyPI) and the package itself with pip, and runs its pytest suite against
# real servers (smtp-sink, Dovecot) with HERALD_LIB pointing at the library.
# pytest's exit status 5 (no tests collected) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec </dev/null
log() { printf '30-python: %s\n' "$*" >&2; }
start=$(date +%s)

python=$(command -v python3) || { log "no python3 on PATH"; exit 1; }
# `python3 -m venv` needs ensurepip, which Debian ships apart (python3-venv).
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    if [ "$python" = /usr/bin/python3 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing python3-venv (venv/ensurepip missing for $python)"
        sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends python3-venv
    else
        log "$python cannot create a venv (no ensurepip); install python3-venv or a full Python"
        exit 1
    fi
fi

cargo build --lib --locked -q
target=${CARGO_TARGET_DIR:-$PWD/target}
lib=$target/debug/libherald.so
[ -e "$lib" ] || { log "no $lib after cargo build"; exit 1; }

venv=$target/python-venv
# Recreate the venv when it is missing or was made by another python3.
want=$("$python" -c 'import sys; print(sys.version)')
if ! [ -x "$venv/bin/python" ] || [ "$("$venv/bin/python" -c 'import sys; print(sys.version)' 2>/dev/null)" != "$want" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pytest' 2>/dev/null; then
    "$venv/bin/python" -m pip install -q pytest
fi
# Always reinstall: the sources may have changed since the last run.
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall ./bindings/python
# pip builds in the source tree; leave it clean.
rm -rf bindings/python/build bindings/python/src/herald.egg-info
setup=$(( $(date +%s) - start ))

cd bindings/python
rc=0
HERALD_LIB=$lib "$venv/bin/python" -m pytest -p no:cacheprovider -v tests || rc=$?
if [ "$rc" -eq 5 ]; then
    log "pytest collected no tests: failing"
    exit 1
fi
log "setup ${setup}s, total $(( $(date +%s) - start ))s, pytest status $rc"
exit "$rc"
