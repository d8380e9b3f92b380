#!/usr/bin/env python3
"""The everyday peer for herald's POP3 benchmark: Python's poplib, one
command at a time.

usage: poplib_bench.py HOST PORT USER PASSWORD

Logs in (USER/PASS, no TLS), takes UIDL, retrieves every message with
RETR, one after the other, and QUITs without deleting anything. Prints one
JSON object: messages, bytes, setup_s (connect, login, UIDL) and
retrieve_s (the RETR loop).
"""
import json
import poplib
import sys
import time


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    t0 = time.perf_counter()
    p = poplib.POP3(host, port, timeout=120)
    p.user(user)
    p.pass_(password)
    _, listing, _ = p.uidl()
    numbers = [int(line.split()[0]) for line in listing]
    t1 = time.perf_counter()
    total = 0
    for n in numbers:
        _, _, octets = p.retr(n)
        total += octets
    t2 = time.perf_counter()
    p.quit()
    print(json.dumps({
        "messages": len(numbers),
        "bytes": total,
        "setup_s": t1 - t0,
        "retrieve_s": t2 - t1,
    }))


if __name__ == "__main__":
    main()
