"""Fixtures: real servers on loopback ports (see mailservers.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import mailservers  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HEADER = os.environ.get("HERALD_HEADER", os.path.join(REPO, "include", "herald.h"))


@pytest.fixture
def sink():
    s = mailservers.SmtpSink()
    yield s
    s.stop()


@pytest.fixture
def refusing_sink():
    """An smtp-sink answering every RCPT TO with a hard 5xx."""
    s = mailservers.SmtpSink(["-f", "RCPT"])
    yield s
    s.stop()


@pytest.fixture
def slow_sink():
    """An smtp-sink that waits 1 s before answering DATA."""
    s = mailservers.SmtpSink(["-w", "1"])
    yield s
    s.stop()


@pytest.fixture
def dovecot():
    d = mailservers.Dovecot()
    yield d
    d.stop()


@pytest.fixture
def header_path():
    assert os.path.exists(HEADER), "no header at %s (set HERALD_HEADER)" % HEADER
    return HEADER
