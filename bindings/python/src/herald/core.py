"""The herald client over ctypes: options, messages, ops, results, errors."""

import contextlib
import ctypes
import itertools
import logging
import os
import threading
import time
import weakref
from ctypes import POINTER, byref, c_char_p, c_size_t, c_uint8, c_void_p
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

from . import _native
from .constants import Field, Fetch, LogLevel, Option, Protocol, Security, Status, StoreMode

_log = logging.getLogger("herald")

# ---------------------------------------------------------------------------
# Library-level functions
# ---------------------------------------------------------------------------


def _lib():
    return _native.lib()


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return _lib().herald_version().decode()


def version_number() -> int:
    """MAJOR * 1000000 + MINOR * 1000 + PATCH of the loaded library
    (``herald_version_number()``; computed from ``version()`` when the
    library predates that function)."""
    fn = _lib().herald_version_number
    if fn is not None:
        return int(fn())
    major, minor, patch = (int(p) for p in version().split(".")[:3])
    return major * 1000000 + minor * 1000 + patch


def status_str(status: int) -> str:
    """Static text for a status code (also for unknown codes)."""
    return _lib().herald_status_str(int(status)).decode("utf-8", "replace")


def last_error() -> str:
    """The detail of the last failed herald call on this thread ("" when none)."""
    s = _lib().herald_last_error()
    return s.decode("utf-8", "replace") if s else ""


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class HeraldError(Exception):
    """A failed call or a failed op.

    ``status`` is the :class:`Status`, ``detail`` herald's explanation (the
    completion's ``detail``, or ``herald_last_error()`` for a refused call),
    ``reply_code`` the server's last reply code (0 if none) and
    ``completion`` the op's :class:`Completion` (None for a refused call):
    a failed op may still carry what it did before it stopped, for example
    the UIDs an interrupted IMAP append stored.
    """

    def __init__(self, status, detail="", reply_code=0, completion=None):
        try:
            status = Status(status)
        except ValueError:
            status = int(status)
        self.status = status
        self.detail = detail
        self.reply_code = reply_code
        self.completion = completion
        name = status.name if isinstance(status, Status) else str(status)
        text = "%s: %s" % (name, detail) if detail else name
        super().__init__(text)


class CancelledError(HeraldError):
    """An op that completed cancelled (status CANCELLED)."""


def _error_from_completion(c):
    cls = CancelledError if c.status == Status.CANCELLED else HeraldError
    return cls(c.status, c.detail, c.reply_code, c)


def _check(status):
    """Raises HeraldError for a non-OK status returned by a C call."""
    if status != Status.OK:
        raise HeraldError(status, last_error())


def _cstr(value, what) -> bytes:
    """UTF-8 bytes for a C string; a NUL inside (which C would silently
    truncate at) is refused as INVALID_ARGUMENT."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        b = value.encode("utf-8", "surrogateescape")
    elif isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    else:
        raise TypeError("%s must be str, not %s" % (what, type(value).__name__))
    if b"\0" in b:
        raise HeraldError(Status.INVALID_ARGUMENT, "%s contains a NUL character" % what)
    return b


def _cstr_array(values, what):
    if isinstance(values, (str, bytes)):
        values = [values]
    encoded = [_cstr(v, what) for v in values]
    arr = (c_char_p * max(len(encoded), 1))(*encoded)
    return arr, len(encoded), encoded


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One result item (a recipient, mailbox, message, UID ...).

    Every field herald can fill is here; the ones an op does not produce are
    None (str fields), 0 (ints) or None (``data``). See the README and the
    header for which op fills which field.
    """

    uid: int = 0
    name: Optional[str] = None
    subject: Optional[str] = None
    from_: Optional[str] = None
    to: Optional[str] = None
    date: Optional[str] = None
    message_id: Optional[str] = None
    flags_text: Optional[str] = None
    size: int = 0
    exists: int = 0
    reply_code: int = 0
    reply_text: Optional[str] = None
    data: Optional[bytes] = None

    @property
    def flags(self) -> Tuple[str, ...]:
        """Flags (or mailbox attributes) as a tuple, e.g. ("\\\\Seen",)."""
        return tuple(self.flags_text.split()) if self.flags_text else ()

    @property
    def uidl(self) -> Optional[str]:
        """POP3: the message's UIDL (the item's name)."""
        return self.name

    @property
    def address(self) -> Optional[str]:
        """SMTP send: the recipient's address (the item's name)."""
        return self.name

    @property
    def accepted(self) -> bool:
        """SMTP send: True when the server accepted this recipient (2xx)."""
        return 200 <= self.reply_code < 300


