"""herald: non-blocking SMTP, IMAP and POP3 over libherald's C API (ctypes).

>>> import herald
>>> herald.version()
'0.1.0'

See :class:`Client` (callbacks or a completion queue, ``op.wait()`` /
``op.result()``), :class:`herald.aio.AsyncClient` (asyncio), :class:`Message`,
:class:`Options` and the enums in :mod:`herald.constants`.
"""

from .constants import *  # noqa: F401,F403
from .constants import Fetch, Field, LogLevel, Option, Protocol, Security, Spool, Status, StoreMode, StreamLimit
from .core import (
    CancelledError,
    Client,
    Completion,
    HeraldError,
    Item,
    Message,
    Op,
    Options,
    SendResult,
    last_error,
    status_str,
    version,
    version_number,
)
from ._native import candidates as library_candidates


def library_path() -> str:
    """The path (or name) libherald was loaded from."""
    from ._native import lib

    return lib().path


__all__ = [
    "CancelledError",
    "Client",
    "Completion",
    "Fetch",
    "Field",
    "HeraldError",
    "Item",
    "LogLevel",
    "Message",
    "Op",
    "Option",
    "Options",
    "Protocol",
    "Security",
    "SendResult",
    "Spool",
    "Status",
    "StoreMode",
    "StreamLimit",
    "last_error",
    "library_candidates",
    "library_path",
    "status_str",
    "version",
    "version_number",
]
