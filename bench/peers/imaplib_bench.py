#!/usr/bin/env python3
"""Python's imaplib, the peer of herald's IMAP benchmark (bench/src/bin/imap_bench.rs).

  imaplib_bench.py fetch PORT MAILBOX RUNS      -> best seconds of one UID FETCH 1:* (BODY.PEEK[])
  imaplib_bench.py append PORT MAILBOX N SIZE   -> seconds for N APPENDs of SIZE-byte messages

Logs in as alice/alicepass on 127.0.0.1:PORT (no TLS) before the clock starts.
Prints the seconds, and on stderr what it did.
"""
import imaplib
import sys
import time


def message(i, size):
    head = b"From: bench@example.org\r\nTo: alice@example.org\r\nSubject: imaplib %d\r\n\r\n" % i
    line = b"imaplib benchmark message body line, padded to a fixed width........\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body)[:size - 2] + b"\r\n"


def main():
    mode, port, mailbox = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login("alice", "alicepass")
    if mode == "fetch":
        runs = int(sys.argv[4])
        m.select(mailbox, readonly=True)
        best = None
        for _ in range(runs):
            t = time.perf_counter()
            typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
            dt = time.perf_counter() - t
            assert typ == "OK", (typ, data)
            n = sum(1 for x in data if isinstance(x, tuple))
            nbytes = sum(len(x[1]) for x in data if isinstance(x, tuple))
            best = dt if best is None else min(best, dt)
        print("imaplib: fetched %d messages, %d bytes" % (n, nbytes), file=sys.stderr)
        print("%.6f" % best)
    elif mode == "append":
        n, size = int(sys.argv[4]), int(sys.argv[5])
        msgs = [message(i, size) for i in range(n)]
        t = time.perf_counter()
        for msg in msgs:
            typ, data = m.append(mailbox, None, None, msg)
            assert typ == "OK", (typ, data)
        dt = time.perf_counter() - t
        print("imaplib: appended %d messages" % n, file=sys.stderr)
        print("%.6f" % dt)
    else:
        sys.exit("unknown mode " + mode)
    m.logout()


if __name__ == "__main__":
    main()
