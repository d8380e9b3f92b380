#!/usr/bin/env bash
# AddressSanitizer run of the C tests that stress herald's lifetimes:
# tests/c/stress.c (clients against misbehaving connections, deadlines,
# cancels and frees racing the workers and the watchdog) and
# tests/c/api_contract.c. libherald is built with
# -Zsanitizer=address (std itself is not rebuilt: herald and its Rust
# dependencies are instrumented, and every allocation goes through the
# sanitizer's malloc), the C programs with gcc -fsanitize=address, whose
# runtime serves both. LeakSanitizer is on: a leak fails the run.
#
# Uses the nightly toolchain, installing it when missing and possible, else
# the machine's own with RUSTC_BOOTSTRAP=1 (scripts/nightly.sh).
# Takes about 3 minutes cold here (the instrumented build), seconds warm.
set -euo pipefail
cd "$(dirname "$0")/.."
exec </dev/null
. scripts/nightly.sh

triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=target/asan
lib="$target_dir/$triple/debug"
# --target keeps build scripts and proc macros uninstrumented.
RUSTFLAGS="-Zsanitizer=address" cargo $RUST_TOOLCHAIN_ARG build --lib --locked \
    --target "$triple" --target-dir "$target_dir"

mkdir -p "$target_dir/c"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1"
for prog in stress api_contract; do
    gcc -std=c11 -g -fsanitize=address -fno-omit-frame-pointer -Wall -Wextra -Werror \
        -I include "tests/c/$prog.c" -o "$target_dir/c/$prog" \
        -L "$lib" -lherald -lpthread -Wl,-rpath,"$PWD/$lib"
    echo "running $prog under AddressSanitizer"
    work=$(mktemp -d)
    (cd "$work" && "$OLDPWD/$target_dir/c/$prog")
    rm -rf "$work"
done
echo "asan: no errors"
