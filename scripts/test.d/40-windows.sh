#!/usr/bin/env bash
# herald.dll for Windows: cross-built with mingw-w64 for x86_64-pc-windows-gnu
# and i686-pc-windows-gnu (Delphi Win32), clippy for the windows target, and
# the C tests and examples run under wine against the loopback test servers
# (tests/windows.rs). mingw-w64 and wine64 come from scripts/deps.d/windows.list.
#
# A Rust target that cannot be installed is reported loudly and skipped; so
# is the whole step when rustup is missing. Everything else failing fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec </dev/null

say() { printf '40-windows: %s\n' "$*"; }
loud() {
    printf '\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n' >&2
    printf '!!! 40-windows: %s\n' "$@" >&2
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n' >&2
}
start=$(date +%s)

targets=()
if ! command -v rustup >/dev/null 2>&1; then
    loud "rustup is missing: the windows targets cannot be installed; herald.dll is NOT built or tested"
    exit 0
fi
installed=$(rustup target list --installed 2>/dev/null || true)
for t in x86_64-pc-windows-gnu i686-pc-windows-gnu; do
    if grep -qx "$t" <<<"$installed" || timeout 600 rustup target add "$t"; then
        targets+=("$t")
    else
        loud "rustup target add $t failed: herald.dll for $t is NOT built or tested"
    fi
done
[ ${#targets[@]} -gt 0 ] || exit 0

for t in "${targets[@]}"; do
    say "cargo build --release --lib --target $t"
    t0=$(date +%s)
    cargo build --release --lib --locked --target "$t"
    say "  $(stat -c %s "target/$t/release/herald.dll") bytes, $(($(date +%s) - t0)) s"
done

for t in "${targets[@]}"; do
    say "cargo clippy --target $t --lib -D warnings"
    cargo clippy --target "$t" --lib --locked -- -D warnings
done

if [ ${#targets[@]} -lt 2 ]; then
    loud "not every windows target is installed (${targets[*]}): the wine tests need both; skipped"
    exit 0
fi
if [ ! -x /usr/lib/wine/wine ] && [ ! -x /usr/lib/i386-linux-gnu/wine/wine ]; then
    loud "no 32-bit wine (wine32, i386 multiarch): the i686 herald.dll is built, linked and its" \
        "exports checked, but NOT RUN"
fi
say "cargo test --test windows (C tests and examples under wine)"
cargo test --locked --test windows -- --ignored --skip pop3_and_imap_in_c_under_wine
say "done in $(($(date +%s) - start)) s"
