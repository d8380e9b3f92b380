#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing
# (mail servers, valgrind, OpenSSL headers; see scripts/install-test-deps.sh),
# then checks formatting, lints, the generated header, and runs every Rust
# test and every C program (under valgrind) against real servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
exec </dev/null

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (skipped when present)"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, header drift, SMTP/IMAP/POP3 against real servers, C under valgrind)"
cargo test --workspace --locked

# More suites, one file per area (bindings, the Windows DLL, fuzzing, install ...),
# run in name order; each exits non-zero on failure.
for t in scripts/test.d/*.sh; do
    [ -e "$t" ] || continue
    step "$t"
    bash "$t"
done

step "all checks passed"
