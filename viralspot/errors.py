"""The error envelope and every error handler.

Every error, on every route, answers::

    {"success": false, "detail": ..., "error_code": ..., "timestamp": ..., "troubleshooting": ...}

``ApiError`` is the one exception views and helpers raise; the handlers below
turn it, HTTP errors (404, 405, ...), store and database outages (503) and any
unexpected exception (500, traceback to the log only) into that envelope.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import metrics
from .feed.random_feed import FeedConflict
from .schemas.envelope import ErrorEnvelopeSchema
from .store import StoreError
from .timeutil import utc_timestamp

log = logging.getLogger(__name__)

#: error_code -> (default HTTP status, troubleshooting text). The README lists these.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "MISSING_PARAMETER": (400, "Add the required query parameter to the request"),
    "EMPTY_VALUE": (400, "Provide a non-empty value for the parameter"),
    "TOO_LONG": (400, "Use a session ID of at most 255 characters"),
    "INVALID_FORMAT": (400, "Use only letters, numbers, dots, underscores, and hyphens in session IDs"),
    "INVALID_PARAMETER": (400, "Check the parameter's type and allowed range in the API documentation"),
    "BAD_REQUEST": (400, "Check the request's syntax and parameters"),
    "NOT_FOUND": (404, "Check the URL; the API lives under /api (see GET /health)"),
    "SESSION_NOT_FOUND": (404, "A session exists from its first random page until it is reset or idle for the session TTL"),
    "METHOD_NOT_ALLOWED": (405, "Use the HTTP method the endpoint documents"),
    "SESSION_CONFLICT": (503, "The session is busy with concurrent requests; retry shortly"),
    "SESSION_STORE_UNAVAILABLE": (503, "The session store cannot be reached; retry shortly"),
    "DATABASE_UNAVAILABLE": (503, "The content database cannot be reached; retry shortly"),
    "INTERNAL_ERROR": (500, "Please retry the request. If the problem persists, contact system administrator"),
}

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


class ApiError(Exception):
    """An error answered with the envelope. ``error_code`` is one of ``ERROR_CODES``."""

    def __init__(self, detail: str, error_code: str = "BAD_REQUEST", status: int | None = None,
                 troubleshooting: str | None = None) -> None:
        super().__init__(detail)
        default_status, default_help = ERROR_CODES[error_code]
        self.detail = detail
        self.error_code = error_code
        self.status = status or default_status
        self.troubleshooting = troubleshooting or default_help


def error_response(error: ApiError):
    body = ErrorEnvelopeSchema().dump({
        "detail": error.detail,
        "error_code": error.error_code,
        "timestamp": utc_timestamp(),
        "troubleshooting": error.troubleshooting,
    })
    response = jsonify(body)
    response.status_code = error.status
    return response


def register_errorhandlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError):
        return error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        code = _HTTP_CODES.get(error.code or 500, "BAD_REQUEST" if (error.code or 500) < 500 else "INTERNAL_ERROR")
        api_error = ApiError(error.description or error.name, code, status=error.code)
        response = error_response(api_error)
        if error.code == 405 and getattr(error, "valid_methods", None):
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(StoreError)
    def handle_store_error(error: StoreError):
        log.error("session store unavailable: %s", type(error).__name__, exc_info=error)
        metrics.store_error(error)
        return error_response(ApiError("Session store is unavailable", "SESSION_STORE_UNAVAILABLE"))

    @app.errorhandler(FeedConflict)
    def handle_feed_conflict(error: FeedConflict):
        log.warning("random feed claim kept conflicting; answering 503")
        metrics.session_conflict()
        return error_response(ApiError("Too many concurrent requests for this session", "SESSION_CONFLICT"))

    @app.errorhandler(DatabaseOperationalError)
    def handle_database_down(error: DatabaseOperationalError):
        log.error("database unavailable", exc_info=error)
        metrics.database_error()
        return error_response(ApiError("Content database is unavailable", "DATABASE_UNAVAILABLE"))

    @app.errorhandler(SQLAlchemyError)
    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error", exc_info=error)
        detail = "Internal server error"
        if app.debug:
            detail = f"Internal server error: {type(error).__name__}: {error}"
        return error_response(ApiError(detail, "INTERNAL_ERROR"))