_STR_FIELDS = [
    ("name", Field.NAME),
    ("subject", Field.SUBJECT),
    ("from_", Field.FROM),
    ("to", Field.TO),
    ("date", Field.DATE),
    ("message_id", Field.MESSAGE_ID),
    ("flags_text", Field.FLAGS),
    ("reply_text", Field.REPLY_TEXT),
]
_INT_FIELDS = [
    ("size", Field.SIZE),
    ("exists", Field.EXISTS),
    ("reply_code", Field.REPLY_CODE),
]


def _copy_items(r) -> List[Item]:
    """Copies every item of a herald_result (valid only now) into Items."""
    if not r:
        return []
    L = _lib()
    items = []
    n = L.herald_result_count(r)
    for i in range(n):
        kw = {"uid": int(L.herald_result_uid(r, i))}
        for attr, fld in _STR_FIELDS:
            s = L.herald_result_str(r, i, fld)
            if s is not None:
                kw[attr] = s.decode("utf-8", "replace")
        for attr, fld in _INT_FIELDS:
            kw[attr] = int(L.herald_result_int(r, i, fld))
        ln = c_size_t(0)
        p = L.herald_result_bytes(r, i, byref(ln))
        if p:
            kw["data"] = ctypes.string_at(p, ln.value)
        items.append(Item(**kw))
    return items


@dataclass(frozen=True)
class Completion:
    """A copy of an op's ``herald_completion``, valid forever."""

    op: int
    status: Union[Status, int]
    cancelled: bool
    reply_code: int
    detail: str
    has_result: bool
    items: List[Item] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == Status.OK


def _copy_completion(cp) -> Completion:
    c = cp.contents
    try:
        status = Status(c.status)
    except ValueError:
        status = int(c.status)
    return Completion(
        op=int(c.op),
        status=status,
        cancelled=bool(c.cancelled),
        reply_code=int(c.reply_code),
        detail=(c.detail or b"").decode("utf-8", "replace"),
        has_result=bool(c.result),
        items=_copy_items(c.result),
    )


@dataclass(frozen=True)
class SendResult:
    """The result of a send: one :class:`Item` per recipient (``address``,
    ``reply_code``, ``reply_text``); ``detail`` names any refused ones."""

    recipients: List[Item]
    detail: str
    reply_code: int

    @property
    def refused(self) -> List[Item]:
        return [r for r in self.recipients if not r.accepted]


# How each op kind turns its Completion into a typed value.
def _uids(c):
    return [i.uid for i in c.items]


def _items(c):
    return list(c.items)


def _one_item(c):
    return c.items[0] if c.items else None


def _nothing(c):
    return None


def _send_result(c):
    return SendResult(list(c.items), c.detail, c.reply_code)


# ---------------------------------------------------------------------------
# Ops and the registry that keeps their Python state alive
# ---------------------------------------------------------------------------

# token -> Op, for every op submitted and not yet completed. It holds the op
# (and through it the client and the user's callbacks) alive until the op's
# one completion, whatever the caller keeps: ctypes callbacks may arrive on
# herald's threads after the caller dropped every reference.
_pending = {}
_pending_lock = threading.Lock()
_tokens = itertools.count(1)


def _report_callback_error(where):
    """Called inside an except block in a ctypes callback: log, never raise."""
    try:
        _log.exception("exception in herald %s callback (ignored)", where)
    except BaseException:  # noqa: BLE001 - nothing may escape into C
        pass


