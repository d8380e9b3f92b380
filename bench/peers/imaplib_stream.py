#!/usr/bin/env python3
"""Python's imaplib, the peer of herald's streaming benchmark (bench/src/bin/stream_bench.rs).

  imaplib_stream.py PORT MAILBOX CHUNK  -> "SECONDS PEAK_GROWTH_KIB MESSAGES"

Fetches every message of MAILBOX with UID FETCH (BODY.PEEK[]), CHUNK UIDs
per command (what an imaplib user does to bound memory: one command's
response is held whole), dropping each message once counted. Logs in as
alice/alicepass on 127.0.0.1:PORT (no TLS) and selects the mailbox before
the clock starts; the peak RSS is reset (Linux clear_refs) at the start.
"""
import imaplib
import sys
import time


def rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def main():
    port, mailbox, chunk = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "alicepass")
    typ, data = m.select(mailbox, readonly=True)
    assert typ == "OK", (typ, data)
    typ, data = m.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = rss_kib("VmRSS:")
    t = time.perf_counter()
    n = 0
    nbytes = 0
    for i in range(0, len(uids), chunk):
        part = uids[i:i + chunk]
        typ, data = m.uid("FETCH", "%d:%d" % (part[0], part[-1]), "(BODY.PEEK[])")
        assert typ == "OK", (typ, data)
        for x in data:
            if isinstance(x, tuple):
                n += 1
                nbytes += len(x[1])
        del data
    dt = time.perf_counter() - t
    growth = rss_kib("VmHWM:") - before
    print("imaplib: fetched %d messages, %d bytes, %d per command" % (n, nbytes, chunk), file=sys.stderr)
    print("%.6f %d %d" % (dt, growth, n))
    m.logout()


if __name__ == "__main__":
    main()
