{ Sends one message through an SMTP server and waits for its completion.

    send HOST PORT FROM TO [plain]

  "plain" turns TLS off (HERALD_SECURITY_NONE), for a local test server.
  Build: fpc -Fu<dir of herald.pas> -Fl<dir of libherald.so> send.pas }
program send;

{$IFDEF FPC}{$MODE DELPHI}{$ENDIF}
{$IFDEF MSWINDOWS}{$APPTYPE CONSOLE}{$ENDIF}

uses
  {$IFDEF FPC} {$IFDEF UNIX} cthreads, {$ENDIF} {$ENDIF}  { FPC on Unix: cthreads first: herald calls back on its own threads }
  SysUtils, herald;

var
  Done: Integer = 0;
  FinalStatus: herald_status = HERALD_STATUS_PANIC;
  FinalCode: Integer = 0;
  FinalDetail: array[0..511] of AnsiChar;

{ Runs on herald's delivery thread: copy what is needed, the completion is
  valid only during the call. }
procedure OnSent(c: Pherald_completion); cdecl;
var
  i: Integer;
begin
  FinalStatus := c^.status;
  FinalCode := c^.reply_code;
  i := 0;
  while (i < High(FinalDetail)) and (c^.detail[i] <> #0) do
  begin
    FinalDetail[i] := c^.detail[i];
    Inc(i);
  end;
  FinalDetail[i] := #0;
  {$IFDEF FPC} InterlockedIncrement(Done); {$ELSE} AtomicIncrement(Done); {$ENDIF}
end;

function Check(s: herald_status; const what: string): Boolean;
begin
  Result := s = HERALD_STATUS_OK;
  if not Result then
    WriteLn(ErrOutput, what, ': ', herald_status_str(s), ': ', herald_last_error);
end;

var
  o: Pherald_options;
  client: Pherald_client;
  m: Pherald_message;
  op: herald_op;
begin
  if ParamCount < 4 then
  begin
    WriteLn(ErrOutput, 'usage: send HOST PORT FROM TO [plain]');
    Halt(2);
  end;
  WriteLn('libherald ', herald_version);
  o := herald_options_new(HERALD_PROTOCOL_SMTP);
  if not Check(herald_options_set_str(o, HERALD_OPT_HOST, PAnsiChar(UTF8String(ParamStr(1)))), 'host')
    or not Check(herald_options_set_int(o, HERALD_OPT_PORT, StrToInt(ParamStr(2))), 'port') then
    Halt(1);
  if (ParamCount >= 5) and (ParamStr(5) = 'plain') then
    Check(herald_options_set_int(o, HERALD_OPT_SECURITY, HERALD_SECURITY_NONE), 'security');
  if not Check(herald_client_new(o, @client), 'herald_client_new') then
    Halt(1);
  herald_options_free(o);  { the client has its own copy }

  m := herald_message_new;
  if not Check(herald_message_set_from(m, PAnsiChar(UTF8String(ParamStr(3)))), 'from')
    or not Check(herald_message_add_to(m, PAnsiChar(UTF8String(ParamStr(4)))), 'to') then
    Halt(1);
  herald_message_set_subject(m, 'Hello from Pascal');
  herald_message_set_text(m, 'Sent without blocking.'#10);
  if not Check(herald_send_async(client, m, OnSent, nil, @op), 'herald_send_async') then
    Halt(1);
  herald_message_free(m);  { copied by the call }

  herald_wait(client, op, -1);  { or carry on with the program }
  herald_client_free(client);
  WriteLn('op ', op, ': ', herald_status_str(FinalStatus), ' (', FinalCode, ') ', PAnsiChar(@FinalDetail[0]));
  if FinalStatus <> HERALD_STATUS_OK then
    Halt(1);
end.
