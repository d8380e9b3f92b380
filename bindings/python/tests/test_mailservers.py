"""The server fixtures themselves: servers die with the test process."""

import os
import signal
import subprocess
import sys
import time

import mailservers

CHILD = r"""
import sys, time
sys.path.insert(0, %r)
import mailservers
s = mailservers.SmtpSink()
print(s._proc.pid, s.port, s.dir, flush=True)
time.sleep(60)
"""


def test_servers_die_with_a_killed_test_process():
    child = subprocess.Popen([sys.executable, "-c", CHILD % os.path.dirname(mailservers.__file__)],
                             stdout=subprocess.PIPE, text=True)
    pgid, port, tmp = child.stdout.readline().split()
    pgid = int(pgid)
    assert mailservers._group_alive(pgid)
    child.send_signal(signal.SIGKILL)  # no atexit, no finalizer: only the pipe
    child.wait()
    deadline = time.monotonic() + 10
    while mailservers._group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not mailservers._group_alive(pgid)
    while os.path.exists(tmp) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(tmp)


def test_stop_is_complete_and_idempotent():
    s = mailservers.SmtpSink()
    pgid = s._proc.pid
    assert mailservers._greeting(s.port, 5).startswith("220 ")
    s.stop()
    assert not mailservers._group_alive(pgid)
    s.stop()
