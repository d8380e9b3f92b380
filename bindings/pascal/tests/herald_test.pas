{ herald's Pascal binding against real servers (started by
  scripts/test.d/31-pascal.sh through bindings/python/tests/mailservers.py):
  an smtp-sink on HERALD_TEST_SMTP_PORT dumping into HERALD_TEST_SINK_DIR,
  and Dovecot (IMAP on HERALD_TEST_IMAP_PORT, POP3 on HERALD_TEST_POP3_PORT,
  user HERALD_TEST_USER / HERALD_TEST_PASSWORD).
  Prints one line per check and "N passed, N failed"; exits 1 on a failure. }
program herald_test;

{$IFDEF FPC}{$MODE DELPHI}{$ENDIF}
{$IFDEF MSWINDOWS}{$APPTYPE CONSOLE}{$ENDIF}

uses
  {$IFDEF FPC} {$IFDEF UNIX} cthreads, BaseUnix, {$ENDIF} {$ENDIF}
  SysUtils, herald;

const
  NSEND = 3;
  MSG: AnsiString = 'From: bob@example.org'#13#10'To: alice@example.org'#13#10 +
    'Subject: from pascal'#13#10#13#10'Line one'#13#10'.dot line'#13#10;

var
  Passed: Integer = 0;
  Failed: Integer = 0;

procedure Check(ok: Boolean; const what: string);
begin
  if ok then
  begin
    Inc(Passed);
    WriteLn('ok   ', what);
  end
  else
  begin
    Inc(Failed);
    WriteLn('FAIL ', what, ' (last error: ', herald_last_error, ')');
  end;
end;

function Env(const name: string): string;
begin
  Result := GetEnvironmentVariable(name);
  if Result = '' then
  begin
    WriteLn('FAIL environment variable ', name, ' not set (run through 31-pascal.sh)');
    Halt(1);
  end;
end;

function NewClient(protocol: UInt32; port: Integer; withLogin: Boolean): Pherald_client;
var
  o: Pherald_options;
begin
  Result := nil;
  o := herald_options_new(protocol);
  herald_options_set_str(o, HERALD_OPT_HOST, '127.0.0.1');
  herald_options_set_int(o, HERALD_OPT_PORT, port);
  herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE);
  if withLogin then
  begin
    herald_options_set_str(o, HERALD_OPT_USERNAME, PAnsiChar(UTF8String(Env('HERALD_TEST_USER'))));
    herald_options_set_str(o, HERALD_OPT_PASSWORD, PAnsiChar(UTF8String(Env('HERALD_TEST_PASSWORD'))));
  end;
  if herald_client_new(o, @Result) <> HERALD_STATUS_OK then
    Result := nil;
  herald_options_free(o);
end;

