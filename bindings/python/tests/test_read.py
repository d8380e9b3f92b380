"""IMAP and POP3 against a real Dovecot."""

import asyncio
import threading
import time

import pytest

import herald
from herald import Fetch, HeraldError, Security, Status
from herald.aio import AsyncClient


def message(i, subject=None):
    subject = subject or "message %d" % i
    return ("From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: %s\r\n"
            "Message-ID: <m%d@example.org>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\n"
            "Body %d\r\n.with a dot\r\n" % (subject, i, i)).encode()


def imap(d, **kw):
    kw.setdefault("security", Security.STARTTLS)
    kw.setdefault("ca_file", d.ca_file)
    return herald.Client("imap", host="127.0.0.1", port=d.imap_port, username="alice",
                         password="alicepass", **kw)


def pop3(d, **kw):
    return herald.Client("pop3", host="127.0.0.1", port=d.pop3_port, username="alice",
                         password="alicepass", security=Security.NONE, **kw)


def test_imap_append_fetch_search_list(dovecot):
    msgs = [message(1, "one"), message(2, "two"), message(3, "three")]
    with imap(dovecot) as c:
        uids = c.imap_append("INBOX", msgs, flags="\\Seen").result(30)
        assert len(uids) == 3 and uids == sorted(uids) and all(u > 0 for u in uids)

        items = c.imap_fetch("INBOX", "1:*", Fetch.ENVELOPE | Fetch.FLAGS | Fetch.SIZE | Fetch.BODY
                             ).result(30)
        assert [i.uid for i in items] == uids
        assert [i.subject for i in items] == ["one", "two", "three"]
        assert [i.data for i in items] == msgs  # byte-exact
        assert all(i.size == len(m) for i, m in zip(items, msgs))
        assert all("\\Seen" in i.flags for i in items)
        assert items[0].message_id == "<m1@example.org>"
        assert "bob@example.org" in items[0].from_

        headers = c.imap_fetch("INBOX", str(uids[1]), Fetch.HEADERS).result(30)
        assert len(headers) == 1 and headers[0].data == msgs[1].split(b"\r\n\r\n")[0] + b"\r\n\r\n"

        assert c.imap_search("INBOX", 'SUBJECT "two"').result(30) == [uids[1]]
        assert c.imap_search("INBOX", "ALL").result(30) == uids

        c.imap_create("Sent").result(30)
        boxes = {b.name: b for b in c.imap_list("*").result(30)}
        assert {"INBOX", "Sent"} <= set(boxes)
        assert "\\Sent" in boxes["Sent"].flags

        with pytest.raises(HeraldError) as e:
            c.imap_fetch("No such box", "1:*", Fetch.FLAGS).result(30)
        assert e.value.status == Status.NOT_FOUND

        with pytest.raises(HeraldError) as e:
            c.imap_search("INBOX", 'SUBJECT "x"\r\nA1 LOGOUT')
        assert e.value.status == Status.INVALID_ARGUMENT
        with pytest.raises(HeraldError) as e:
            c.imap_fetch("INBOX\r\n", "1:*", Fetch.FLAGS)
        assert e.value.status == Status.INVALID_ARGUMENT


def test_imap_mailboxes_store_move(dovecot):
    with imap(dovecot) as c:
        c.imap_create("Archive").result(30)
        uid = c.imap_append("INBOX", [message(1)]).result(30)[0]
        c.imap_store("INBOX", str(uid), herald.StoreMode.ADD, "\\Flagged").result(30)
        assert "\\Flagged" in c.imap_fetch("INBOX", str(uid), Fetch.FLAGS).result(30)[0].flags
        c.imap_move("INBOX", str(uid), "Archive").result(30)
        assert c.imap_search("INBOX", "ALL").result(30) == []
        moved = c.imap_fetch("Archive", "1:*", Fetch.BODY).result(30)
        assert [i.data for i in moved] == [message(1)]
        c.imap_delete("Archive").result(30)
        assert "Archive" not in {b.name for b in c.imap_list("*").result(30)}


