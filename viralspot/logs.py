"""Logging set-up: one stream handler on the ``viralspot`` logger, level from ``VIRALSPOT_LOG_LEVEL``.

Every line carries the request id. ``VIRALSPOT_LOG_FORMAT`` is ``text`` (the default)::

    2026-12-02 12:00:00,123 WARNING [viralspot.errors] [3f2a...] random feed claim kept conflicting

or ``json``: one JSON object per line (``time``, ``level``, ``logger``, ``message``, ``request_id``,
``exception``).
"""
import hashlib
import json
import logging
import re
import sys
from datetime import datetime, timezone
from urllib.parse import unquote, unquote_plus

from flask import Flask

from .clock import utc_timestamp
from .request_ids import NO_REQUEST, RequestIdFilter

FORMAT = "%(asctime)s %(levelname)s [%(name)s] [%(request_id)s] %(message)s"
#: C0 controls, DEL and C1 controls (a header's bytes are read as latin-1: 0x9b is a terminal's CSI).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: An argument of a query string: its name as written, then its value up to the next argument.
_ARGUMENT = re.compile(r"((?:^|[?&;])([^=&;#?\s]*)=)([^&;#\s]*)")
#: A path, or a URL such as a ``Referer``, up to its query: where an inspection path may be.
_PATH = re.compile(r"(?:^|(?<=\s))[^\s?#]+")
_INSPECTION = "/api/sessions/"


def session_fingerprint(session_id: str) -> str:
    """How a log line names a session: ``~`` and 12 hex digits of BLAKE2b of its id. A session id is
    its session's only key (README, Production), so no line holds one; a session's lines still match,
    and clients make their ids unguessable, so the fingerprint does not give an id away."""
    return "~" + hashlib.blake2b(session_id.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


def without_session_ids(text: str) -> str:
    """``text`` (a query string, a path, a request line or a URL such as a ``Referer``) with each
    session id replaced by its fingerprint, taken as the app reads the id: the value of an argument
    whose name decodes to ``session_id`` (``session%5Fid`` too; decoded, surrounding spaces
    stripped), and the id of a path that decodes to an inspection path (written decoded)."""
    def argument(found: re.Match) -> str:
        if unquote_plus(found.group(2)) != "session_id":
            return found.group(0)
        return found.group(1) + session_fingerprint(unquote_plus(found.group(3)).strip())

    def path(found: re.Match) -> str:  # routed decoded: /api/session%73/<id> and /api/sessions%2F<id> too
        decoded = unquote(found.group())
        at = decoded.lower().find(_INSPECTION)
        if at < 0:
            return found.group()
        return decoded[:at + len(_INSPECTION)] + session_fingerprint(decoded[at + len(_INSPECTION):])

    return _ARGUMENT.sub(argument, _PATH.sub(path, text))


def escape_controls(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``: what a client sends (an argument's
    name, a header) cannot drive the terminal that reads a log."""
    return _CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


class TextFormatter(logging.Formatter):
    """``FORMAT`` lines, their messages' control characters escaped (a traceback after keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": utc_timestamp(datetime.fromtimestamp(record.created, timezone.utc)),
                 "level": record.levelname, "logger": record.name, "message": record.getMessage(),
                 "request_id": getattr(record, "request_id", NO_REQUEST)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)  # ASCII: every control and non-ASCII character escaped


def configure_logger(app: Flask) -> None:
    """The settings were checked and written as their choice when loaded (``config.RULES``)."""
    level = app.config["LOG_LEVEL"].upper()
    json_lines = app.config["LOG_FORMAT"] == "json"
    formatter = JsonFormatter() if json_lines else TextFormatter(FORMAT)
    logger = logging.getLogger("viralspot")
    logger.setLevel(level)
    handler = next((h for h in logger.handlers if getattr(h, "_viralspot", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._viralspot = True
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
    handler.setFormatter(formatter)
    app.logger.setLevel(level)
    limiter = logging.getLogger("flask-limiter")  # its switch to counting in memory (a warning)
    if handler not in limiter.handlers:
        limiter.addHandler(handler)