function NewMessage(i: Integer): Pherald_message;
begin
  Result := herald_message_new;
  herald_message_set_from(Result, 'Alice <alice@example.org>');
  herald_message_add_to(Result, 'bob@example.org');
  herald_message_set_subject(Result, PAnsiChar(UTF8String('pascal ' + IntToStr(i))));
  herald_message_set_text(Result, 'hello from Pascal'#10);
end;

function CountFiles(const dir: string): Integer;
var
  sr: TSearchRec;
begin
  Result := 0;
  if FindFirst(IncludeTrailingPathDelimiter(dir) + '*', faAnyFile, sr) = 0 then
  begin
    repeat
      if (sr.Name <> '.') and (sr.Name <> '..') then
        Inc(Result);
    until FindNext(sr) <> 0;
    FindClose(sr);
  end;
end;

{ --- callbacks: they run on herald's delivery thread --- }

var
  SendDone: Integer = 0;
  SendStatus: array[1..NSEND] of herald_status;
  SendCode: array[1..NSEND] of Integer;
  SendRcpt: array[1..NSEND] of AnsiString;
  FetchStatus: herald_status = HERALD_STATUS_PANIC;
  FetchCount: NativeUInt = 0;
  FetchBytes: AnsiString = '';
  FetchSubject: AnsiString = '';

procedure OnSent(c: Pherald_completion); cdecl;
var
  i: NativeUInt;
begin
  i := NativeUInt(c^.user_token);
  if (i >= 1) and (i <= NSEND) then
  begin
    SendStatus[i] := c^.status;
    SendCode[i] := c^.reply_code;
    if herald_result_count(c^.result) > 0 then
      SendRcpt[i] := herald_result_str(c^.result, 0, HERALD_FIELD_NAME);
  end;
  {$IFDEF FPC} InterlockedIncrement(SendDone); {$ELSE} AtomicIncrement(SendDone); {$ENDIF}
end;

procedure OnFetched(c: Pherald_completion); cdecl;
var
  p: PByte;
  len: herald_size;
begin
  FetchStatus := c^.status;
  FetchCount := herald_result_count(c^.result);
  if FetchCount > 0 then
  begin
    p := herald_result_bytes(c^.result, 0, @len);
    SetString(FetchBytes, PAnsiChar(p), len);
    FetchSubject := herald_result_str(c^.result, 0, HERALD_FIELD_SUBJECT);
  end;
end;

procedure TestBasics;
var
  m: Pherald_message;
  c: Pherald_client;
  s: herald_status;
begin
  Check(AnsiString(herald_version) = HeraldHeaderVersion, 'herald_version = ' + HeraldHeaderVersion);
  Check(herald_version_number = HeraldHeaderVersionNumber, 'herald_version_number = HeraldHeaderVersionNumber');
  Check(herald_status_str(HERALD_STATUS_REJECTED) <> nil, 'herald_status_str');
  m := herald_message_new;
  s := herald_message_add_to(m, 'bob@example.org'#13#10'RCPT TO:<x@y>');
  Check(s = HERALD_STATUS_INVALID_ARGUMENT, 'CR/LF in an address is INVALID_ARGUMENT');
  Check(herald_last_error^ <> #0, 'herald_last_error says why');
  Check(herald_message_set_from(m, nil) = HERALD_STATUS_INVALID_ARGUMENT, 'nil is INVALID_ARGUMENT');
  herald_message_free(m);
  herald_message_free(nil);
  Check(herald_options_new(99) = nil, 'unknown protocol gives nil options');
  c := NewClient(HERALD_PROTOCOL_SMTP, 25, False);
  Check(herald_cancel(c, 12345) = HERALD_STATUS_NOT_FOUND, 'cancel of an unknown op is NOT_FOUND');
  herald_client_free(c);
end;

procedure TestSendCallback(port: Integer; const sinkDir: string);
var
  c: Pherald_client;
  m: Pherald_message;
  i, ok: Integer;
  op: herald_op;
  before: Integer;
begin
  before := CountFiles(sinkDir);
  c := NewClient(HERALD_PROTOCOL_SMTP, port, False);
  Check(c <> nil, 'SMTP client');
  ok := 0;
  for i := 1 to NSEND do
  begin
    m := NewMessage(i);
    if (herald_send_async(c, m, OnSent, Pointer(NativeUInt(i)), @op) = HERALD_STATUS_OK) and (op <> 0) then
      Inc(ok);
    herald_message_free(m);
  end;
  Check(ok = NSEND, 'send_async with a callback accepted ' + IntToStr(NSEND) + ' messages');
  Check(herald_client_flush(c, 30000) = HERALD_STATUS_OK, 'flush');
  herald_client_free(c);
  Check(SendDone = NSEND, 'one callback per message');
  ok := 0;
  for i := 1 to NSEND do
    if (SendStatus[i] = HERALD_STATUS_OK) and (SendCode[i] = 250) and (SendRcpt[i] = 'bob@example.org') then
      Inc(ok);
  Check(ok = NSEND, 'every send completed OK with 250 and its recipient item');
  Check(CountFiles(sinkDir) - before = NSEND, 'smtp-sink received ' + IntToStr(NSEND) + ' messages');
end;

procedure TestSendQueue(port: Integer; const sinkDir: string);
var
  c: Pherald_client;
  m: Pherald_message;
  ops: array[1..2] of herald_op;
  comp: Pherald_completion;
  i, got, before: Integer;
  okAll: Boolean;
  {$IFDEF FPC} {$IFDEF UNIX}
  fds: array[0..0] of pollfd;
  {$ENDIF} {$ENDIF}
begin
  before := CountFiles(sinkDir);
  c := NewClient(HERALD_PROTOCOL_SMTP, port, False);
  for i := 1 to 2 do
  begin
    m := NewMessage(10 + i);
    herald_send_async(c, m, nil, Pointer(NativeUInt(100 + i)), @ops[i]);
    herald_message_free(m);
  end;
  Check(herald_client_wakeup_handle(c) >= 0, 'wakeup handle');
  got := 0;
  okAll := True;
  while got < 2 do
  begin
    {$IFDEF FPC} {$IFDEF UNIX}
    fds[0].fd := herald_client_wakeup_handle(c);
    fds[0].events := POLLIN;
    fds[0].revents := 0;
    if fpPoll(@fds[0], 1, 30000) <= 0 then
      Break;  { nothing within 30 s }
    {$ENDIF} {$ENDIF}
    comp := herald_client_next(c, 0);
    while comp <> nil do
    begin
      Inc(got);
      okAll := okAll and (comp^.status = HERALD_STATUS_OK) and (comp^.cancelled = 0)
        and (comp^.detail <> nil)
        and (((comp^.op = ops[1]) and (NativeUInt(comp^.user_token) = 101))
          or ((comp^.op = ops[2]) and (NativeUInt(comp^.user_token) = 102)));
      herald_completion_free(comp);
      comp := herald_client_next(c, 0);
    end;
  end;
  Check(got = 2, 'completion queue delivered both completions');
  Check(okAll, 'queued completions: OK, their op ids and tokens');
  Check(herald_client_next(c, 0) = nil, 'queue empty afterwards');
  herald_client_free(c);
  Check(CountFiles(sinkDir) - before = 2, 'smtp-sink received the queued messages');
end;

procedure TestImapAndPop3(imapPort, pop3Port: Integer);
var
  c: Pherald_client;
  op: herald_op;
  ptrs: array[0..0] of Pointer;
  lens: array[0..0] of herald_size;
  comp: Pherald_completion;
  uid: UInt64;
begin
  c := NewClient(HERALD_PROTOCOL_IMAP, imapPort, True);
  Check(c <> nil, 'IMAP client');
  ptrs[0] := PAnsiChar(MSG);
  lens[0] := Length(MSG);
  Check(herald_imap_append_async(c, 'INBOX', @ptrs[0], @lens[0], 1, nil, nil, nil, @op) = HERALD_STATUS_OK,
    'imap_append_async');
  comp := herald_client_next(c, 30000);
  uid := 0;
  if comp <> nil then
  begin
    if herald_result_count(comp^.result) = 1 then
      uid := herald_result_uid(comp^.result, 0);
    Check((comp^.status = HERALD_STATUS_OK) and (comp^.op = op) and (uid > 0),
      'append completed with one UID');
    herald_completion_free(comp);
  end
  else
    Check(False, 'append completed');

  Check(herald_imap_fetch_async(c, 'INBOX', '1:*', HERALD_FETCH_ENVELOPE or HERALD_FETCH_BODY,
    OnFetched, nil, @op) = HERALD_STATUS_OK, 'imap_fetch_async');
  Check(herald_wait(c, op, 30000) = HERALD_STATUS_OK, 'herald_wait for the fetch');
  Check((FetchStatus = HERALD_STATUS_OK) and (FetchCount = 1), 'fetch: one message');
  Check(FetchBytes = MSG, 'fetched bytes equal the appended ones');
  Check(FetchSubject = 'from pascal', 'fetched subject');
  herald_client_free(c);

  c := NewClient(HERALD_PROTOCOL_POP3, pop3Port, True);
  Check(herald_pop3_list_async(c, nil, nil, @op) = HERALD_STATUS_OK, 'pop3_list_async');
  comp := herald_client_next(c, 30000);
  if comp <> nil then
  begin
    Check((comp^.status = HERALD_STATUS_OK) and (herald_result_count(comp^.result) = 1)
      and (herald_result_int(comp^.result, 0, HERALD_FIELD_SIZE) = UInt64(Length(MSG)))
      and (herald_result_str(comp^.result, 0, HERALD_FIELD_NAME) <> nil),
      'POP3 list: one message, its size and UIDL');
    herald_completion_free(comp);
  end
  else
    Check(False, 'POP3 list completed');
  herald_client_free(c);
end;

begin
  TestBasics;
  TestSendCallback(StrToInt(Env('HERALD_TEST_SMTP_PORT')), Env('HERALD_TEST_SINK_DIR'));
  TestSendQueue(StrToInt(Env('HERALD_TEST_SMTP_PORT')), Env('HERALD_TEST_SINK_DIR'));
  TestImapAndPop3(StrToInt(Env('HERALD_TEST_IMAP_PORT')), StrToInt(Env('HERALD_TEST_POP3_PORT')));
  WriteLn(Passed, ' passed, ', Failed, ' failed');
  if Failed > 0 then
    Halt(1);
end.
