#!/usr/bin/env bash
# The Free Pascal binding (bindings/pascal): checks herald.pas's constants
# against include/herald.h and its herald_completion layout against C,
# compiles the unit, the example and the test program with FPC (warnings are
# errors), then runs the example and the test against an smtp-sink and a
# Dovecot started (and stopped) by bindings/python/tests/mailservers.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec </dev/null
log() { printf '31-pascal: %s\n' "$*" >&2; }
start=$(date +%s)

if ! command -v fpc >/dev/null 2>&1; then
    log "fpc not found: scripts/install-test-deps.sh installs fp-compiler (scripts/deps.d/bindings.list)"
    exit 1
fi
python=$(command -v python3) || { log "no python3 on PATH"; exit 1; }

"$python" bindings/pascal/tests/check_header.py

cargo build --lib --locked -q
target=${CARGO_TARGET_DIR:-$PWD/target}
libdir=$target/debug
out=$target/pascal
mkdir -p "$out"
fpc_flags=(-Mdelphi -Sew -vw -l- -Fubindings/pascal "-FU$out" "-FE$out" "-Fl$libdir")
for src in bindings/pascal/herald.pas bindings/pascal/examples/send.pas \
    bindings/pascal/tests/herald_test.pas bindings/pascal/tests/layout.pas; do
    if ! fpc "${fpc_flags[@]}" "$src" >"$out/fpc.log" 2>&1; then
        cat "$out/fpc.log" >&2
        log "fpc failed on $src"
        exit 1
    fi
    grep -vE '^(Target OS|Compiling|Linking|Free Pascal Compiler|Copyright)' "$out/fpc.log" || true
done
for exe in send herald_test layout; do
    [ -x "$out/$exe" ] || { log "no $out/$exe"; exit 1; }
done

export LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
cc -Wall -Wextra -Werror -Iinclude bindings/pascal/tests/layout.c -o "$out/layout_c"
c_layout=$("$out/layout_c")
pas_layout=$("$out/layout")
if [ "$c_layout" != "$pas_layout" ]; then
    log "herald_completion layout differs: C '$c_layout', Pascal '$pas_layout' (size, then field offsets)"
    exit 1
fi
log "herald_completion layout (size, offsets) matches C: $c_layout"
build=$(( $(date +%s) - start ))

rc=0
"$python" bindings/python/tests/mailservers.py run -- bash -c '
    set -e
    "$1/send" 127.0.0.1 "$HERALD_TEST_SMTP_PORT" alice@example.org bob@example.org plain
    "$1/herald_test"' _ "$out" || rc=$?
log "build and checks ${build}s, total $(( $(date +%s) - start ))s, status $rc"
exit "$rc"
