"""A new OAuth2 token on a live client (no server needed: it is used at the next login)."""

import pytest

import herald


def test_set_oauth2_token_takes_a_token_and_refuses_line_breaks():
    c = herald.Client(herald.Protocol.IMAP, host="127.0.0.1")
    try:
        c.set_oauth2_token("ya29.a-token")
        for bad in ("a\r\nA1 LOGOUT", "", "with space"):
            with pytest.raises(herald.HeraldError) as e:
                c.set_oauth2_token(bad)
            assert e.value.status == herald.Status.INVALID_ARGUMENT
    finally:
        c.close()
