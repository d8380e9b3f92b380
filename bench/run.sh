#!/usr/bin/env bash
# Reproduces herald's SMTP benchmark numbers in one command:
#
#   bench/run.sh [--runs R]
#
# 1. installs the servers if missing (scripts/install-test-deps.sh: Postfix's
#    smtp-sink and smtp-source, ...; needs root or sudo the first time),
# 2. builds the bench programs in release mode,
# 3. runs smtp_bench (herald vs smtp-source -d: 20 ms RTT through the delay
#    proxy at 1 and 8 connections, loopback at 8; and herald vs a minimal
#    BDAT streamer into a private Postfix smtpd at 20 ms RTT, 1 connection,
#    10 KB and 100 KB) and submit_bench (the cost
#    of one herald_send_raw_async call and the memory per op with 100,000
#    ops queued), each R times (default 5), printing medians and ranges;
#    then imap_bench (fetch and bulk append against Python's imaplib),
#    imap_sync_bench (opening a folder and fetching it at 20 ms RTT against
#    imaplib and a one-write client; CHANGEDSINCE against a full resync) and
#    pop3_bench (pipelined retrieval against Python's poplib), once each;
#    then spool_bench --runs 3 (the durable outbox against no spool, loopback
#    and 20 ms RTT, 1 and 8 submitting threads);
#    then cpu_bench --runs 3 (callgrind instructions per 10 KB message against
#    a minimal pipelining client, herald_send_async against lettre's builder,
#    a 25 MB attachment against curl; about 2 minutes); then stream_bench
#    (10 000 x 100 KB streamed with bounded memory against imaplib; ~25 s).
#
# Any other argument goes to smtp_bench (see bench/src/bin/smtp_bench.rs).
# Results of a run are in bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

if [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/sbin/dovecot ]; then
    scripts/install-test-deps.sh
fi

# cpu_bench's 25 MB row compares with curl's SMTP upload.
if ! command -v curl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then apt-get install -y curl; else sudo apt-get install -y curl; fi
fi

cargo build --release -p herald-bench --bins

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(uname -sr), $(/usr/sbin/postconf -d mail_version 2>/dev/null || echo 'postfix ?'), $(rustc --version)"
echo
echo "== smtp_bench --runs $runs ${args[*]-}"
target/release/smtp_bench --runs "$runs" ${args[@]+"${args[@]}"}
echo
echo "== submit_bench --runs $runs"
target/release/submit_bench --runs "$runs"
echo
echo "== imap_bench"
target/release/imap_bench
echo
echo "== imap_sync_bench"
target/release/imap_sync_bench
echo
echo "== pop3_bench"
target/release/pop3_bench
echo
echo "== spool_bench --runs 3"
target/release/spool_bench --runs 3
echo
echo "== cpu_bench --runs 3"
target/release/cpu_bench --runs 3
echo
echo "== stream_bench (10 000 x 100 KB: about 1 GB in a temp maildir while it runs)"
target/release/stream_bench
