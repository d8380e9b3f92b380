"""Sending through real smtp-sink servers: callbacks, the completion queue,
asyncio, refusals, cancel, bad input and the GC."""

import asyncio
import gc
import logging
import select
import threading
import time
import weakref

import pytest

import herald
from herald import HeraldError, Message, Security, Status
from herald.aio import AsyncClient


def smtp(sink, **kw):
    kw.setdefault("security", Security.NONE)
    return herald.Client("smtp", host="127.0.0.1", port=sink.port, **kw)


def msg(i, to="bob@example.org"):
    return Message(from_="Alice <alice@example.org>", to=[to], subject="message %d" % i,
                   text="body of message %d\n" % i)


def subjects(sink, n):
    dumps = sink.wait_dumps(n)
    found = set()
    for d in dumps:
        for line in d.split(b"\n"):
            if line.startswith(b"Subject: "):
                found.add(line[len(b"Subject: "):].strip().decode())
    return found


def test_send_with_callbacks(sink):
    done = []
    lock = threading.Lock()

    def on_done(op):
        with lock:
            done.append((op.id, threading.current_thread().name))

    with smtp(sink) as c:
        ops = [c.send(msg(i), on_done=on_done) for i in range(5)]
        assert len({op.id for op in ops}) == 5 and all(op.id for op in ops)
        results = [op.result(timeout=30) for op in ops]
    for r in results:
        assert isinstance(r, herald.SendResult)
        assert [i.address for i in r.recipients] == ["bob@example.org"]
        assert r.recipients[0].reply_code == 250 and r.recipients[0].accepted
        assert r.refused == []
    assert sorted(i for i, _ in done) == sorted(op.id for op in ops)
    # completions come on herald's delivery thread, not ours
    assert all(name != threading.current_thread().name for _, name in done)
    assert subjects(sink, 5) == {"message %d" % i for i in range(5)}


def test_send_raw_is_byte_exact(sink):
    body = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: raw\r\n\r\n.leading dot\r\nend\r\n"
    with smtp(sink) as c:
        r = c.send_raw("a@example.org", ["b@example.org", "c@example.org"], body).result(30)
    assert [i.address for i in r.recipients] == ["b@example.org", "c@example.org"]
    dump = sink.wait_dumps(1)[0]
    assert b".leading dot\nend\n" in dump.replace(b"\r\n", b"\n")
    assert b"b@example.org" in dump and b"c@example.org" in dump


def test_send_with_completion_queue(sink):
    with smtp(sink, mode="queue") as c:
        fd = c.wakeup_handle()
        assert fd >= 0
        ops = {c.send(msg(i)).id: i for i in range(4)}
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < 4 and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1.0)
            if r:
                for op in c.poll():
                    got[op.id] = op.result(0)
        assert set(got) == set(ops)
        assert all(r.recipients[0].reply_code == 250 for r in got.values())
        # nothing left: the fd is not readable
        assert select.select([fd], [], [], 0)[0] == []
    assert subjects(sink, 4) == {"message %d" % i for i in range(4)}


def test_queue_mode_wait_takes_completions(sink):
    with smtp(sink, mode="queue") as c:
        a, b = c.send(msg(1)), c.send(msg(2))
        assert b.wait(30).status == Status.OK  # may take a's completion on the way
        assert a.wait(30).status == Status.OK


def test_send_with_asyncio(sink):
    async def main():
        async with AsyncClient("smtp", host="127.0.0.1", port=sink.port,
                               security=Security.NONE) as c:
            return await asyncio.gather(*(c.send(msg(i)) for i in range(6)))

    results = asyncio.run(main())
    assert len(results) == 6
    assert all(r.recipients[0].reply_code == 250 for r in results)
    assert subjects(sink, 6) == {"message %d" % i for i in range(6)}


def test_refused_recipients_raise(refusing_sink):
    with smtp(refusing_sink) as c:
        op = c.send(msg(1, to="nobody@example.org"))
        with pytest.raises(HeraldError) as e:
            op.result(30)
        assert e.value.status == Status.REJECTED
        assert 500 <= e.value.reply_code < 600
        assert "nobody@example.org" in e.value.detail
        # the completion is kept, with the per-recipient answers
        c2 = e.value.completion
        assert c2 is op.completion and not c2.cancelled
        if c2.items:
            assert c2.items[0].address == "nobody@example.org"
            assert not c2.items[0].accepted

    async def main():
        async with AsyncClient("smtp", host="127.0.0.1", port=refusing_sink.port,
                               security=Security.NONE) as ac:
            await ac.send(msg(2, to="nobody@example.org"))

    with pytest.raises(HeraldError) as e:
        asyncio.run(main())
    assert e.value.status == Status.REJECTED


def test_cancel(slow_sink):
    with smtp(slow_sink, max_connections=1) as c:
        first = c.send(msg(1))
        queued = c.send(msg(2))
        queued.cancel()
        with pytest.raises(herald.CancelledError) as e:
            queued.result(30)
        assert e.value.status == Status.CANCELLED
        assert queued.completion.cancelled
        assert first.result(30).recipients[0].reply_code == 250
        queued.cancel()  # already completed: harmless
        first.cancel()
    assert subjects(slow_sink, 1) == {"message 1"}


