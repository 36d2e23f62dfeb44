"""Request ids: every request has one, every response echoes it, every log line of the request carries it.

An incoming ``X-Request-ID`` of 1 to 128 characters of ``A-Z a-z 0-9 . _ -`` is kept; anything else is
ignored (never logged) and a new uuid4 hex id made, on first use. ``RequestIdFilter`` puts the id on
each log record ("-" outside a request); work handed to another thread carries it with ``bound``.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import uuid
from typing import Iterator

from flask import Flask, has_request_context, request

HEADER = "X-Request-ID"
MAX_LENGTH = 128
#: What an incoming id must be, whole: safe in a header, a log line, a JSON string and a URL.
VALID = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_LENGTH)
#: Shown on log lines that belong to no request.
NO_REQUEST = "-"
#: Where the id is kept: the request's WSGI environ (``g`` may outlive a request).
_ENVIRON_KEY = "viralspot.request_id"
#: The id of the request a background thread works for (``bound``).
_bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("viralspot_request_id", default=None)


def request_id() -> str | None:
    """The current request's id, or the id ``bound`` to this thread; None outside both."""
    if has_request_context():
        value = request.environ.get(_ENVIRON_KEY)
        if value is None:
            incoming = request.headers.get(HEADER)
            valid = incoming is not None and VALID.fullmatch(incoming) is not None
            value = request.environ[_ENVIRON_KEY] = incoming if valid else uuid.uuid4().hex
        return value
    return _bound.get()


@contextlib.contextmanager
def bound(value: str | None) -> Iterator[None]:
    """Log lines of this thread carry ``value`` as their request id within the block."""
    token = _bound.set(value)
    try:
        yield
    finally:
        _bound.reset(token)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` on every record passing the handler; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            try:
                record.request_id = request_id() or NO_REQUEST
            except Exception:  # noqa: BLE001 - logging must never fail on a context problem
                record.request_id = NO_REQUEST
        return True


def init_app(app: Flask) -> None:
    """Echo the id on every response (errors and 404s too)."""

    @app.after_request
    def echo_request_id(response):
        response.headers[HEADER] = request_id()
        return response
