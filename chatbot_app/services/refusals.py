"""Why an action was not carried out: one exception every door translates the same way.

The message is for the person (the UI shows it; the APIs put it in their error bodies). The kind
says what sort of refusal it is, so each door can map it once: an HTTP status for /api and /v1, a
notice in the UI. Nothing was changed by a refused action.
"""

from __future__ import annotations

import enum


class RefusalKind(enum.StrEnum):
    NOT_FOUND = "not_found"  # unknown, foreign or malformed ids all look the same
    INVALID = "invalid"  # the input cannot be used as given
    TOO_LARGE = "too_large"
    RATE_LIMIT = "rate_limit"  # a per-identity, per-key or per-address limit
    QUOTA = "quota"  # the user's daily tokens are spent
    BUSY = "busy"  # the server's concurrency cap is reached
    UNAVAILABLE = "unavailable"  # the feature is not configured here
    FORBIDDEN = "forbidden"  # the caller may not do this


class Refused(Exception):
    """An action refused before it changed anything; `str(refusal)` is the message for the user."""

    def __init__(self, kind: RefusalKind, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        #: A finer machine-readable reason where a door shows one (e.g. "quota_exceeded", "identity").
        self.code = code or kind.value
