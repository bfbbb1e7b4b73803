"""Checks on what a client sends. Every handler can be called with anything, so nothing is trusted."""

from __future__ import annotations

import re

MAX_MESSAGE_CHARS = 32_000
_IDENTITY = re.compile(r"[A-Za-z0-9_-]{22,64}")
_CONVERSATION_ID = re.compile(r"[0-9a-f]{32}")
# NUL and lone surrogates can arrive in JSON but neither database stores them: refuse them here, not on insert.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with what neither database can store (NUL, lone surrogates) replaced: for text from outside,
    such as a tool's result, that is kept rather than refused."""
    return _UNSTORABLE.sub("\ufffd", text)


# Control characters other than tab and line breaks: invisible, and a way to smuggle terminal escapes.
_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class InvalidInput(ValueError):
    """The message says, in plain words, what was wrong; nothing was changed."""


def clean_message(raw: object, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """The user's message, trimmed; raises InvalidInput for anything that is not a sendable text."""
    if not isinstance(raw, str):
        raise InvalidInput("A message must be text.")
    text = raw.strip()
    if not text:
        raise InvalidInput("Type a message first.")
    if _UNSTORABLE.search(text):
        raise InvalidInput("That message contains characters that cannot be sent.")
    if _CONTROL.search(text):
        raise InvalidInput("That message contains control characters; remove them and send it again.")
    if len(text) > max_chars:
        raise InvalidInput(f"That message is {len(text):,} characters; the limit is {max_chars:,}.")
    return text


def one_line_name(raw: object, max_chars: int, *, missing: str, too_long: str, unstorable: str) -> str:
    """A short name from a client (a title, a preset's): one line, spaces collapsed, not empty, bounded, storable.

    `missing`, `too_long` and `unstorable` are the refusals' words for this kind of name.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput(missing)
    name = " ".join(raw.split())
    if len(name) > max_chars:
        raise InvalidInput(too_long)
    if _UNSTORABLE.search(name):
        raise InvalidInput(unstorable)
    return name


def is_identity(value: object) -> bool:
    """A browser identity; API-key owners ("key_…") are a separate namespace a browser cannot claim."""
    return isinstance(value, str) and bool(_IDENTITY.fullmatch(value)) and not value.startswith("key_")


def is_conversation_id(value: object) -> bool:
    return isinstance(value, str) and bool(_CONVERSATION_ID.fullmatch(value))
