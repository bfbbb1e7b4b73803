"""Reading the session cookie from a raw Cookie header, as the websocket handshake and /auth carry it."""

from __future__ import annotations

from chatbot_app.services.accounts import SECURE_SESSION_COOKIE, SESSION_COOKIE, session_cookie_name, session_token


def test_the_name_is_host_prefixed_over_https() -> None:
    assert session_cookie_name(secure=True) == "__Host-chatbot_session"
    assert session_cookie_name(secure=False) == "chatbot_session"


def test_plain_http_reads_the_one_session_cookie_among_others() -> None:
    assert session_token(f'theme=dark; {SESSION_COOKIE}="abc"; other=1') == "abc"
    assert session_token("theme=dark") is None
    assert session_token(None) is None
    assert session_token(f"{SESSION_COOKIE}=") is None


def test_a_tossed_cookie_does_not_win_by_coming_first() -> None:
    # Over plain HTTP the two cannot be told apart: nobody is signed in, rather than the first one.
    assert session_token(f"{SESSION_COOKIE}=attacker; {SESSION_COOKIE}=victim") is None
    assert session_token(f"{SESSION_COOKIE}=same; {SESSION_COOKIE}=same") == "same"
    # Over HTTPS only the __Host- cookie counts: a sibling subdomain cannot set one.
    header = f"{SESSION_COOKIE}=attacker; {SECURE_SESSION_COOKIE}=victim"
    assert session_token(header, secure=True) == "victim"
    assert session_token(f"{SESSION_COOKIE}=attacker", secure=True) is None
    # A __Host- cookie (set only by this host over HTTPS) is read whatever the app URL says.
    assert session_token(header, secure=False) == "victim"
