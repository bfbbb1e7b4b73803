"""Validation of what a client sends: messages, identities, conversation ids."""

from __future__ import annotations

import pytest

from chatbot_app.services.library import MAX_QUERY_CHARS, check_search_query, check_title
from chatbot_app.services.validation import (
    MAX_MESSAGE_CHARS,
    InvalidInput,
    clean_message,
    is_conversation_id,
    is_identity,
)
from chatbot_app.state.session import (
    SeenIdentities,
    SessionLost,
    SignedOut,
    refused_by_reflex,
    reload_on_lost_session,
)

GOOD_CONVERSATION_ID = "0123456789abcdef" * 2


@pytest.mark.parametrize("raw", ["", " ", "\n\t  \r\n", "\u3000"])
def test_blank_messages_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="Type a message first"):
        clean_message(raw)


@pytest.mark.parametrize("raw", [None, 42, 3.5, True, ["hi"], {"message": "hi"}, b"hi"])
def test_non_text_messages_are_refused(raw: object) -> None:
    with pytest.raises(InvalidInput, match="must be text"):
        clean_message(raw)


def test_message_is_trimmed() -> None:
    assert clean_message("  hello there \n") == "hello there"


def test_inner_whitespace_and_unicode_are_kept() -> None:
    assert clean_message("line one\n\n  line two 👋 é") == "line one\n\n  line two 👋 é"


def test_message_at_the_limit_is_accepted_and_trimming_counts_first() -> None:
    assert clean_message("x" * MAX_MESSAGE_CHARS) == "x" * MAX_MESSAGE_CHARS
    assert clean_message("  " + "x" * 10 + "  ", max_chars=10) == "x" * 10


def test_message_over_the_limit_says_how_long_it_is_and_what_the_limit_is() -> None:
    with pytest.raises(InvalidInput) as caught:
        clean_message("x" * (MAX_MESSAGE_CHARS + 1))

    assert str(caught.value) == "That message is 32,001 characters; the limit is 32,000."


@pytest.mark.parametrize("raw", ["a\x00b", "lone \ud800 surrogate", "\udfff"])
def test_characters_no_database_can_store_are_refused(raw: str) -> None:
    # PostgreSQL rejects NUL in text and neither database encodes a lone surrogate; both can arrive in JSON.
    with pytest.raises(InvalidInput, match="cannot be sent"):
        clean_message(raw)


def test_invalid_input_is_a_value_error() -> None:
    assert issubclass(InvalidInput, ValueError)


@pytest.mark.parametrize("value", ["a" * 22, "A" * 64, "Zz09_-" * 4, "token_urlsafe-24-bytes-xxxxxxxx"])
def test_well_formed_identities_are_accepted(value: str) -> None:
    assert is_identity(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 21,
        "a" * 65,
        "a" * 22 + "!",
        "a" * 22 + " ",
        "a" * 22 + "\n",  # `$` alone would let a trailing newline through
        "a" * 64 + "\n",
        "é" * 22,
        "a" * 11 + "." + "a" * 11,
    ],
)
def test_malformed_identities_are_refused(value: str) -> None:
    assert not is_identity(value)


@pytest.mark.parametrize("value", [None, 0, 12345678901234567890123, ["a" * 22], {"id": "a" * 22}, b"a" * 22])
def test_identities_of_the_wrong_type_are_refused(value: object) -> None:
    assert not is_identity(value)


def test_well_formed_conversation_id_is_accepted() -> None:
    assert is_conversation_id(GOOD_CONVERSATION_ID)


@pytest.mark.parametrize(
    "value",
    [
        "",
        GOOD_CONVERSATION_ID[:-1],
        GOOD_CONVERSATION_ID + "0",
        GOOD_CONVERSATION_ID.upper(),
        "g" * 32,
        GOOD_CONVERSATION_ID[:-1] + "\n",
        GOOD_CONVERSATION_ID + "\n",
        "../" + GOOD_CONVERSATION_ID[3:],
        "0" * 31 + "'",
    ],
)
def test_malformed_conversation_ids_are_refused(value: str) -> None:
    assert not is_conversation_id(value)


