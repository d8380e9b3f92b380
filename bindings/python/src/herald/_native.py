"""Loading libherald and declaring its C functions for ctypes.

The library is looked for, in this order:

1. bundled inside this package (``herald/libherald.so*``, ``herald.dll`` or
   ``libherald.dylib`` next to this file);
2. the path in the environment variable ``HERALD_LIB``;
3. the system's library path: ``ctypes.util.find_library("herald")``, then
   ``libherald.so.0`` and ``libherald.so`` (``herald.dll`` on Windows,
   ``libherald.dylib`` on macOS).
"""

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

herald_status = c_uint32
herald_op = c_uint64


class Completion(Structure):
    """``herald_completion``, field for field."""

    _fields_ = [
        ("op", herald_op),
        ("status", herald_status),
        ("cancelled", c_int32),
        ("user_token", c_void_p),
        ("reply_code", c_int32),
        ("detail", c_char_p),
        ("result", c_void_p),
    ]


CompletionPtr = POINTER(Completion)
CALLBACK = CFUNCTYPE(None, CompletionPtr)
PROGRESS_CALLBACK = CFUNCTYPE(None, herald_op, c_void_p, c_uint64, c_uint64)
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p)
TOKEN_PROVIDER = CFUNCTYPE(herald_status, c_void_p, c_void_p)

_u8p = POINTER(c_uint8)
_op_out = POINTER(herald_op)
_cb_tail = [CALLBACK, c_void_p, _op_out]

# name: (restype, argtypes)
_PROTOTYPES = {
    "herald_status_str": (c_char_p, [herald_status]),
    "herald_version": (c_char_p, []),
    "herald_last_error": (c_char_p, []),
    "herald_options_new": (c_void_p, [c_uint32]),
    "herald_options_set_str": (herald_status, [c_void_p, c_uint32, c_char_p]),
    "herald_options_set_int": (herald_status, [c_void_p, c_uint32, c_int64]),
    "herald_options_free": (None, [c_void_p]),
    "herald_client_new": (herald_status, [c_void_p, POINTER(c_void_p)]),
    "herald_client_free": (None, [c_void_p]),
    "herald_client_next": (CompletionPtr, [c_void_p, c_int32]),
    "herald_client_wakeup_handle": (c_int64, [c_void_p]),
    "herald_cancel": (herald_status, [c_void_p, herald_op]),
    "herald_wait": (herald_status, [c_void_p, herald_op, c_int32]),
    "herald_client_flush": (herald_status, [c_void_p, c_int32]),
    "herald_client_set_progress": (herald_status, [c_void_p, PROGRESS_CALLBACK]),
    "herald_client_set_log": (herald_status, [c_void_p, c_uint32, LOG_CALLBACK, c_void_p]),
    "herald_client_set_oauth2_token": (herald_status, [c_void_p, c_char_p]),
    "herald_client_set_oauth2_token_provider": (herald_status, [c_void_p, TOKEN_PROVIDER, c_void_p]),
    "herald_completion_free": (None, [CompletionPtr]),
    "herald_completion_is_item": (c_int32, [CompletionPtr]),
    "herald_message_new": (c_void_p, []),
    "herald_message_set_from": (herald_status, [c_void_p, c_char_p]),
    "herald_message_add_to": (herald_status, [c_void_p, c_char_p]),
    "herald_message_add_cc": (herald_status, [c_void_p, c_char_p]),
    "herald_message_add_bcc": (herald_status, [c_void_p, c_char_p]),
    "herald_message_set_subject": (herald_status, [c_void_p, c_char_p]),
    "herald_message_set_text": (herald_status, [c_void_p, c_char_p]),
    "herald_message_set_html": (herald_status, [c_void_p, c_char_p]),
    "herald_message_add_header": (herald_status, [c_void_p, c_char_p, c_char_p]),
    "herald_message_attach_file": (herald_status, [c_void_p, c_char_p, c_char_p]),
    "herald_message_attach_bytes": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_char_p, c_size_t],
    ),
    "herald_message_to_bytes": (herald_status, [c_void_p, POINTER(_u8p), POINTER(c_size_t)]),
    "herald_bytes_free": (None, [_u8p, c_size_t]),
    "herald_message_free": (None, [c_void_p]),
    "herald_send_async": (herald_status, [c_void_p, c_void_p] + _cb_tail),
    "herald_send_raw_async": (
        herald_status,
        [c_void_p, c_char_p, POINTER(c_char_p), c_size_t, c_char_p, c_size_t] + _cb_tail,
    ),
    "herald_imap_list_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_imap_create_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_imap_delete_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_imap_search_async": (herald_status, [c_void_p, c_char_p, c_char_p] + _cb_tail),
    "herald_imap_fetch_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_uint32] + _cb_tail,
    ),
    "herald_imap_append_async": (
        herald_status,
        [c_void_p, c_char_p, POINTER(c_char_p), POINTER(c_size_t), c_size_t, c_char_p]
        + _cb_tail,
    ),
    "herald_imap_store_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_int32, c_char_p] + _cb_tail,
    ),
    "herald_imap_copy_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_char_p] + _cb_tail,
    ),
    "herald_imap_move_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_char_p] + _cb_tail,
    ),
    "herald_imap_expunge_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_imap_idle_async": (herald_status, [c_void_p, c_char_p, CALLBACK] + _cb_tail),
    "herald_imap_fetch_stream_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_uint32, CALLBACK] + _cb_tail,
    ),
    "herald_imap_fetch_to_dir_async": (herald_status, [c_void_p, c_char_p, c_char_p, c_char_p] + _cb_tail),
    "herald_client_test_async": (herald_status, [c_void_p] + _cb_tail),
    "herald_pop3_list_async": (herald_status, [c_void_p] + _cb_tail),
    "herald_pop3_retrieve_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_pop3_top_async": (herald_status, [c_void_p, c_char_p, c_uint32] + _cb_tail),
    "herald_pop3_delete_async": (
        herald_status,
        [c_void_p, POINTER(c_char_p), c_size_t] + _cb_tail,
    ),
    "herald_result_count": (c_size_t, [c_void_p]),
    "herald_result_uid": (c_uint64, [c_void_p, c_size_t]),
    "herald_result_str": (c_char_p, [c_void_p, c_size_t, c_uint32]),
    "herald_result_int": (c_uint64, [c_void_p, c_size_t, c_uint32]),
    "herald_result_bytes": (c_void_p, [c_void_p, c_size_t, POINTER(c_size_t)]),
    "herald_result_parsed": (c_void_p, [c_void_p, c_size_t]),
    # out: a herald_part struct (pointers, then u64 size, u32 depth, size_t x3).
    "herald_result_part_count": (c_size_t, [c_void_p, c_size_t]),
    "herald_result_part": (herald_status, [c_void_p, c_size_t, c_size_t, c_void_p]),
    "herald_result_part_param": (
        c_char_p,
        [c_void_p, c_size_t, c_size_t, c_size_t, POINTER(c_char_p)],
    ),
    "herald_imap_fetch_section_async": (
        herald_status,
        [c_void_p, c_char_p, c_uint64, c_char_p, c_uint64, c_uint64] + _cb_tail,
    ),
    "herald_pop3_retrieve_parsed_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_parse": (herald_status, [c_char_p, c_size_t, POINTER(c_void_p)]),
    "herald_parsed_free": (None, [c_void_p]),
    "herald_parsed_subject": (c_char_p, [c_void_p]),
    "herald_parsed_text": (c_char_p, [c_void_p]),
    "herald_parsed_html": (c_char_p, [c_void_p]),
    "herald_parsed_header": (c_char_p, [c_void_p, c_char_p, c_size_t]),
    "herald_parsed_address_count": (c_size_t, [c_void_p, c_uint32]),
    "herald_parsed_address": (c_char_p, [c_void_p, c_uint32, c_size_t, POINTER(c_char_p)]),
    "herald_parsed_date": (c_int64, [c_void_p]),
    "herald_parsed_attachment_count": (c_size_t, [c_void_p]),
    # out: a herald_attachment struct.
    "herald_parsed_attachment": (herald_status, [c_void_p, c_size_t, c_void_p]),
    "herald_parsed_attachment_save": (herald_status, [c_void_p, c_size_t, c_char_p]),
}

