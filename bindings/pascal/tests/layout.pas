{ Prints the Pascal layout of herald_completion in layout.c's format. }
program layout;

{$IFDEF FPC}{$MODE DELPHI}{$ENDIF}
{$IFDEF MSWINDOWS}{$APPTYPE CONSOLE}{$ENDIF}

uses
  herald;

var
  c: herald_completion;
  base: NativeUInt;

function Off(p: Pointer): NativeUInt;
begin
  Result := NativeUInt(p) - base;
end;

begin
  base := NativeUInt(@c);
  WriteLn(SizeOf(herald_completion), ' ', Off(@c.op), ' ', Off(@c.status), ' ',
    Off(@c.cancelled), ' ', Off(@c.user_token), ' ', Off(@c.reply_code), ' ',
    Off(@c.detail), ' ', Off(@c.result));
end.
