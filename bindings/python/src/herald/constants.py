"""Every numeric constant of ``include/herald.h``, as Python enums.

The values are copied from the header (tests/test_constants.py parses the
header and fails on any difference or omission). Each enum member is also
available under its C name, e.g. ``HERALD_STATUS_OK`` or
``HERALD_OPT_HOST``, at module level.
"""

from enum import IntEnum, IntFlag

__all__ = [
    "Status",
    "Protocol",
    "Option",
    "Security",
    "Field",
    "Fetch",
    "LogLevel",
    "StoreMode",
    "AddrRole",
    "StreamLimit",
    "Spool",
]


class Status(IntEnum):
    """``herald_status``: the status of a call or of an op's completion."""

    OK = 0
    INVALID_ARGUMENT = 1
    CONNECT = 2
    TLS = 3
    AUTH = 4
    REJECTED = 5
    TRANSIENT = 6
    PROTOCOL = 7
    TIMEOUT = 8
    IO = 9
    CANCELLED = 10
    SHUTDOWN = 11
    NOT_FOUND = 12
    UNSUPPORTED = 13
    PANIC = 14
    LIMIT = 15


class Protocol(IntEnum):
    """``HERALD_PROTOCOL_*``: what a client speaks."""

    SMTP = 1
    IMAP = 2
    POP3 = 3
    PICKUP = 4


class Option(IntEnum):
    """``HERALD_OPT_*``: option ids for ``herald_options_set_str/_int``."""

    HOST = 1
    PORT = 2
    SECURITY = 3
    USERNAME = 4
    PASSWORD = 5
    OAUTH2_TOKEN = 6
    MAX_CONNECTIONS = 7
    CONNECT_TIMEOUT_MS = 8
    IO_TIMEOUT_MS = 9
    IDLE_TIMEOUT_MS = 10
    ACCEPT_INVALID_CERTS = 11
    CA_FILE = 12
    HELO_NAME = 13
    PICKUP_DIR = 14
    THROTTLE_MESSAGES = 15
    THROTTLE_INTERVAL_MS = 16
    QUEUE_LIMIT = 17
    OP_TIMEOUT_MS = 18
    MAX_LINE_BYTES = 19
    MAX_MESSAGE_BYTES = 20
    TLS_PIN_SHA256 = 21
    TLS_MIN_VERSION = 22
    CLIENT_CERT_FILE = 23
    CLIENT_KEY_FILE = 24
    PROXY = 25
    KEEPALIVE_S = 26
    SPOOL_DIR = 27
    SPOOL_SYNC = 28
    SPOOL_MAX_MESSAGES = 29
    SPOOL_MAX_BYTES = 30


class Security(IntEnum):
    """``HERALD_SECURITY_*``: values of ``Option.SECURITY``."""

    NONE = 0
    STARTTLS = 1
    IMPLICIT_TLS = 2
    STARTTLS_IF_AVAILABLE = 3


class Field(IntEnum):
    """``HERALD_FIELD_*``: fields of a result item."""

    NAME = 1
    SUBJECT = 2
    FROM = 3
    TO = 4
    DATE = 5
    MESSAGE_ID = 6
    FLAGS = 7
    SIZE = 8
    EXISTS = 9
    REPLY_CODE = 10
    REPLY_TEXT = 11
    CC = 21
    REPLY_TO = 22
    IN_REPLY_TO = 23
    REFERENCES = 24
    INTERNALDATE = 25
    BCC = 26
    SENDER = 27
    DATE_UNIX = 28
    INDEX = 50
    COUNT = 51
    CERT_SHA256 = 40
    CERT_SUBJECT = 41
    CERT_ISSUER = 42
    CERT_NOT_BEFORE = 43
    CERT_NOT_AFTER = 44
    CAPABILITIES = 45
    SECURITY = 46
    AUTH_MECHANISM = 47
    UIDVALIDITY = 12
    UIDNEXT = 13
    HIGHESTMODSEQ = 14
    MESSAGES = 15
    UNSEEN = 16
    VANISHED = 17
    MODSEQ = 18
    SPECIAL_USE = 19
    EXPUNGED = 20
    SOURCE_UID = 60
    TRUNCATED = 61
    SPOOL_ID = 55
    SPOOL_STATE = 56


class Fetch(IntFlag):
    """``HERALD_FETCH_*``: the ``parts`` of an IMAP fetch."""

    FLAGS = 1
    ENVELOPE = 2
    SIZE = 4
    HEADERS = 8
    BODY = 16
    PARSED = 32
    BODYSTRUCTURE = 64
    MODSEQ = 128


class StreamLimit(IntEnum):
    """``HERALD_STREAM_*``: what a streaming fetch holds for a slow caller before it pauses reading."""

    MAX_HELD_ITEMS = 16
    MAX_HELD_BYTES = 2097152


class LogLevel(IntEnum):
    """``HERALD_LOG_*``: log levels, most severe first."""

    ERROR = 1
    WARN = 2
    INFO = 3
    DEBUG = 4
    TRACE = 5


class StoreMode(IntEnum):
    """The ``mode`` of ``herald_imap_store_async``: 1 adds, -1 removes, 0 replaces."""

    ADD = 1
    REMOVE = -1
    REPLACE = 0


class AddrRole(IntEnum):
    """``HERALD_ADDR_*``: address roles of a parsed message (``herald_parsed_address``)."""

    FROM = 1
    TO = 2
    CC = 3
    BCC = 4
    REPLY_TO = 5
    SENDER = 6


class Spool(IntEnum):
    """``HERALD_SPOOL_*``: a recovered message's state, and the answers of
    ``herald_spool_recover``'s decide callback."""

    PENDING = 1
    UNKNOWN_OUTCOME = 2
    SEND = 0
    DROP = 1
    KEEP = 2


# The C names: HERALD_<GROUP>_<MEMBER>, one enum per group.
C_GROUPS = {
    "STATUS": Status,
    "PROTOCOL": Protocol,
    "OPT": Option,
    "SECURITY": Security,
    "FIELD": Field,
    "FETCH": Fetch,
    "LOG": LogLevel,
    "STORE": StoreMode,
    "ADDR": AddrRole,
    "STREAM": StreamLimit,
    "SPOOL": Spool,
}

C_NAMES = {}
for _group, _enum in C_GROUPS.items():
    # __members__ includes aliases (Spool's states and decisions share values).
    for _name, _member in _enum.__members__.items():
        C_NAMES["HERALD_%s_%s" % (_group, _name)] = int(_member)
globals().update(C_NAMES)
__all__ += sorted(C_NAMES)
del _group, _enum, _name, _member