# Functions that newer libraries have and older ones may lack: looked up with
# getattr, None when absent.
_OPTIONAL = {
    "herald_version_number": (c_uint32, []),
    "herald_imap_status_async": (herald_status, [c_void_p, c_char_p] + _cb_tail),
    "herald_imap_status_list_async": (
        herald_status,
        [c_void_p, POINTER(c_char_p), c_size_t] + _cb_tail,
    ),
    "herald_imap_fetch_changed_async": (
        herald_status,
        [c_void_p, c_char_p, c_char_p, c_uint32, c_uint64] + _cb_tail,
    ),
    "herald_result_mailbox_int": (c_uint64, [c_void_p, c_uint32]),
    "herald_send_spooled_async": (herald_status, [c_void_p, c_void_p, c_char_p] + _cb_tail),
    # decide: a herald_spool_decide function pointer (NULL: send everything).
    "herald_spool_recover": (
        herald_status,
        [c_void_p, c_void_p, c_void_p, CALLBACK, c_void_p, POINTER(c_size_t)],
    ),
    "herald_send_batch_async": (
        herald_status,
        [c_void_p, POINTER(c_void_p), c_size_t, CALLBACK, POINTER(c_void_p), _op_out, POINTER(c_size_t)],
    ),
}

_HERE = os.path.dirname(os.path.abspath(__file__))


def _bundled_names():
    if sys.platform == "win32":
        return ["herald.dll"]
    if sys.platform == "darwin":
        return ["libherald.dylib", "libherald.0.dylib"]
    return ["libherald.so.0", "libherald.so"]


def candidates():
    """The paths and names tried, in order, as (where, name) pairs."""
    out = [("bundled", os.path.join(_HERE, n)) for n in _bundled_names()]
    env = os.environ.get("HERALD_LIB")
    if env:
        out.append(("HERALD_LIB", env))
    found = ctypes.util.find_library("herald")
    if found:
        out.append(("system", found))
    for n in _bundled_names():
        out.append(("system", n))
    return out


class _Lib:
    """The loaded library with its prototypes declared."""

    def __init__(self, cdll, path):
        self.path = path
        self.cdll = cdll
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(cdll, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        for name, (restype, argtypes) in _OPTIONAL.items():
            fn = getattr(cdll, name, None)
            if fn is not None:
                fn.restype = restype
                fn.argtypes = argtypes
            setattr(self, name, fn)


_lock = threading.Lock()
_loaded = None


def lib():
    """The library, loaded on first use. Raises ImportError if none is found."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        errors = []
        for where, path in candidates():
            if where == "bundled" and not os.path.exists(path):
                continue
            try:
                cdll = ctypes.CDLL(path)
            except OSError as e:
                errors.append("%s %s: %s" % (where, path, e))
                if where != "system":
                    # an explicit choice that fails is an error, not a reason
                    # to load some other copy silently
                    raise ImportError("cannot load libherald: " + "; ".join(errors)) from e
                continue
            _loaded = _Lib(cdll, path)
            return _loaded
        raise ImportError(
            "cannot find libherald (set HERALD_LIB to its path, or install it "
            "on the library path); tried: " + "; ".join(errors)
        )
