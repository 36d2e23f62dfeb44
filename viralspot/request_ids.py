"""Request ids: every request has one, every response echoes it, every log line of the request carries it.

An incoming ``X-Request-ID`` (from a load balancer, a proxy or the client) is kept when it is
1 to 128 characters of ``A-Z a-z 0-9 . _ -``; anything else (too long, empty, other characters)
is ignored, never logged, and a new id is made (32 hex characters, uuid4). The id is assigned on
first use (a log line, or the response), so it exists for every request, 404s and errors included,
whatever runs first.

``RequestIdFilter`` (on the service's log handler, ``logs.py``) puts it on each record as
``record.request_id`` ("-" outside a request). Work a request hands to another thread carries
its id with ``bound(request_id())``.
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
#: Where the id is kept: the request's WSGI environ (``g`` may outlive a request: an app context
#: pushed around several requests, as in tests, is shared by them).
_ENVIRON_KEY = "viralspot.request_id"
#: The id of the request a background thread works for (``bound``).
_bound: contextvars.ContextVar[str | None] = contextvars.ContextVar("viralspot_request_id", default=None)


def valid(value: str | None) -> bool:
    return value is not None and VALID.fullmatch(value) is not None


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id() -> str | None:
    """The current request's id (kept from ``X-Request-ID`` or made), or the id bound to this
    thread (``bound``); None outside both."""
    if has_request_context():
        value = request.environ.get(_ENVIRON_KEY)
        if value is None:
            incoming = request.headers.get(HEADER)
            value = request.environ[_ENVIRON_KEY] = incoming if valid(incoming) else new_request_id()
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
