"""Reflex's record of an event with no handler becomes one line naming the event, without its headers."""

from __future__ import annotations

import logging

from chatbot_app.logging_config import REFLEX_EVENT_QUEUE_LOGGER, UnknownEventFilter


def record_of(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException as exc:
        info = (type(exc), exc, exc.__traceback__)
    message = "Error processing event queue entry for Event(router_data={'headers': {'cookie': 'session=secret'}})"
    return logging.LogRecord(REFLEX_EVENT_QUEUE_LOGGER, logging.ERROR, __file__, 1, message, (), info)


def test_an_event_with_no_handler_is_logged_in_one_line_without_the_event() -> None:
    record = record_of(KeyError("No registered handler found for event: root.chat_state._leave"))

    assert UnknownEventFilter().filter(record)

    assert record.getMessage() == "refused an event with no handler: root.chat_state._leave"
    assert (record.exc_info, record.levelname) == (None, "WARNING")
    assert "secret" not in logging.Formatter().format(record)


def test_any_other_error_keeps_its_traceback() -> None:
    record = record_of(KeyError("something else"))

    assert UnknownEventFilter().filter(record)

    assert record.exc_info is not None and record.levelname == "ERROR"
