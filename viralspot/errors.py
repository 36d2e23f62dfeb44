"""The one error mapper: every error, on every route, answers the envelope::

    {"success": false, "detail": ..., "error_code": ..., "timestamp": ..., "troubleshooting": ...}

Views raise ``ApiError``; the domain's own exceptions, HTTP errors and anything unexpected (500,
traceback to the log only) are mapped here.
"""
from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from . import metrics
from .error_codes import ApiError
from .feed.errors import FeedConflict, FeedError
from .schemas.envelope import error_response
from .schemas.responses import SESSION_ORDER_HEADER
from .store import StoreError

log = logging.getLogger(__name__)

_HTTP_CODES = {401: "UNAUTHORIZED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT",
               414: "URI_TOO_LONG", 429: "RATE_LIMITED", 431: "HEADERS_TOO_LARGE"}


def api_error(error: Exception) -> ApiError:
    """The ``ApiError`` an exception is answered with."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, FeedError):
        return ApiError(str(error), error.error_code)
    if isinstance(error, StoreError):
        return ApiError("Session store is unavailable", "SESSION_STORE_UNAVAILABLE")
    if isinstance(error, (DatabaseOperationalError, PoolTimeout)):  # PoolTimeout: no connection came free
        return ApiError("Content database is unavailable", "DATABASE_UNAVAILABLE")
    if isinstance(error, HTTPException):
        status = error.code or 500
        code = _HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        detail = error.description or error.name
        if code == "RATE_LIMITED":  # flask-limiter's description is the limit ("30 per 1 minute")
            detail = f"Too many requests from this client: at most {detail}"
        return ApiError(detail, code, status=status)
    return ApiError("Internal server error", "INTERNAL_ERROR")


def _driver_message(error: DatabaseOperationalError | PoolTimeout) -> str:
    """The driver's error class and the first line of its message (no SQL, no bound values)."""
    cause = getattr(error, "orig", None) or error
    return f"{type(cause).__name__}: {(str(cause).strip().splitlines() or [''])[0]}"


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(Exception)
    def handle(error: Exception):
        mapped = api_error(error)
        if isinstance(error, StoreError):
            # One line, as for the database: an outage or a failover logs one per request.
            log.error("session store unavailable: %s: %s", type(error).__name__, error)
            metrics.count("store_errors", metrics.store_error_kind(error))
        elif isinstance(error, (DatabaseOperationalError, PoolTimeout)):  # one line: an outage logs one per request
            log.error("database unavailable: %s", _driver_message(error))
            metrics.count("database_errors")
        elif isinstance(error, FeedConflict):
            log.warning("random feed kept changing under a page; answering 503")
            metrics.count("session_conflicts")
        elif mapped.error_code == "INTERNAL_ERROR" and not isinstance(error, HTTPException):
            log.exception("unhandled error", exc_info=error)
            if app.debug:
                mapped = ApiError(f"Internal server error: {type(error).__name__}: {error}", "INTERNAL_ERROR")
        response = error_response(mapped)
        if isinstance(error, FeedError):  # about one session, as its pages are: never kept by a cache
            response.headers["Cache-Control"] = "no-store"
            if error.order_id:  # the session the page met: a client holding another order lost its own
                response.headers[SESSION_ORDER_HEADER] = error.order_id
        if mapped.error_code == "UNAUTHORIZED":
            response.headers["WWW-Authenticate"] = 'Bearer realm="viralspot"'
            response.headers["Cache-Control"] = "no-store"
        if isinstance(error, HTTPException) and error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response