class Op:
    """One submitted op. It completes exactly once.

    ``wait()`` blocks until it completed and returns its :class:`Completion`
    (never raises for a failed op); ``result()`` returns the op's typed
    value or raises :class:`HeraldError`. ``cancel()`` asks herald to stop it.
    The op's ``on_done(op)`` has run when ``wait()`` returns (and may itself
    call ``op.result()``).
    """

    def __init__(self, client, kind, convert, on_done=None, on_change=None):
        self.client = client
        self.kind = kind
        self.id = 0
        self.token = next(_tokens)
        self._convert = convert
        self._on_done = on_done
        self._on_change = on_change
        self._event = threading.Event()
        self._completion = None
        self._deliverer = None
        self._done_callbacks = []

    def __repr__(self):
        state = "done" if self._completion is not None else "pending"
        return "<herald.Op %s id=%d %s>" % (self.kind, self.id, state)

    # -- completion (called once, by the trampoline or a queue drain) --

    def _complete(self, completion):
        # The completion is visible (done(), wait() and result() inside
        # on_done work) before the callbacks run; threads blocked in wait()
        # are woken after them, so on_done has run when wait() returns.
        self._deliverer = threading.get_ident()
        self._completion = completion
        with _pending_lock:
            callbacks, self._done_callbacks = self._done_callbacks, None
        try:
            if self._on_done is not None:
                try:
                    self._on_done(self)
                except BaseException:  # noqa: BLE001
                    _report_callback_error("completion")
            for fn in callbacks or ():
                try:
                    fn(self)
                except BaseException:  # noqa: BLE001
                    _report_callback_error("done")
        finally:
            self._event.set()

    def _changed(self, completion):
        if self._on_change is not None:
            try:
                item = completion.items[0] if completion.items else None
                self._on_change(item)
            except BaseException:  # noqa: BLE001
                _report_callback_error("IDLE change")

    def add_done_callback(self, fn):
        """Calls ``fn(op)`` when the op completes (at once if it has), on the
        thread that completes it."""
        with _pending_lock:
            if self._done_callbacks is not None:
                self._done_callbacks.append(fn)
                return
        fn(self)

    # -- public --

    def done(self) -> bool:
        return self._completion is not None

    @property
    def completion(self) -> Optional[Completion]:
        """The completion once done, else None."""
        return self._completion

    def wait(self, timeout: Optional[float] = None) -> Completion:
        """Waits (forever when ``timeout`` is None) for the completion and
        returns it; raises ``TimeoutError`` when it did not come in time.
        A queue-mode client's completions are taken from its queue here."""
        if self._completion is None:
            self.client._wait_for(self, timeout)
        if self._completion is None:
            raise TimeoutError("herald op %d did not complete within %ss" % (self.id, timeout))
        if not self._event.is_set() and self._deliverer != threading.get_ident():
            self._event.wait(timeout)  # its on_done runs on another thread: let it finish
        return self._completion

    def result(self, timeout: Optional[float] = None):
        """The op's typed value; raises HeraldError if it failed or was
        cancelled (CancelledError)."""
        c = self.wait(timeout)
        if c.status != Status.OK:
            raise _error_from_completion(c)
        return self._convert(c)

    def cancel(self) -> None:
        """Asks herald to cancel the op (harmless once it completed)."""
        if self._completion is None:
            self.client.cancel(self)


def _dispatch(cptr, final_hint=None):
    """Hands a completion to its op. ``final_hint``: True for a completion
    callback, False for an IDLE change callback, None for a queued
    completion (then an OK completion of an IDLE op is a change)."""
    token = cptr.contents.user_token or 0
    completion = _copy_completion(cptr)
    with _pending_lock:
        op = _pending.get(token)
        if op is None:
            return None
        final = final_hint
        if final is None:
            final = not (op.kind == "imap_idle" and completion.status == Status.OK)
        if final:
            del _pending[token]
    if final:
        op._complete(completion)
    else:
        op._changed(completion)
    return op


# Set while herald's delivery thread runs Python code for a completion.
_in_callback = threading.local()


@_native.CALLBACK
def _on_complete(cptr):
    try:
        _in_callback.active = True
        try:
            _dispatch(cptr, True)
        finally:
            _in_callback.active = False
    except BaseException:  # noqa: BLE001
        _report_callback_error("completion")


@_native.CALLBACK
def _on_idle_change(cptr):
    try:
        _dispatch(cptr, False)
    except BaseException:  # noqa: BLE001
        _report_callback_error("IDLE change")


_NO_CALLBACK = ctypes.cast(None, _native.CALLBACK)

# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------

_INT_OPTIONS = {
    Option.PORT,
    Option.SECURITY,
    Option.MAX_CONNECTIONS,
    Option.CONNECT_TIMEOUT_MS,
    Option.IO_TIMEOUT_MS,
    Option.IDLE_TIMEOUT_MS,
    Option.ACCEPT_INVALID_CERTS,
    Option.THROTTLE_MESSAGES,
    Option.THROTTLE_INTERVAL_MS,
    Option.QUEUE_LIMIT,
    Option.OP_TIMEOUT_MS,
    Option.MAX_LINE_BYTES,
    Option.MAX_MESSAGE_BYTES,
}


def _protocol(p) -> Protocol:
    if isinstance(p, str):
        try:
            return Protocol[p.upper()]
        except KeyError:
            raise HeraldError(Status.INVALID_ARGUMENT, "unknown protocol %r" % p) from None
    return Protocol(p)


