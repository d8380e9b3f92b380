#!/usr/bin/env bash
# Builds herald and its C examples and runs them: a batch of messages sent in
# the background through PICKUP (no server needed) into ./demo-outbox, then
# the same through a GUI-style event loop that takes completions on the main
# thread. Pass a host (and -p PORT, -k for no TLS) to send over SMTP instead:
#   scripts/demo.sh -p 25 -k 127.0.0.1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh --build-only   # a C compiler and the OpenSSL headers, if missing
cargo build --release --lib
mkdir -p target/release/c
for ex in send_async event_loop; do
    cc -std=c11 -O2 -Wall -Wextra -Werror -Iinclude "examples-c/$ex.c" \
        -o "target/release/c/$ex" -Ltarget/release -lherald -lpthread -Wl,-rpath,"$PWD/target/release"
done
if [ $# -eq 0 ]; then
    set -- -o demo-outbox
fi
echo "== send_async $* (callbacks on herald's threads)"
target/release/c/send_async -n 20 "$@"
echo
echo "== event_loop $* (completions on the main thread via the wakeup handle)"
target/release/c/event_loop -n 20 "$@"
if [ -d demo-outbox ]; then
    echo
    echo "== one of the messages in demo-outbox/"
    ls demo-outbox | head -1 | sed 's|^|demo-outbox/|' | xargs cat
fi