def test_asyncio_task_cancel_cancels_the_op(slow_sink):
    async def main():
        async with AsyncClient("smtp", host="127.0.0.1", port=slow_sink.port,
                               security=Security.NONE, max_connections=1) as c:
            first = asyncio.ensure_future(c.send(msg(1)))
            op = c.submit("send", msg(2))
            task = asyncio.ensure_future(c.wait(op))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await first
            for _ in range(100):
                if op.done():
                    break
                await asyncio.sleep(0.05)
            return op

    op = asyncio.run(main())
    assert op.completion.status == Status.CANCELLED


def test_close_completes_every_op(slow_sink):
    for mode in ("callback", "queue"):
        c = smtp(slow_sink, max_connections=1, mode=mode)
        ops = [c.send(msg(i)) for i in range(5)]
        c.close()
        assert all(op.done() for op in ops)
        statuses = [op.completion.status for op in ops]
        assert Status.CANCELLED in statuses, statuses
        assert set(statuses) <= {Status.OK, Status.CANCELLED, Status.IO}, statuses
        with pytest.raises(HeraldError) as e:
            c.send(msg(9))
        assert e.value.status == Status.SHUTDOWN


def test_bad_input_raises_invalid_argument(sink):
    with pytest.raises(HeraldError) as e:
        Message(from_="alice@example.org\0bob@example.org")
    assert e.value.status == Status.INVALID_ARGUMENT and "NUL" in e.value.detail

    m = Message(from_="alice@example.org")
    for bad in ["bob@example.org\r\nRCPT TO:<x@y>", "bob@example.org\n", "not an address"]:
        with pytest.raises(HeraldError) as e:
            m.add_to(bad)
        assert e.value.status == Status.INVALID_ARGUMENT
        assert e.value.detail  # herald_last_error() says why
    with pytest.raises(HeraldError) as e:
        m.set_subject("a\r\nBcc: x@y")
    assert e.value.status == Status.INVALID_ARGUMENT

    with smtp(sink) as c:
        for rcpt in (["b@example.org\r\nDATA"], ["b@example.org\0"]):
            with pytest.raises(HeraldError) as e:
                c.send_raw("a@example.org", rcpt, b"Subject: x\r\n\r\nx\r\n")
            assert e.value.status == Status.INVALID_ARGUMENT
        with pytest.raises(HeraldError) as e:
            c.send_raw("a@example.org\r\n", ["b@example.org"], b"x\r\n")
        assert e.value.status == Status.INVALID_ARGUMENT
        assert c.flush(10)  # none of the refused calls left an op behind

    with pytest.raises(HeraldError) as e:
        herald.Client("smtp", host="127.0.0.1", port=0)
    assert e.value.status == Status.INVALID_ARGUMENT and e.value.detail
    with pytest.raises(HeraldError) as e:
        herald.Client("smtp", host="127.0.0.1", max_line_bytes=1)
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(HeraldError) as e:
        herald.Client("pop3", helo_name="x")  # an SMTP option on a POP3 client
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(TypeError):
        herald.Client("smtp", host="127.0.0.1", port="25")
    with pytest.raises(TypeError):
        herald.Client("smtp", no_such_option=1)
    with pytest.raises(HeraldError) as e:
        herald.Client("smtp", security="sometimes")
    assert e.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(HeraldError) as e:
        herald.Client("smtp", security=7)  # refused by herald itself
    assert e.value.status == Status.INVALID_ARGUMENT and e.value.detail
    with pytest.raises(HeraldError) as e:
        herald.Client("gopher")
    assert e.value.status == Status.INVALID_ARGUMENT


def test_typed_options(sink, tmp_path):
    o = herald.Options("smtp", host="127.0.0.1", port=sink.port, security="none",
                       max_connections=2, connect_timeout_ms=5000, io_timeout_ms=5000,
                       op_timeout_ms=60000, max_line_bytes=4096, max_message_bytes=1 << 20,
                       queue_limit=10, helo_name="tester.example.org")
    with herald.Client(options=o) as c:
        assert c.send(msg(1)).result(30).recipients[0].accepted
    o.close()
    dump = sink.wait_dumps(1)[0]
    assert b"tester.example.org" in dump  # the EHLO name, in smtp-sink's Received line


def test_callbacks_survive_gc(sink):
    """Dropping every reference while ops are in flight: the per-op state and
    the ctypes callbacks stay alive until each op's completion."""
    done = []
    lock = threading.Lock()

    def make_callback(i):
        def on_done(op):
            with lock:
                done.append((i, op.completion.status))
        return on_done

    c = smtp(sink)
    ref = weakref.ref(c)
    for i in range(20):
        c.send(msg(i), on_done=make_callback(i))  # the Op is dropped at once
    del c
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gc.collect()
        with lock:
            if len(done) == 20:
                break
        time.sleep(0.01)
    assert sorted(i for i, _ in done) == list(range(20))
    assert all(s == Status.OK for _, s in done)
    # once the ops completed, nothing holds the client: it is collected (and freed)
    deadline = time.monotonic() + 10
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert ref() is None
    assert subjects(sink, 20) == {"message %d" % i for i in range(20)}


