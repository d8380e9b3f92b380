"""asyncio integration: awaitable herald ops.

:class:`AsyncClient` runs a queue-mode :class:`herald.Client` from an
asyncio event loop: ``loop.add_reader`` watches the client's wakeup fd
(readable exactly while completions are queued), and the loop thread takes
them with ``herald_client_next(c, 0)`` and resolves each op's future. No
herald callback runs Python code on another thread.

::

    async with AsyncClient("smtp", host="127.0.0.1", port=2525,
                           security=Security.NONE) as client:
        result = await client.send(Message(from_="a@x", to=["b@y"], text="hi"))

Every method of :class:`herald.Client` that starts an op exists here as a
coroutine returning the op's typed value (or raising HeraldError).
Cancelling the awaiting task cancels the herald op.
"""

import asyncio
import sys

from .core import Client, HeraldError, Status, _error_from_completion

__all__ = ["AsyncClient"]

_OP_METHODS = [
    "send",
    "send_raw",
    "imap_list",
    "imap_create",
    "imap_delete",
    "imap_search",
    "imap_fetch",
    "imap_append",
    "imap_store",
    "imap_copy",
    "imap_move",
    "imap_expunge",
    "pop3_list",
    "pop3_retrieve",
    "pop3_top",
    "pop3_delete",
]


class AsyncClient:
    """A herald client driven by an asyncio loop (the running one by default).

    Takes the same arguments as :class:`herald.Client` (except ``mode``).
    Create it inside a running loop; close it with ``await aclose()`` or
    ``async with``.
    """

    def __init__(self, protocol="smtp", *, loop=None, **kwargs):
        if sys.platform == "win32":
            raise NotImplementedError("AsyncClient needs a file descriptor; on Windows use Client")
        self._loop = loop or asyncio.get_running_loop()
        self.client = Client(protocol, mode="queue", **kwargs)
        self._fd = self.client.wakeup_handle()
        self._loop.add_reader(self._fd, self._drain)
        self._reading = True

    def _drain(self):
        # Level-triggered: take everything queued now; the fd stays readable
        # while completions remain.
        try:
            self.client.poll(0)
        except Exception:  # noqa: BLE001 - keep the loop's reader alive
            from .core import _report_callback_error

            _report_callback_error("asyncio drain")

    async def _await(self, op):
        fut = self._loop.create_future()

        def done(o):
            # Ops are dispatched on the loop thread (by _drain), except when
            # someone else polls the client: then hop over safely.
            if self._loop.is_closed():
                return
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                _settle(fut, o)
            else:
                self._loop.call_soon_threadsafe(_settle, fut, o)

        op.add_done_callback(done)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The op's outcome is no longer awaited: retrieve it when it comes
            # so asyncio does not warn about an unretrieved exception.
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            if not op.done():
                try:
                    self.client.cancel(op)
                except HeraldError:
                    pass
            raise

    def __getattr__(self, name):
        if name not in _OP_METHODS:
            raise AttributeError(name)
        method = getattr(self.client, name)

        async def call(*args, **kwargs):
            return await self._await(method(*args, **kwargs))

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def submit(self, name, *args, **kwargs):
        """Starts an op (``name`` = a Client method) and returns the
        :class:`herald.Op`; await ``client.wait(op)`` for its value."""
        return getattr(self.client, name)(*args, **kwargs)

    async def wait(self, op):
        """The typed value of ``op`` (from :meth:`submit`), or HeraldError."""
        return await self._await(op)

    async def imap_idle(self, mailbox, on_change):
        """Starts IMAP IDLE; ``on_change(item)`` runs on the loop thread.
        Returns the :class:`herald.Op`: cancel it with ``op.cancel()``."""
        return self.client.imap_idle(mailbox, on_change)

    def cancel(self, op):
        self.client.cancel(op)

    async def aclose(self, timeout=30.0):
        """Cancels every op, waits for their completions on the loop, then
        frees the client."""
        if self._reading:
            pending = self.client._pending_ops()
            futs = []
            for op in pending:
                fut = self._loop.create_future()
                op.add_done_callback(lambda o, f=fut: f.done() or f.set_result(None))
                futs.append(fut)
                try:
                    self.client.cancel(op)
                except HeraldError:
                    pass
            if futs:
                await asyncio.wait(futs, timeout=timeout)
            self._loop.remove_reader(self._fd)
            self._reading = False
        self.client.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


def _settle(fut, op):
    if fut.done():
        return
    c = op.completion
    if c.status == Status.OK:
        try:
            fut.set_result(op._convert(c))
        except BaseException as e:  # noqa: BLE001
            fut.set_exception(e)
    else:
        fut.set_exception(_error_from_completion(c))
