#!/usr/bin/env python3
"""Python's imaplib, the peer of herald's IMAP sync benchmark (bench/src/bin/imap_sync_bench.rs).

  imaplib_sync_bench.py open PORT MAILBOX RUNS  -> best seconds of opening a folder and fetching it:
                                                   SELECT (EXAMINE) then UID FETCH 1:* (BODY.PEEK[]),
                                                   with INBOX selected before each run; then, after a
                                                   space, the best seconds of the UID FETCH alone
  imaplib_sync_bench.py flags PORT MAILBOX      -> "items bytes seconds" of a full flag resync:
                                                   UID FETCH 1:* (UID FLAGS) on the selected folder
  imaplib_sync_bench.py store PORT MAILBOX N    -> adds \\Flagged to N messages spread over the folder

Logs in as alice/alicepass on 127.0.0.1:PORT (no TLS) before the clock starts.
"""
import imaplib
import sys
import time


def main():
    mode, port, mailbox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "alicepass")
    if mode == "open":
        runs = int(sys.argv[4])
        best_open = best_fetch = None
        for _ in range(runs):
            m.select("INBOX", readonly=True)
            t = time.perf_counter()
            typ, _ = m.select(mailbox, readonly=True)
            assert typ == "OK"
            t1 = time.perf_counter()
            typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
            t2 = time.perf_counter()
            assert typ == "OK", (typ, data)
            n = sum(1 for x in data if isinstance(x, tuple))
            best_open = t2 - t if best_open is None else min(best_open, t2 - t)
            best_fetch = t2 - t1 if best_fetch is None else min(best_fetch, t2 - t1)
        print("imaplib: opened and fetched %d messages" % n, file=sys.stderr)
        print("%.6f %.6f" % (best_open, best_fetch))
    elif mode == "flags":
        m.select(mailbox, readonly=True)
        t = time.perf_counter()
        typ, data = m.uid("FETCH", "1:*", "(UID FLAGS)")
        dt = time.perf_counter() - t
        assert typ == "OK"
        print("%d %d %.6f" % (len(data), sum(len(x) for x in data), dt))
    elif mode == "store":
        n = int(sys.argv[4])
        typ, data = m.select(mailbox)
        count = int(data[0])
        seqs = ",".join(str(1 + i * (count // n)) for i in range(n))
        typ, _ = m.store(seqs, "+FLAGS.SILENT", "(\\Flagged)")
        assert typ == "OK"
    else:
        sys.exit("unknown mode " + mode)
    m.logout()


if __name__ == "__main__":
    main()