class Options:
    """``herald_options``: typed setters over ``herald_options_set_str/_int``.

    ``Options("smtp", host="mail.example.org", port=587,
    security=Security.STARTTLS, username=..., password=...)``: each keyword
    is an ``Option`` name in lower case. String options take ``str`` (or a
    path), integer options ``int`` (``accept_invalid_certs`` also ``bool``,
    ``security`` a :class:`Security` or its name, e.g. ``"starttls"``). A value herald refuses raises
    :class:`HeraldError` with status INVALID_ARGUMENT at once.
    """

    def __init__(self, protocol: Union[str, Protocol] = Protocol.SMTP, **options):
        self.protocol = _protocol(protocol)
        self._h = _lib().herald_options_new(int(self.protocol))
        if not self._h:
            raise HeraldError(Status.INVALID_ARGUMENT, "unknown protocol %r" % protocol)
        for name, value in options.items():
            self.set(name, value)

    def set(self, option: Union[str, Option], value) -> "Options":
        """Sets one option by ``Option`` or its lower-case name."""
        if isinstance(option, str):
            try:
                option = Option[option.upper()]
            except KeyError:
                raise TypeError("unknown herald option %r" % option) from None
        else:
            option = Option(option)
        L = _lib()
        if option == Option.SECURITY and isinstance(value, str):
            try:
                value = Security[value.upper()]
            except KeyError:
                raise HeraldError(Status.INVALID_ARGUMENT, "unknown security %r" % value) from None
        if option in _INT_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, int):
                if not (isinstance(value, bool) and option == Option.ACCEPT_INVALID_CERTS):
                    raise TypeError("option %s takes an int" % option.name.lower())
            _check(L.herald_options_set_int(self._h, int(option), int(value)))
        else:
            _check(L.herald_options_set_str(self._h, int(option), _cstr(value, option.name.lower())))
        return self

    def close(self):
        h, self._h = self._h, None
        if h:
            _lib().herald_options_free(h)

    def __del__(self):
        try:
            self.close()
        except BaseException:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------