@pytest.mark.parametrize("value", [None, 0, 1.5, [GOOD_CONVERSATION_ID], {"id": GOOD_CONVERSATION_ID}])
def test_conversation_ids_of_the_wrong_type_are_refused(value: object) -> None:
    assert not is_conversation_id(value)


def test_a_browser_cannot_claim_an_api_key_owner_identity() -> None:
    assert not is_identity("key_" + "0123456789abcdef" * 2)


def test_control_characters_are_refused_but_tabs_and_newlines_are_kept() -> None:
    assert clean_message("line one\n\tline two") == "line one\n\tline two"
    with pytest.raises(InvalidInput, match="control characters"):
        clean_message("ring the bell \x07")
    with pytest.raises(InvalidInput, match="control characters"):
        clean_message("escape \x1b[31mred")


def test_a_huge_emoji_run_is_refused_by_the_length_limit_with_a_clear_message() -> None:
    with pytest.raises(InvalidInput, match="the limit is 32,000"):
        clean_message("🦜" * 40_000)


@pytest.mark.parametrize("raw", ["half \ud800 pair", "nul \x00 byte"])
def test_search_text_and_titles_no_database_can_store_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="cannot be searched for"):
        check_search_query(raw)
    with pytest.raises(InvalidInput, match="cannot be saved"):
        check_title(raw)


def test_search_text_must_be_text_and_is_cut_to_the_query_limit() -> None:
    with pytest.raises(InvalidInput, match="must be text"):
        check_search_query(5)
    assert check_search_query("x" * (MAX_QUERY_CHARS + 10)) == "x" * MAX_QUERY_CHARS


def test_only_errors_raised_outside_the_apps_code_count_as_a_malformed_event() -> None:
    def raised(call) -> Exception:  # type: ignore[no-untyped-def]
        try:
            call()
        except Exception as exc:
            return exc
        raise AssertionError("no exception")

    assert refused_by_reflex(raised(lambda: clean_message(unexpected=1)))  # type: ignore[call-arg]  # wrong arguments
    assert not refused_by_reflex(raised(lambda: clean_message(5)))  # raised inside the app: a bug would show it
    assert not refused_by_reflex(raised(lambda: {}["key"]))  # not a kind an event's binding raises


def test_a_lost_session_loads_its_page_again_without_a_script_and_a_signed_out_one_goes_to_sign_in() -> None:
    def event(spec: object) -> tuple[str, dict[str, object]]:
        return spec.handler.fn.__qualname__, {name._js_expr: value._var_value for name, value in spec.args}  # type: ignore[attr-defined]

    # A redirect, not a script: the page's CSP refuses to evaluate one sent by the server (no 'unsafe-eval').
    name, args = event(reload_on_lost_session(SessionLost("/c/" + GOOD_CONVERSATION_ID)))
    assert (name, args["path"], args["replace"]) == ("_redirect", "/c/" + GOOD_CONVERSATION_ID, True)
    assert event(reload_on_lost_session(SignedOut()))[1]["path"] == "/login"


def test_seen_identities_keep_the_latest_of_each_connection_and_forget_the_least_recently_used() -> None:
    seen = SeenIdentities(size=2)
    seen.remember("sid-1", "a" * 24)
    seen.remember("sid-2", "b" * 24)
    seen.remember("sid-1", "c" * 24)  # the same connection, the identity the browser now shows
    seen.remember("sid-3", "d" * 24)  # over the size: sid-2, the least recently used, goes
    seen.remember("", "e" * 24)  # no connection (a backend task): nothing to remember

    assert [seen.get(s) for s in ("sid-1", "sid-2", "sid-3", "")] == ["c" * 24, None, "d" * 24, None]
