"""Structured (JSON-lines) logs. Secrets never appear; message text only if CHATBOT_LOG_CONTENT=true."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else was passed in `extra=` and becomes a JSON field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


#: Reflex's event queue, which logs an event whose name has no handler with a traceback.
REFLEX_EVENT_QUEUE_LOGGER = "reflex_base.event.processor.event_processor"


class UnknownEventFilter(logging.Filter):
    """Shorten Reflex's record of an event whose name has no handler to one line naming the event.

    Only a hand-made client sends one, and Reflex's record holds the whole event: its payload, and
    the request's headers (with any cookie). Left as it is, any client could fill the log with
    tracebacks and make it carry a session cookie.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, KeyError) and str(error).startswith("'No registered handler found for event"):
            name = str(error).rpartition(": ")[2].strip("'")
            record.msg, record.args, record.exc_info, record.exc_text = (
                "refused an event with no handler: %.200s",
                (name,),
                None,
                None,
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the app's own loggers (Reflex keeps its console output)."""
    # A client's text with a lone surrogate ("\ud800", valid JSON) in any log line, Reflex's own
    # included, would otherwise fail to print and leave a traceback in its place.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    reflex_queue = logging.getLogger(REFLEX_EVENT_QUEUE_LOGGER)
    if not any(isinstance(f, UnknownEventFilter) for f in reflex_queue.filters):
        reflex_queue.addFilter(UnknownEventFilter())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("chatbot_app")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