class Message:
    """``herald_message``: a message being composed.

    ``Message(from_="Me <me@example.org>", to=["you@example.org"],
    subject="Hi", text="Hello")``; or call the setters. Each setter checks
    its input at once (CR/LF in an address, a malformed mailbox, a NUL) and
    raises HeraldError(INVALID_ARGUMENT) leaving the message unchanged.
    """

    def __init__(
        self,
        from_: Optional[str] = None,
        to: Iterable[str] = (),
        cc: Iterable[str] = (),
        bcc: Iterable[str] = (),
        subject: Optional[str] = None,
        text: Optional[str] = None,
        html: Optional[str] = None,
        headers: Optional[dict] = None,
    ):
        self._h = _lib().herald_message_new()
        if not self._h:
            raise HeraldError(Status.PANIC, "herald_message_new failed")
        if from_ is not None:
            self.set_from(from_)
        for a in [to] if isinstance(to, str) else to:
            self.add_to(a)
        for a in [cc] if isinstance(cc, str) else cc:
            self.add_cc(a)
        for a in [bcc] if isinstance(bcc, str) else bcc:
            self.add_bcc(a)
        if subject is not None:
            self.set_subject(subject)
        if text is not None:
            self.set_text(text)
        if html is not None:
            self.set_html(html)
        for k, v in (headers or {}).items():
            self.add_header(k, v)

    def _handle(self):
        if not self._h:
            raise HeraldError(Status.INVALID_ARGUMENT, "message is closed")
        return self._h

    def set_from(self, mailbox: str) -> "Message":
        _check(_lib().herald_message_set_from(self._handle(), _cstr(mailbox, "from")))
        return self

    def add_to(self, mailbox: str) -> "Message":
        _check(_lib().herald_message_add_to(self._handle(), _cstr(mailbox, "to")))
        return self

    def add_cc(self, mailbox: str) -> "Message":
        _check(_lib().herald_message_add_cc(self._handle(), _cstr(mailbox, "cc")))
        return self

    def add_bcc(self, mailbox: str) -> "Message":
        _check(_lib().herald_message_add_bcc(self._handle(), _cstr(mailbox, "bcc")))
        return self

    def set_subject(self, subject: str) -> "Message":
        _check(_lib().herald_message_set_subject(self._handle(), _cstr(subject, "subject")))
        return self

    def set_text(self, text: str) -> "Message":
        _check(_lib().herald_message_set_text(self._handle(), _cstr(text, "text")))
        return self

    def set_html(self, html: str) -> "Message":
        _check(_lib().herald_message_set_html(self._handle(), _cstr(html, "html")))
        return self

    def add_header(self, name: str, value: str) -> "Message":
        _check(
            _lib().herald_message_add_header(
                self._handle(), _cstr(name, "header name"), _cstr(value, "header value")
            )
        )
        return self

    def attach_file(self, path, content_type: Optional[str] = None) -> "Message":
        ct = None if content_type is None else _cstr(content_type, "content type")
        _check(_lib().herald_message_attach_file(self._handle(), _cstr(path, "path"), ct))
        return self

    def attach_bytes(self, filename: str, content_type: str, data: bytes) -> "Message":
        data = bytes(data)
        _check(
            _lib().herald_message_attach_bytes(
                self._handle(),
                _cstr(filename, "filename"),
                _cstr(content_type, "content type"),
                data if data else None,
                len(data),
            )
        )
        return self

    def to_bytes(self) -> bytes:
        """The message as RFC 5322 bytes, as a send would render it."""
        L = _lib()
        out = POINTER(c_uint8)()
        n = c_size_t(0)
        _check(L.herald_message_to_bytes(self._handle(), byref(out), byref(n)))
        try:
            return ctypes.string_at(out, n.value)
        finally:
            L.herald_bytes_free(out, n)

    def close(self):
        h, self._h = self._h, None
        if h:
            _lib().herald_message_free(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except BaseException:  # noqa: BLE001
            pass


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------

_live_clients = weakref.WeakSet()


class Client:
    """``herald_client``: a client of one server.

    ``Client("smtp", host=..., port=..., security=Security.NONE)`` takes the
    same keywords as :class:`Options` (or ``options=Options(...)``).

    ``mode="callback"`` (the default): completions arrive on herald's
    delivery thread, which resolves the op and calls its ``on_done``.
    ``mode="queue"``: ops are submitted without a callback, completions
    wait in the client's queue and are taken by :meth:`poll` (on the
    caller's thread, e.g. a GUI loop watching :meth:`wakeup_handle`) or by
    ``op.wait()``. :class:`herald.aio.AsyncClient` drives a queue-mode
    client from an asyncio loop.

    Every op method copies its inputs, returns an :class:`Op` at once, or
    raises :class:`HeraldError` when herald refuses the call (then no
    completion ever comes). Use as a context manager, or call
    :meth:`close`: it ends every op (queued ones cancelled, running ones
    aborted) and returns once each has its completion.
    """

    def __init__(self, protocol: Union[str, Protocol] = Protocol.SMTP, *, mode="callback",
                 options: Optional[Options] = None, **kwargs):
        if mode not in ("callback", "queue"):
            raise ValueError("mode must be 'callback' or 'queue'")
        self.mode = mode
        self._h = None
        self._closing = False  # close() started: no new ops
        self._freeing = False  # herald_client_free is next: no more C calls
        self._active = 0  # C calls on the handle under way (see _using)
        self._cv = threading.Condition()
        # ctypes thunks handed to herald: kept until the client is freed,
        # since herald may still be running one when it is replaced.
        self._thunks = []
        own = options is None
        if own:
            options = Options(protocol, **kwargs)
        elif kwargs:
            raise TypeError("pass either options= or option keywords, not both")
        self.protocol = options.protocol
        out = c_void_p()
        try:
            _check(_lib().herald_client_new(options._h, byref(out)))
        finally:
            if own:
                options.close()
        self._h = out.value
        _live_clients.add(self)

    # -- plumbing --

    @contextlib.contextmanager
    def _using(self):
        """The handle, for one short C call: close() waits for every such
        call to return before it frees the client, so no thread ever uses a
        freed client."""
        with self._cv:
            if self._freeing or not self._h:
                raise HeraldError(Status.SHUTDOWN, "client is closed")
            self._active += 1
            h = self._h
        try:
            yield h
        finally:
            with self._cv:
                self._active -= 1
                if not self._active:
                    self._cv.notify_all()

    def _submit(self, kind, convert, fn, *args, on_done=None, on_change=None, idle=False):
        if self._closing:
            raise HeraldError(Status.SHUTDOWN, "client is closing")
        op = Op(self, kind, convert, on_done, on_change)
        cb = _on_complete if self.mode == "callback" else _NO_CALLBACK
        out = _native.herald_op(0)
        with _pending_lock:
            _pending[op.token] = op
        try:
            with self._using() as h:
                if idle:
                    change = _on_idle_change if self.mode == "callback" else _NO_CALLBACK
                    status = fn(h, *args, change, cb, c_void_p(op.token), byref(out))
                else:
                    status = fn(h, *args, cb, c_void_p(op.token), byref(out))
        except BaseException:
            with _pending_lock:
                _pending.pop(op.token, None)
            raise
        if status != Status.OK:
            detail = last_error()
            with _pending_lock:
                _pending.pop(op.token, None)
            raise HeraldError(status, detail)
        op.id = int(out.value)
        return op

    def _pending_ops(self):
        with _pending_lock:
            return [op for op in _pending.values() if op.client is self]

    def _wait_for(self, op, timeout):
        if self.mode == "callback" and getattr(_in_callback, "active", False) and timeout != 0:
            # This thread delivers completions: the op cannot complete while
            # it waits here (herald_wait refuses the same).
            raise HeraldError(Status.INVALID_ARGUMENT,
                              "waiting for an op inside a completion callback would never end")
        deadline = None if timeout is None else time.monotonic() + timeout
        while not op._event.is_set():
            if op._completion is not None and self.mode == "queue":
                return  # completed on this thread (inside its on_done)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            if self.mode == "callback":
                op._event.wait(remaining)
            else:
                # Take completions from the queue in short slices, so that a
                # completion another thread takes for us is noticed soon.
                slice_s = 0.05 if remaining is None else min(0.05, remaining)
                if not self._freeing and self._h:
                    self._take(int(slice_s * 1000))
                else:  # being freed: close() completes the op
                    op._event.wait(slice_s)

    def _take(self, timeout_ms):
        """Takes at most one queued completion, waiting up to timeout_ms
        (-1: until one comes or the client is closed), and dispatches it.
        Waits in slices of 50 ms so that close() never waits long for it."""
        L = _lib()
        deadline = None if timeout_ms < 0 else time.monotonic() + timeout_ms / 1000.0
        while True:
            left = 50 if deadline is None else min(50, max(0, int((deadline - time.monotonic()) * 1000)))
            try:
                with self._using() as h:
                    cptr = L.herald_client_next(h, left)
            except HeraldError:
                return None  # closed
            if cptr:
                # outside _using: on_done may close the client
                try:
                    return _dispatch(cptr)
                finally:
                    L.herald_completion_free(cptr)  # valid after the client is freed
            if deadline is not None and time.monotonic() >= deadline:
                return None

    # -- queue mode --

    def wakeup_handle(self) -> int:
        """The fd (Windows: event HANDLE) readable while completions are queued."""
        with self._using() as h:
            return int(_lib().herald_client_wakeup_handle(h))

    def poll(self, timeout: float = 0) -> List[Op]:
        """Takes every queued completion (waiting up to ``timeout`` seconds
        for the first), resolves their ops and returns them."""
        done = []
        op = self._take(int(timeout * 1000) if timeout >= 0 else -1)
        while op is not None:
            done.append(op)
            op = self._take(0)
        return done

    # -- control --

    def cancel(self, op: Union[Op, int]) -> None:
        op_id = op.id if isinstance(op, Op) else int(op)
        with self._using() as h:
            status = _lib().herald_cancel(h, op_id)
        _check(status)

    def set_oauth2_token(self, token: str) -> None:
        """Replaces the OAuth2 token: the next login on every connection
        uses it (herald_client_set_oauth2_token)."""
        with self._using() as h:
            status = _lib().herald_client_set_oauth2_token(h, _cstr(token, "token"))
        _check(status)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until every op submitted so far completed (IDLE ops
        excepted); False on timeout. In queue mode their completions are
        taken and dispatched too."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.mode == "queue":
            for op in self._pending_ops():
                if op.kind == "imap_idle":
                    continue
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._wait_for(op, remaining)
                if not op.done():
                    return False
            return True
        # In slices, so that close() on another thread never waits long.
        while True:
            left = 50 if deadline is None else min(50, max(0, int((deadline - time.monotonic()) * 1000)))
            with self._using() as h:
                status = _lib().herald_client_flush(h, left)
            if status != Status.TIMEOUT:
                _check(status)
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def set_log(self, fn: Optional[Callable[[LogLevel, str], None]], level=LogLevel.INFO):
        """Calls ``fn(level, line)`` (on herald's threads) for log lines up
        to ``level``; None clears it. Passwords and tokens never appear."""
        if fn is None:
            with self._using() as h:
                _check(_lib().herald_client_set_log(h, 0, _native.LOG_CALLBACK(), None))
            return

        def trampoline(_user, lvl, line):
            try:
                fn(LogLevel(lvl) if lvl in LogLevel._value2member_map_ else lvl,
                   (line or b"").decode("utf-8", "replace"))
            except BaseException:  # noqa: BLE001
                _report_callback_error("log")

        cb = _native.LOG_CALLBACK(trampoline)
        self._thunks.append(cb)
        with self._using() as h:
            _check(_lib().herald_client_set_log(h, int(level), cb, None))

    def set_progress(self, fn: Optional[Callable[[Op, int, int], None]]):
        """Calls ``fn(op, done, total)`` (on worker threads) as bytes move."""
        if fn is None:
            with self._using() as h:
                _check(_lib().herald_client_set_progress(h, _native.PROGRESS_CALLBACK()))
            return

        def trampoline(_op_id, token, done, total):
            try:
                with _pending_lock:
                    op = _pending.get(token or 0)
                if op is not None:
                    fn(op, int(done), int(total))
            except BaseException:  # noqa: BLE001
                _report_callback_error("progress")

        cb = _native.PROGRESS_CALLBACK(trampoline)
        self._thunks.append(cb)
        with self._using() as h:
            _check(_lib().herald_client_set_progress(h, cb))

    def close(self, timeout: float = 30.0) -> None:
        """Ends every op and frees the client (idempotent). Queued ops
        complete cancelled, running ones are aborted; when this returns,
        every op of this client has its completion."""
        cv = getattr(self, "_cv", None)
        if cv is None:
            return  # __init__ failed early
        with cv:
            if not self._h or self._closing:
                return
            self._closing = True
        L = _lib()
        if self.mode == "queue":
            # Completions queued on a freed client are lost, so end and take
            # them first: cancel everything, then drain until all are in.
            deadline = time.monotonic() + timeout
            for op in self._pending_ops():
                try:
                    self.cancel(op)
                except HeraldError:
                    pass
            while self._pending_ops() and time.monotonic() < deadline:
                self._take(50)
        with cv:
            self._freeing = True
            while self._active:
                cv.wait()
            h, self._h = self._h, None
        L.herald_client_free(h)
        # Only a queue-mode client whose ops did not end within `timeout` can
        # leave ops here; they end as SHUTDOWN.
        for op in self._pending_ops():
            with _pending_lock:
                _pending.pop(op.token, None)
            op._complete(Completion(op.id, Status.SHUTDOWN, False, 0,
                                    "client closed before the op completed", False))
        self._thunks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except BaseException:  # noqa: BLE001
            pass

    # -- SMTP / PICKUP --

    def send(self, message: Message, *, on_done=None) -> Op:
        """Sends a :class:`Message`. Result: :class:`SendResult`."""
        return self._submit("send", _send_result, _lib().herald_send_async,
                            message._handle(), on_done=on_done)

    def send_raw(self, mail_from: str, rcpt_to: Sequence[str], data: bytes, *, on_done=None) -> Op:
        """Sends ``data`` (a complete RFC 5322 message) byte-exact from
        ``mail_from`` ("" for the null sender) to ``rcpt_to``."""
        arr, n, _keep = _cstr_array(rcpt_to, "recipient")
        data = bytes(data)
        return self._submit("send", _send_result, _lib().herald_send_raw_async,
                            _cstr(mail_from, "mail_from"), arr, n, data, len(data),
                            on_done=on_done)

    # -- IMAP --

    def imap_list(self, pattern: str = "*", *, on_done=None) -> Op:
        """Result: list of Items (``name``, ``flags``)."""
        return self._submit("imap_list", _items, _lib().herald_imap_list_async,
                            _cstr(pattern, "pattern"), on_done=on_done)

    def imap_create(self, mailbox: str, *, on_done=None) -> Op:
        return self._submit("imap_create", _nothing, _lib().herald_imap_create_async,
                            _cstr(mailbox, "mailbox"), on_done=on_done)

    def imap_delete(self, mailbox: str, *, on_done=None) -> Op:
        return self._submit("imap_delete", _nothing, _lib().herald_imap_delete_async,
                            _cstr(mailbox, "mailbox"), on_done=on_done)

    def imap_search(self, mailbox: str, criteria: str = "ALL", *, on_done=None) -> Op:
        """Result: list of UIDs (ints), ascending."""
        return self._submit("imap_search", _uids, _lib().herald_imap_search_async,
                            _cstr(mailbox, "mailbox"), _cstr(criteria, "criteria"),
                            on_done=on_done)

    def imap_fetch(self, mailbox: str, uid_set: str = "1:*",
                   parts: Fetch = Fetch.FLAGS | Fetch.ENVELOPE | Fetch.SIZE | Fetch.BODY,
                   *, on_done=None) -> Op:
        """Result: list of Items in UID order (``uid``, ``subject``,
        ``from_``, ``to``, ``date``, ``message_id``, ``flags``, ``size``,
        ``data`` = the message or its header block)."""
        return self._submit("imap_fetch", _items, _lib().herald_imap_fetch_async,
                            _cstr(mailbox, "mailbox"), _cstr(uid_set, "uid_set"), int(parts),
                            on_done=on_done)

    def imap_append(self, mailbox: str, messages: Sequence[bytes], flags: Optional[str] = None,
                    *, on_done=None) -> Op:
        """Appends messages (bytes each) in one op. Result: their UIDs."""
        if isinstance(messages, (bytes, bytearray)):
            messages = [messages]
        msgs = [bytes(m) for m in messages]
        n = len(msgs)
        arr = (c_char_p * max(n, 1))(*msgs)
        lens = (c_size_t * max(n, 1))(*[len(m) for m in msgs])
        fl = None if flags is None else _cstr(flags, "flags")
        return self._submit("imap_append", _uids, _lib().herald_imap_append_async,
                            _cstr(mailbox, "mailbox"), arr, lens, n, fl, on_done=on_done)

    def imap_store(self, mailbox: str, uid_set: str, mode: StoreMode, flags: str,
                   *, on_done=None) -> Op:
        return self._submit("imap_store", _items, _lib().herald_imap_store_async,
                            _cstr(mailbox, "mailbox"), _cstr(uid_set, "uid_set"),
                            int(mode), _cstr(flags, "flags"), on_done=on_done)

    def imap_copy(self, mailbox: str, uid_set: str, target: str, *, on_done=None) -> Op:
        return self._submit("imap_copy", _items, _lib().herald_imap_copy_async,
                            _cstr(mailbox, "mailbox"), _cstr(uid_set, "uid_set"),
                            _cstr(target, "target"), on_done=on_done)

    def imap_move(self, mailbox: str, uid_set: str, target: str, *, on_done=None) -> Op:
        return self._submit("imap_move", _items, _lib().herald_imap_move_async,
                            _cstr(mailbox, "mailbox"), _cstr(uid_set, "uid_set"),
                            _cstr(target, "target"), on_done=on_done)

    def imap_expunge(self, mailbox: str, *, on_done=None) -> Op:
        return self._submit("imap_expunge", _items, _lib().herald_imap_expunge_async,
                            _cstr(mailbox, "mailbox"), on_done=on_done)

    def imap_idle(self, mailbox: str, on_change: Callable[[Optional[Item]], None],
                  *, on_done=None) -> Op:
        """Watches ``mailbox``: ``on_change(item)`` (``item.exists`` = the
        message count) on each change, until :meth:`cancel` (the op then
        completes cancelled). Queue mode: changes are dispatched by
        :meth:`poll` like completions."""
        return self._submit("imap_idle", _nothing, _lib().herald_imap_idle_async,
                            _cstr(mailbox, "mailbox"), on_done=on_done, on_change=on_change,
                            idle=True)

    # -- POP3 --

    def pop3_list(self, *, on_done=None) -> Op:
        """Result: list of Items (``uid`` = message number, ``uidl``, ``size``)."""
        return self._submit("pop3_list", _items, _lib().herald_pop3_list_async, on_done=on_done)

    def pop3_retrieve(self, uidl: str, *, on_done=None) -> Op:
        """Result: one Item, ``data`` = the message byte-exact."""
        return self._submit("pop3_retrieve", _one_item, _lib().herald_pop3_retrieve_async,
                            _cstr(uidl, "uidl"), on_done=on_done)

    def pop3_top(self, uidl: str, lines: int, *, on_done=None) -> Op:
        return self._submit("pop3_top", _one_item, _lib().herald_pop3_top_async,
                            _cstr(uidl, "uidl"), int(lines), on_done=on_done)

    def pop3_delete(self, uidls: Sequence[str], *, on_done=None) -> Op:
        """Deletes and commits. Result: Items of the messages deleted."""
        arr, n, _keep = _cstr_array(uidls, "uidl")
        return self._submit("pop3_delete", _items, _lib().herald_pop3_delete_async, arr, n,
                            on_done=on_done)


def _close_all_at_exit():
    for c in list(_live_clients):
        try:
            c.close(timeout=5.0)
        except BaseException:  # noqa: BLE001
            pass


import atexit  # noqa: E402

atexit.register(_close_all_at_exit)
