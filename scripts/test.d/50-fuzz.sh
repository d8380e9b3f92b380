#!/usr/bin/env bash
# A short bounded fuzzing run of every target in fuzz/ (cargo-fuzz, libFuzzer,
# nightly Rust features): each target starts from its regression corpus
# (fuzz/corpus/<target>/, also replayed by `cargo test` on stable) and runs
# for FUZZ_SECONDS (default 5). New inputs go to a scratch directory, never
# into the committed corpus; a crash fails the step and leaves its input in
# fuzz/artifacts/<target>/.
#
# Installs what it needs when missing: cargo-fuzz (pinned: 0.13.1 builds
# with the stable toolchain here) and the nightly toolchain if it can; without
# one it uses the machine's own toolchain with RUSTC_BOOTSTRAP=1
# (scripts/nightly.sh).
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
. ../scripts/nightly.sh

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET="${FUZZ_SECONDS:-5}"
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
fi

# Targets fuzzed without debug assertions (-O), after the others (one rebuild):
# parse reaches mail-parser, whose release code handles every input but
# some of whose debug_assert!s fire on odd nestings; herald catches those
# in debug builds (src/parsed.rs), but libFuzzer aborts on any panic.
RELEASE_TARGETS="parse"
targets=$(cargo $RUST_TOOLCHAIN_ARG fuzz list | grep -vxF "$RELEASE_TARGETS")
cargo $RUST_TOOLCHAIN_ARG fuzz build

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets $RELEASE_TARGETS; do
    mkdir -p "$scratch/$t"
    mode=()
    if grep -qxF "$t" <<<"$RELEASE_TARGETS"; then mode=(-O); fi
    echo "fuzzing $t for ${SECONDS_PER_TARGET}s"
    # -rss_limit_mb: a target growing beyond it is a failure (bounded memory).
    if ! cargo $RUST_TOOLCHAIN_ARG fuzz run "${mode[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "FAILED: fuzz target $t (its input is in fuzz/artifacts/$t/)"
        exit 1
    fi
    grep -E "stat::(number_of_executed_units|peak_rss_mb)" "$scratch/$t.log" || true
done
echo "fuzzing: every target ran ${SECONDS_PER_TARGET}s without a crash"