def test_queue_mode_ops_survive_gc(sink):
    done = []
    with smtp(sink, mode="queue") as c:
        for i in range(10):
            c.send(msg(i), on_done=lambda op, i=i: done.append(i))
        gc.collect()
        deadline = time.monotonic() + 30
        while len(done) < 10 and time.monotonic() < deadline:
            c.poll(0.2)
            gc.collect()
    assert sorted(done) == list(range(10))


def test_exception_in_callback_does_not_escape(sink, caplog):
    def boom(op):
        raise RuntimeError("boom from a callback")

    with caplog.at_level(logging.ERROR, logger="herald"):
        with smtp(sink) as c:
            op = c.send(msg(1), on_done=boom)
            assert op.result(30).recipients[0].accepted
            assert c.send(msg(2)).result(30).recipients[0].accepted  # delivery goes on
    assert any("boom from a callback" in r.getMessage() or
               (r.exc_info and "boom" in str(r.exc_info[1])) for r in caplog.records)


def test_log_and_progress_callbacks(sink):
    lines, progress = [], []
    with smtp(sink) as c:
        c.set_log(lambda level, line: lines.append((level, line)), herald.LogLevel.TRACE)
        c.set_progress(lambda op, done, total: progress.append((op.id, done, total)))
        op = c.send(msg(1))
        op.result(30)
        c.set_log(None)
        c.set_progress(None)
    assert any("MAIL FROM" in line.upper() for _, line in lines), lines[:10]
    assert all(isinstance(level, herald.LogLevel) for level, _ in lines)
    assert progress, "no progress callback for a send"
    assert all(op_id == op.id and 0 <= d <= t for op_id, d, t in progress)


def test_to_bytes_and_pickup(tmp_path):
    m = Message(from_="a@example.org", to="b@example.org", bcc=["hidden@example.org"],
                subject="Grüße", text="hello\n", headers={"X-Test": "1"})
    m.attach_bytes("data.csv", "text/csv", b"a,b\n1,2\n")
    raw = m.to_bytes()
    assert b"X-Test: 1" in raw and b"hidden@example.org" not in raw
    with herald.Client("pickup", pickup_dir=str(tmp_path)) as c:
        r = c.send(m).result(30)
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    assert r.recipients and r.recipients[0].name == str(files[0])


def test_waiting_inside_a_callback_is_refused(slow_sink):
    seen = []
    ops = {}

    def on_done(op):
        try:
            ops["second"].wait(5)  # still queued behind this one
            seen.append("returned")
        except HeraldError as e:
            seen.append(e.status)

    with smtp(slow_sink, max_connections=1) as c:
        ops["first"] = c.send(msg(1), on_done=on_done)
        ops["second"] = c.send(msg(2))
        ops["first"].wait(30)
        ops["second"].wait(30)
    assert seen == [Status.INVALID_ARGUMENT]


def test_on_done_has_run_when_wait_returns(sink):
    for mode in ("callback", "queue"):
        seen = []

        def on_done(op):
            time.sleep(0.05)
            seen.append(op.result(0).recipients[0].reply_code)  # result() works inside on_done

        with smtp(sink, mode=mode) as c:
            op = c.send(msg(1), on_done=on_done)
            op.wait(30)
            assert seen == [250], mode


def test_close_while_other_threads_use_the_client(slow_sink):
    """poll(-1), op.wait() and flush() on other threads while close() runs:
    close waits for their calls to leave the client, they end, nothing
    touches a freed client."""
    c = smtp(slow_sink, max_connections=1, mode="queue")
    ops = [c.send(msg(i)) for i in range(3)]
    errors, ended = [], []

    def poller():
        try:
            while c.poll(-1):
                pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        ended.append("poll")

    def waiter():
        try:
            ops[-1].wait()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        ended.append("wait")

    threads = [threading.Thread(target=poller), threading.Thread(target=waiter)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    c.close()
    for t in threads:
        t.join(10)
    assert sorted(ended) == ["poll", "wait"] and not errors, errors
    assert all(op.done() for op in ops)

    c = smtp(slow_sink, max_connections=1)
    cb_ops = [c.send(msg(i)) for i in range(3)]
    flushed = []

    def flusher():
        try:
            flushed.append(c.flush())
        except HeraldError as e:
            flushed.append(e.status)

    t = threading.Thread(target=flusher)
    t.start()
    time.sleep(0.2)
    c.close()
    t.join(10)
    assert not t.is_alive() and flushed in ([True], [Status.SHUTDOWN])
    assert all(op.done() for op in cb_ops)
