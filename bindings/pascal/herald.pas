(*
  herald: Free Pascal and Delphi binding of libherald's C API (include/herald.h).

  Non-blocking SMTP, IMAP and POP3: every *_async call copies its inputs,
  returns at once and, when it returns HERALD_STATUS_OK, leads to exactly one
  completion, delivered to a callback (on herald's delivery thread) or, with
  cb = nil, queued on the client (herald_client_next, herald_client_wakeup_handle).
  The rules are the C API's: see include/herald.h and README.md.

  IMPORTANT (Free Pascal on Unix): callbacks run on herald's own threads, so a
  program must use the cthreads unit, FIRST in its uses clause:

      program myprog;
      uses {$IFDEF FPC}{$IFDEF UNIX} cthreads, {$ENDIF}{$ENDIF} herald;

  Without it FPC's RTL is not thread-safe and the program may crash.

  Linking: FPC links against libherald.so (-lherald: pass -Fl<dir of the
  library>, and make it findable at run time); Delphi for Windows loads
  herald.dll (cdecl, undecorated exports), Delphi for Linux libherald.so.

  Every constant and function of herald.h is here with its C name (and
  value); bindings/pascal/tests/check_header.py checks them against the
  header. herald_version_number() = HeraldHeaderVersionNumber tells that
  the library loaded is the one this unit was written for.
*)
unit herald;

{$IFDEF FPC}
  {$MODE DELPHI}
  {$PACKRECORDS C}
{$ELSE}
  {$ALIGN 8}
  {$MINENUMSIZE 4}
{$ENDIF}

interface

const
{$IFDEF MSWINDOWS}
  HeraldLib = 'herald.dll';
{$ELSE}
  {$IFDEF DARWIN}
  HeraldLib = 'libherald.dylib';
  {$ELSE}
    {$IFDEF FPC}
  HeraldLib = 'herald';  { FPC links -lherald, i.e. libherald.so }
    {$ELSE}
  HeraldLib = 'libherald.so';
    {$ENDIF}
  {$ENDIF}
{$ENDIF}

const
  { Version of the header this unit was written from (herald_version() gives
    the library's). C's HERALD_VERSION: renamed, since Pascal names are not
    case-sensitive and herald_version is the function. }
  HeraldHeaderVersion = '0.1.0';
  { C's HERALD_VERSION_NUMBER: MAJOR * 1000000 + MINOR * 1000 + PATCH. }
  HeraldHeaderVersionNumber = 1000;
  HERALD_VERSION_MAJOR = 0;
  HERALD_VERSION_MINOR = 1;
  HERALD_VERSION_PATCH = 0;

  { Log levels (herald_client_set_log). }
  HERALD_LOG_ERROR = 1;
  HERALD_LOG_WARN = 2;
  HERALD_LOG_INFO = 3;
  HERALD_LOG_DEBUG = 4;
  HERALD_LOG_TRACE = 5;

  { The parts of an IMAP fetch (herald_imap_fetch_async), OR-ed. }
  HERALD_FETCH_FLAGS = 1;
  HERALD_FETCH_ENVELOPE = 2;
  HERALD_FETCH_SIZE = 4;
  HERALD_FETCH_HEADERS = 8;
  HERALD_FETCH_BODY = 16;
  HERALD_FETCH_PARSED = 32;
  HERALD_FETCH_BODYSTRUCTURE = 64;

  { Address roles of a parsed message (herald_parsed_address). }
  HERALD_ADDR_FROM = 1;
  HERALD_ADDR_TO = 2;
  HERALD_ADDR_CC = 3;
  HERALD_ADDR_BCC = 4;
  HERALD_ADDR_REPLY_TO = 5;
  HERALD_ADDR_SENDER = 6;
  HERALD_FETCH_MODSEQ = 128;

  { Protocols (herald_options_new). }
  HERALD_PROTOCOL_SMTP = 1;
  HERALD_PROTOCOL_IMAP = 2;
  HERALD_PROTOCOL_POP3 = 3;
  HERALD_PROTOCOL_PICKUP = 4;

  { Option ids (herald_options_set_str / _set_int). }
  HERALD_OPT_HOST = 1;
  HERALD_OPT_PORT = 2;
  HERALD_OPT_SECURITY = 3;
  HERALD_OPT_USERNAME = 4;
  HERALD_OPT_PASSWORD = 5;
  HERALD_OPT_OAUTH2_TOKEN = 6;
  HERALD_OPT_MAX_CONNECTIONS = 7;
  HERALD_OPT_CONNECT_TIMEOUT_MS = 8;
  HERALD_OPT_IO_TIMEOUT_MS = 9;
  HERALD_OPT_IDLE_TIMEOUT_MS = 10;
  HERALD_OPT_ACCEPT_INVALID_CERTS = 11;
  HERALD_OPT_CA_FILE = 12;
  HERALD_OPT_HELO_NAME = 13;
  HERALD_OPT_PICKUP_DIR = 14;
  HERALD_OPT_THROTTLE_MESSAGES = 15;
  HERALD_OPT_THROTTLE_INTERVAL_MS = 16;
  HERALD_OPT_QUEUE_LIMIT = 17;
  HERALD_OPT_OP_TIMEOUT_MS = 18;
  HERALD_OPT_MAX_LINE_BYTES = 19;
  HERALD_OPT_MAX_MESSAGE_BYTES = 20;
  HERALD_OPT_TLS_PIN_SHA256 = 21;
  HERALD_OPT_TLS_MIN_VERSION = 22;
  HERALD_OPT_CLIENT_CERT_FILE = 23;
  HERALD_OPT_CLIENT_KEY_FILE = 24;
  HERALD_OPT_PROXY = 25;
  HERALD_OPT_KEEPALIVE_S = 26;
  HERALD_OPT_SPOOL_DIR = 27;
  HERALD_OPT_SPOOL_SYNC = 28;
  HERALD_OPT_SPOOL_MAX_MESSAGES = 29;
  HERALD_OPT_SPOOL_MAX_BYTES = 30;

  { Values of HERALD_OPT_SECURITY. }
  HERALD_SECURITY_NONE = 0;
  HERALD_SECURITY_STARTTLS = 1;
  HERALD_SECURITY_IMPLICIT_TLS = 2;
  HERALD_SECURITY_STARTTLS_IF_AVAILABLE = 3;

  { Fields of a result item (herald_result_str / _int). }
  HERALD_FIELD_NAME = 1;
  HERALD_FIELD_SUBJECT = 2;
  HERALD_FIELD_FROM = 3;
  HERALD_FIELD_TO = 4;
  HERALD_FIELD_DATE = 5;
  HERALD_FIELD_MESSAGE_ID = 6;
  HERALD_FIELD_FLAGS = 7;
  HERALD_FIELD_SIZE = 8;
  HERALD_FIELD_EXISTS = 9;
  HERALD_FIELD_REPLY_CODE = 10;
  HERALD_FIELD_REPLY_TEXT = 11;
  HERALD_FIELD_CC = 21;
  HERALD_FIELD_REPLY_TO = 22;
  HERALD_FIELD_IN_REPLY_TO = 23;
  HERALD_FIELD_REFERENCES = 24;
  HERALD_FIELD_INTERNALDATE = 25;
  HERALD_FIELD_BCC = 26;
  HERALD_FIELD_SENDER = 27;
  HERALD_FIELD_DATE_UNIX = 28;
  { int: an item's 1-based place (a streamed message's order of arrival). }
  HERALD_FIELD_INDEX = 50;
  { int: how many items a streaming fetch delivered (its final completion). }
  HERALD_FIELD_COUNT = 51;

  { What a streaming fetch holds for a slow caller before it pauses reading. }
  HERALD_STREAM_MAX_HELD_ITEMS = 16;
  HERALD_STREAM_MAX_HELD_BYTES = 2097152;
  HERALD_FIELD_CERT_SHA256 = 40;
  HERALD_FIELD_CERT_SUBJECT = 41;
  HERALD_FIELD_CERT_ISSUER = 42;
  HERALD_FIELD_CERT_NOT_BEFORE = 43;
  HERALD_FIELD_CERT_NOT_AFTER = 44;
  HERALD_FIELD_CAPABILITIES = 45;
  HERALD_FIELD_SECURITY = 46;
  HERALD_FIELD_AUTH_MECHANISM = 47;
  { IMAP sync state (see the header's HERALD_FIELD_UIDVALIDITY). }
  HERALD_FIELD_UIDVALIDITY = 12;
  HERALD_FIELD_UIDNEXT = 13;
  HERALD_FIELD_HIGHESTMODSEQ = 14;
  HERALD_FIELD_MESSAGES = 15;
  HERALD_FIELD_UNSEEN = 16;
  HERALD_FIELD_VANISHED = 17;
  HERALD_FIELD_MODSEQ = 18;
  HERALD_FIELD_SPECIAL_USE = 19;
  HERALD_FIELD_EXPUNGED = 20;
  HERALD_FIELD_SOURCE_UID = 60;
  HERALD_FIELD_TRUNCATED = 61;
  HERALD_FIELD_SPOOL_ID = 55;
  HERALD_FIELD_SPOOL_STATE = 56;

  { The durable outbox (HERALD_OPT_SPOOL_DIR): recovered states, decisions. }
  HERALD_SPOOL_PENDING = 1;
  HERALD_SPOOL_UNKNOWN_OUTCOME = 2;
  HERALD_SPOOL_SEND = 0;
  HERALD_SPOOL_DROP = 1;
  HERALD_SPOOL_KEEP = 2;

  { Status codes (herald_status); never renumbered. }
  HERALD_STATUS_OK = 0;
  HERALD_STATUS_INVALID_ARGUMENT = 1;
  HERALD_STATUS_CONNECT = 2;
  HERALD_STATUS_TLS = 3;
  HERALD_STATUS_AUTH = 4;
  HERALD_STATUS_REJECTED = 5;
  HERALD_STATUS_TRANSIENT = 6;
  HERALD_STATUS_PROTOCOL = 7;
  HERALD_STATUS_TIMEOUT = 8;
  HERALD_STATUS_IO = 9;
  HERALD_STATUS_CANCELLED = 10;
  HERALD_STATUS_SHUTDOWN = 11;
  HERALD_STATUS_NOT_FOUND = 12;
  HERALD_STATUS_UNSUPPORTED = 13;
  HERALD_STATUS_PANIC = 14;
  HERALD_STATUS_LIMIT = 15;

  { The modes of herald_imap_store_async. }
  HERALD_STORE_ADD = 1;
  HERALD_STORE_REMOVE = -1;
  HERALD_STORE_REPLACE = 0;

type
  { A status code (HERALD_STATUS_*). }
  herald_status = UInt32;
  { An op id; 0 is never a valid op. }
  herald_op = UInt64;
  Pherald_op = ^herald_op;
  { size_t }
  herald_size = NativeUInt;
  Pherald_size = ^herald_size;

  { Opaque handles. }
  herald_client = record end;
  Pherald_client = ^herald_client;
  PPherald_client = ^Pherald_client;
  herald_options = record end;
  Pherald_options = ^herald_options;
  herald_message = record end;
  Pherald_message = ^herald_message;
  herald_result = record end;
  Pherald_result = ^herald_result;
  { A parsed message (herald_parse; or borrowed with herald_result_parsed). }
  herald_parsed = record end;
  Pherald_parsed = ^herald_parsed;
  PPherald_parsed = ^Pherald_parsed;

  { An attachment or inline part of a parsed message (herald_parsed_attachment);
    its pointers are owned by the herald_parsed. }
  herald_attachment = record
    filename: PAnsiChar;           { decoded (RFC 2047/2231), '' when none }
    content_type: PAnsiChar;       { 'image/png' }
    content_id: PAnsiChar;         { '' when none }
    is_inline: Int32;
    data: PByte;                   { decoded bytes }
    len: herald_size;
  end;
  Pherald_attachment = ^herald_attachment;

  { One node of a message's MIME structure (herald_result_part), pre-order. }
  herald_part = record
    section: PAnsiChar;            { '1.2', for herald_imap_fetch_section_async }
    media_type: PAnsiChar;
    subtype: PAnsiChar;
    disposition: PAnsiChar;
    filename: PAnsiChar;
    encoding: PAnsiChar;
    content_id: PAnsiChar;
    size: UInt64;
    depth: UInt32;
    parent: herald_size;           { High(herald_size) for the root }
    children: herald_size;
    param_count: herald_size;
  end;
  Pherald_part = ^herald_part;

  { An op's completion: the same layout as the C struct (checked by
    bindings/pascal/tests/layout.pas against a C program). Passed to a
    callback, it and every pointer in it are valid only during the callback.
    Taken with herald_client_next, it is the caller's until
    herald_completion_free. }
  herald_completion = record
    op: herald_op;
    status: herald_status;         { HERALD_STATUS_OK on success }
    cancelled: Int32;              { 1 iff cancelled; then status = HERALD_STATUS_CANCELLED }
    user_token: Pointer;           { as passed to the *_async call }
    reply_code: Int32;             { the last server reply code, 0 if none }
    detail: PAnsiChar;             { server text or local reason (UTF-8); never nil }
    result: Pherald_result;        { the op's result, nil when it has none }
  end;
  Pherald_completion = ^herald_completion;

  { Called once per op with its completion, on herald's delivery thread. }
  herald_callback = procedure(c: Pherald_completion); cdecl;
  { Progress of an op: bytes done of total. Called on a worker thread. }
  herald_progress_callback = procedure(op: herald_op; user_token: Pointer; done, total: UInt64); cdecl;
  { A log line (UTF-8, valid during the call), on whatever herald thread logs. }
  herald_log_callback = procedure(user: Pointer; level: UInt32; line: PAnsiChar); cdecl;
  herald_token_provider = function(c: Pherald_client; user: Pointer): herald_status; cdecl;

  { A message found in the spool, as herald_spool_recover's decide sees it
    (pointers valid during the call). }
  herald_spool_entry = record
    spool_id: PAnsiChar;
    message_id: PAnsiChar;
    mail_from: PAnsiChar;
    n_rcpt: herald_size;
    size: UInt64;
    state: UInt32;                 { HERALD_SPOOL_PENDING or _UNKNOWN_OUTCOME }
  end;
  Pherald_spool_entry = ^herald_spool_entry;
  { Returns HERALD_SPOOL_SEND, _DROP or _KEEP; on the calling thread. }
  herald_spool_decide = function(user: Pointer; entry: Pherald_spool_entry): UInt32; cdecl;

  { Delphi-style names for the same types. }
  THeraldStatus = herald_status;
  THeraldOp = herald_op;
  THeraldCompletion = herald_completion;
  PHeraldCompletion = Pherald_completion;
  THeraldCallback = herald_callback;

{ Library }
function herald_status_str(s: herald_status): PAnsiChar; cdecl; external HeraldLib;
function herald_version: PAnsiChar; cdecl; external HeraldLib;
function herald_version_number: UInt32; cdecl; external HeraldLib;
function herald_last_error: PAnsiChar; cdecl; external HeraldLib;

{ Options }
function herald_options_new(protocol: UInt32): Pherald_options; cdecl; external HeraldLib;
function herald_options_set_str(o: Pherald_options; option: UInt32; value: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_options_set_int(o: Pherald_options; option: UInt32; value: Int64): herald_status; cdecl; external HeraldLib;
procedure herald_options_free(o: Pherald_options); cdecl; external HeraldLib;

{ Client }
function herald_client_new(o: Pherald_options; out_: PPherald_client): herald_status; cdecl; external HeraldLib;
procedure herald_client_free(c: Pherald_client); cdecl; external HeraldLib;
function herald_client_next(c: Pherald_client; timeout_ms: Int32): Pherald_completion; cdecl; external HeraldLib;
function herald_client_wakeup_handle(c: Pherald_client): Int64; cdecl; external HeraldLib;
function herald_cancel(c: Pherald_client; op: herald_op): herald_status; cdecl; external HeraldLib;
function herald_wait(c: Pherald_client; op: herald_op; timeout_ms: Int32): herald_status; cdecl; external HeraldLib;
function herald_client_flush(c: Pherald_client; timeout_ms: Int32): herald_status; cdecl; external HeraldLib;
function herald_client_set_progress(c: Pherald_client; cb: herald_progress_callback): herald_status; cdecl; external HeraldLib;
function herald_client_set_oauth2_token(c: Pherald_client; token: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_client_set_oauth2_token_provider(c: Pherald_client; cb: herald_token_provider; user: Pointer): herald_status; cdecl; external HeraldLib;
function herald_client_set_log(c: Pherald_client; max_level: UInt32; cb: herald_log_callback; user: Pointer): herald_status; cdecl; external HeraldLib;
procedure herald_completion_free(c: Pherald_completion); cdecl; external HeraldLib;
{ 1 if c is an item of a streaming fetch, 0 if it is a completion. }
function herald_completion_is_item(c: Pherald_completion): Int32; cdecl; external HeraldLib;

{ IMAP }
function herald_imap_list_async(c: Pherald_client; pattern: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_create_async(c: Pherald_client; mailbox: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_delete_async(c: Pherald_client; mailbox: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_search_async(c: Pherald_client; mailbox, criteria: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_fetch_async(c: Pherald_client; mailbox, uid_set: PAnsiChar; parts: UInt32; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_fetch_changed_async(c: Pherald_client; mailbox, uid_set: PAnsiChar; parts: UInt32; changed_since_modseq: UInt64; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_status_async(c: Pherald_client; mailbox: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_status_list_async(c: Pherald_client; mailboxes: PPAnsiChar; n: herald_size; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ messages: an array of n pointers to the messages' bytes; lens: their n lengths. }
function herald_imap_append_async(c: Pherald_client; mailbox: PAnsiChar; messages: PPointer; lens: Pherald_size; n: herald_size; flags: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_store_async(c: Pherald_client; mailbox, uid_set: PAnsiChar; mode: Int32; flags: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_copy_async(c: Pherald_client; mailbox, uid_set, target: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_move_async(c: Pherald_client; mailbox, uid_set, target: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_expunge_async(c: Pherald_client; mailbox: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_fetch_section_async(c: Pherald_client; mailbox: PAnsiChar; uid: UInt64; section: PAnsiChar; offset, max_len: UInt64; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_imap_idle_async(c: Pherald_client; mailbox: PAnsiChar; on_change, cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ Streaming fetch: one item per message to on_item (or the queue when nil), then one completion. }
function herald_imap_fetch_stream_async(c: Pherald_client; mailbox, uid_set: PAnsiChar; parts: UInt32; on_item, cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ Writes each message to dir/<UID>.eml; the result lists the files. }
function herald_imap_fetch_to_dir_async(c: Pherald_client; mailbox, uid_set, dir: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;

{ Messages }
function herald_message_new: Pherald_message; cdecl; external HeraldLib;
function herald_message_set_from(m: Pherald_message; mailbox: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_add_to(m: Pherald_message; mailbox: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_add_cc(m: Pherald_message; mailbox: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_add_bcc(m: Pherald_message; mailbox: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_set_subject(m: Pherald_message; utf8: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_set_text(m: Pherald_message; utf8: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_set_html(m: Pherald_message; utf8: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_add_header(m: Pherald_message; name, value: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_attach_file(m: Pherald_message; path, content_type: PAnsiChar): herald_status; cdecl; external HeraldLib;
function herald_message_attach_bytes(m: Pherald_message; filename, content_type: PAnsiChar; data: PByte; len: herald_size): herald_status; cdecl; external HeraldLib;
{ out_: receives a new buffer (free it with herald_bytes_free(p, len)); len: its length. }
function herald_message_to_bytes(m: Pherald_message; out_: PPointer; len: Pherald_size): herald_status; cdecl; external HeraldLib;
procedure herald_bytes_free(p: PByte; len: herald_size); cdecl; external HeraldLib;
procedure herald_message_free(m: Pherald_message); cdecl; external HeraldLib;

{ POP3 }
function herald_pop3_list_async(c: Pherald_client; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_pop3_retrieve_async(c: Pherald_client; uidl: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_pop3_retrieve_parsed_async(c: Pherald_client; uidl: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_pop3_top_async(c: Pherald_client; uidl: PAnsiChar; lines: UInt32; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ uidls: an array of n PAnsiChar. }
function herald_client_test_async(c: Pherald_client; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
function herald_pop3_delete_async(c: Pherald_client; uidls: PPAnsiChar; n: herald_size; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;

{ Results }
function herald_result_count(r: Pherald_result): herald_size; cdecl; external HeraldLib;
function herald_result_uid(r: Pherald_result; i: herald_size): UInt64; cdecl; external HeraldLib;
function herald_result_str(r: Pherald_result; i: herald_size; field: UInt32): PAnsiChar; cdecl; external HeraldLib;
function herald_result_int(r: Pherald_result; i: herald_size; field: UInt32): UInt64; cdecl; external HeraldLib;
function herald_result_mailbox_int(r: Pherald_result; field: UInt32): UInt64; cdecl; external HeraldLib;
{ len may be nil. }
function herald_result_bytes(r: Pherald_result; i: herald_size; len: Pherald_size): PByte; cdecl; external HeraldLib;
{ The parsed message of item i (HERALD_FETCH_PARSED); owned by the result. }
function herald_result_parsed(r: Pherald_result; i: herald_size): Pherald_parsed; cdecl; external HeraldLib;
function herald_result_part_count(r: Pherald_result; i: herald_size): herald_size; cdecl; external HeraldLib;
function herald_result_part(r: Pherald_result; i, k: herald_size; out_: Pherald_part): herald_status; cdecl; external HeraldLib;
{ name_out may be nil. }
function herald_result_part_param(r: Pherald_result; i, k, j: herald_size; name_out: PPAnsiChar): PAnsiChar; cdecl; external HeraldLib;

{ Parsed messages }
function herald_parse(data: PByte; len: herald_size; out_: PPherald_parsed): herald_status; cdecl; external HeraldLib;
procedure herald_parsed_free(p: Pherald_parsed); cdecl; external HeraldLib;
function herald_parsed_subject(p: Pherald_parsed): PAnsiChar; cdecl; external HeraldLib;
function herald_parsed_text(p: Pherald_parsed): PAnsiChar; cdecl; external HeraldLib;
function herald_parsed_html(p: Pherald_parsed): PAnsiChar; cdecl; external HeraldLib;
function herald_parsed_header(p: Pherald_parsed; name: PAnsiChar; i: herald_size): PAnsiChar; cdecl; external HeraldLib;
function herald_parsed_address_count(p: Pherald_parsed; role: UInt32): herald_size; cdecl; external HeraldLib;
{ name_out may be nil. }
function herald_parsed_address(p: Pherald_parsed; role: UInt32; i: herald_size; name_out: PPAnsiChar): PAnsiChar; cdecl; external HeraldLib;
function herald_parsed_date(p: Pherald_parsed): Int64; cdecl; external HeraldLib;
function herald_parsed_attachment_count(p: Pherald_parsed): herald_size; cdecl; external HeraldLib;
function herald_parsed_attachment(p: Pherald_parsed; i: herald_size; out_: Pherald_attachment): herald_status; cdecl; external HeraldLib;
function herald_parsed_attachment_save(p: Pherald_parsed; i: herald_size; path: PAnsiChar): herald_status; cdecl; external HeraldLib;

{ Sending }
function herald_send_async(c: Pherald_client; m: Pherald_message; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ rcpt_to: an array of n_rcpt PAnsiChar. }
function herald_send_raw_async(c: Pherald_client; mail_from: PAnsiChar; rcpt_to: PPAnsiChar; n_rcpt: herald_size; data: PByte; len: herald_size; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;

{ The durable outbox (HERALD_OPT_SPOOL_DIR) }
function herald_send_spooled_async(c: Pherald_client; m: Pherald_message; spool_id: PAnsiChar; cb: herald_callback; user_token: Pointer; op_out: Pherald_op): herald_status; cdecl; external HeraldLib;
{ msgs: n Pherald_message; user_tokens: n Pointer (or nil); ops_out: room for n ops. }
function herald_send_batch_async(c: Pherald_client; msgs: PPointer; n: herald_size; cb: herald_callback; user_tokens: PPointer; ops_out: Pherald_op; n_accepted_out: Pherald_size): herald_status; cdecl; external HeraldLib;
function herald_spool_recover(c: Pherald_client; decide: herald_spool_decide; user: Pointer; cb: herald_callback; user_token: Pointer; n_sent_out: Pherald_size): herald_status; cdecl; external HeraldLib;

implementation

end.