def test_imap_asyncio_and_idle(dovecot):
    async def main():
        async with AsyncClient("imap", host="127.0.0.1", port=dovecot.imap_port,
                               username="alice", password="alicepass",
                               security=Security.NONE) as c:
            changes = []
            changed = asyncio.Event()
            loop_thread = threading.current_thread()

            def on_change(item):
                assert threading.current_thread() is loop_thread
                changes.append(item.exists)
                changed.set()

            await c.imap_search("INBOX", "ALL")  # log in first: IDLE then starts at once
            idle = await c.imap_idle("INBOX", on_change)
            # A message stored before IDLE selected the mailbox is no change:
            # store one at a time until a change is reported.
            for i in range(15):
                await asyncio.to_thread(dovecot.save, "alice", "INBOX", message(7))
                try:
                    await asyncio.wait_for(changed.wait(), 1.5)
                    break
                except asyncio.TimeoutError:
                    pass
            assert changed.is_set(), "no IDLE change reported"
            # other ops still run while IDLE watches
            uids = await c.imap_append("INBOX", [message(8)])
            items = await c.imap_fetch("INBOX", "1:*", Fetch.ENVELOPE)
            idle.cancel()
            with pytest.raises(herald.CancelledError):
                await c.wait(idle)
            return changes, uids, items

    changes, uids, items = asyncio.run(main())
    assert changes and changes[0] >= 1
    assert len(uids) == 1
    subjects = [i.subject for i in items]
    assert subjects[-1] == "message 8" and set(subjects[:-1]) == {"message 7"}
    assert items[-1].uid == uids[0]


def test_imap_wrong_password_raises_auth(dovecot):
    with herald.Client("imap", host="127.0.0.1", port=dovecot.imap_port, username="alice",
                       password="wrong", security=Security.NONE) as c:
        with pytest.raises(HeraldError) as e:
            c.imap_list("*").result(30)
    assert e.value.status == Status.AUTH


def test_pop3_list_retrieve_delete(dovecot):
    msgs = [message(1), message(2)]
    for m in msgs:
        dovecot.save("alice", "INBOX", m)
    with pop3(dovecot) as c:
        listing = c.pop3_list().result(30)
        assert [i.uid for i in listing] == [1, 2]
        assert all(i.uidl and i.size > 0 for i in listing)
        got = c.pop3_retrieve(listing[0].uidl).result(30)
        assert got.uidl == listing[0].uidl
        assert got.data == msgs[0]
        top = c.pop3_top(listing[1].uidl, 0).result(30)
        assert top.data.startswith(b"From: Bob") and b"Body" not in top.data

        op = c.pop3_delete([listing[0].uidl, "no-such-uidl"])
        deleted = op.result(30)
        assert [i.uidl for i in deleted] == [listing[0].uidl]
        assert "no-such-uidl" in op.completion.detail
        after = c.pop3_list().result(30)
        assert [i.uidl for i in after] == [listing[1].uidl]

        with pytest.raises(HeraldError) as e:
            c.pop3_retrieve(listing[0].uidl).result(30)
        assert e.value.status == Status.NOT_FOUND


def test_pop3_queue_mode_with_select(dovecot):
    import select

    dovecot.save("alice", "INBOX", message(1))
    with pop3(dovecot, mode="queue") as c:
        op = c.pop3_list()
        deadline = time.monotonic() + 30
        while not op.done() and time.monotonic() < deadline:
            if select.select([c.wakeup_handle()], [], [], 1.0)[0]:
                c.poll()
        assert [i.size for i in op.result(0)] == [len(message(1))]


def test_imap_idle_with_callbacks(dovecot):
    changes = []
    changed = threading.Event()

    def on_change(item):
        changes.append(item.exists)
        changed.set()

    with imap(dovecot) as c:
        c.imap_search("INBOX", "ALL").result(30)  # log in first: IDLE then starts at once
        idle = c.imap_idle("INBOX", on_change)
        # A message stored before IDLE selected the mailbox is no change:
        # store one at a time until a change is reported.
        for i in range(15):
            dovecot.save("alice", "INBOX", message(i))
            if changed.wait(1.5):
                break
        assert changed.is_set(), "no IDLE change callback"
        assert not idle.done()  # a change is not the op's completion
        assert c.imap_search("INBOX", "ALL").result(30) != []  # other ops still run
        idle.cancel()
        with pytest.raises(herald.CancelledError):
            idle.result(10)
    assert changes[0] >= 1


def test_progress_of_an_append(dovecot):
    progress = []
    with imap(dovecot) as c:
        c.set_progress(lambda op, done, total: progress.append((op.id, done, total)))
        op = c.imap_append("INBOX", [message(1) * 50, message(2) * 50])
        op.result(30)
    assert progress, "no progress callback"
    assert all(op_id == op.id for op_id, _, _ in progress)
    total = len(message(1) * 50) + len(message(2) * 50)
    assert progress[-1][1:] == (total, total)
    assert [d for _, d, _ in progress] == sorted(d for _, d, _ in progress)
