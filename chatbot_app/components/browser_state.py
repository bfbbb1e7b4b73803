"""What the page knows without asking the server: whether the message box holds text, whether the newest
message is in view, and which key was pressed.

These change on every keystroke or scroll, so they stay in the browser (Reflex's ClientStateVar, a React
state), and only a key the app acts on (Escape) sends an event. The few JavaScript expressions here read
the DOM event they are given; each is compiled into the page (never evaluated from a string, which the
Content-Security-Policy forbids).
"""

from __future__ import annotations

from typing import Any

from reflex.event import EventChain, EventSpec, no_args_event_spec
from reflex.experimental.client_state import ClientStateVar
from reflex.vars import Var, VarData
from reflex.vars.function import ArgsFunctionOperation

#: The composer's text area (ReplyState and ComposerFilesState write it by this id).
COMPOSER_INPUT_ID = "chat-input"
#: Whether the message box holds more than white space (Send is disabled while it does not).
DRAFT_PRESENT = ClientStateVar.create("draft_present", False)
#: Whether the message list is scrolled away from its end (the scroll-to-bottom button shows).
AWAY_FROM_END = ClientStateVar.create("away_from_end", False)
#: How far from the end (px) still counts as at the end.
_END_SLACK_PX = 80
#: Earlier messages load while the user is this close (px) to the top: before reaching it, so the
#: browser's scroll anchoring keeps what they read in place.
_NEAR_TOP_PX = 1500


def _set(state: ClientStateVar, expression: str) -> Var:
    """A handler `(_e) => state = <expression>` for an event trigger."""
    return ArgsFunctionOperation.create(("_e",), state.set.call(Var(_js_expr=expression))).to(EventChain)


def track_draft() -> Var:
    """For the message box's on_change: remember whether it holds text."""
    return _set(DRAFT_PRESENT, "_e.target.value.trim() !== ''")


def read_draft() -> Var:
    """For an on_mount: read the message box as it is now (the server may have written or cleared it)."""
    return _set(DRAFT_PRESENT, f"(document.getElementById('{COMPOSER_INPUT_ID}')?.value ?? '').trim() !== ''")


def draft_present() -> Var:
    return DRAFT_PRESENT.value.to(bool)


def set_draft_present(present: bool) -> Var:
    return DRAFT_PRESENT.set_value(present)


def track_scroll(near_top: EventSpec, earlier: Var[bool]) -> Var:
    """For the message list's on_scroll: remember whether its end is out of view, and run `near_top` when
    the user scrolls up to within a few screens of the top while `earlier` (there is more to load)."""
    target = "_e.currentTarget"
    away = AWAY_FROM_END.set.call(
        Var(_js_expr=f"{target}.scrollHeight - {target}.scrollTop - {target}.clientHeight > {_END_SLACK_PX}")
    )
    chain = Var.create(EventChain.create([near_top], args_spec=no_args_event_spec))
    load = f"(({earlier}) && {target}.scrollTop < {_NEAR_TOP_PX} ? ({chain})() : null)"
    var_data = VarData.merge(away._get_all_var_data(), chain._get_all_var_data(), earlier._get_all_var_data())
    return ArgsFunctionOperation.create(("_e",), Var(_js_expr=f"(({away}), {load})", _var_data=var_data)).to(EventChain)


def away_from_end() -> Var:
    return AWAY_FROM_END.value.to(bool)


def on_key(key: str, *events: Any) -> Var:
    """A key-down handler that runs `events` for `key` only; other keys never leave the browser.

    A key some other part of the page already handled (a menu or dialog closing on Escape marks the
    event as handled) is left alone.
    """
    chain = Var.create(EventChain.create(list(events), args_spec=no_args_event_spec))
    condition = f"_e.key === {key!r} && !_e.defaultPrevented && !_e.isComposing"
    return ArgsFunctionOperation.create(
        ("_e",), Var(_js_expr=f"(({condition}) ? ({chain})() : null)", _var_data=chain._get_all_var_data())
    ).to(EventChain)
