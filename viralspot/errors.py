"""The error envelope and every error handler.

Every error, on every route, answers::

    {"success": false, "detail": ..., "error_code": ..., "timestamp": ..., "troubleshooting": ...}

``ApiError`` (``api_errors.py``) is the one exception views, helpers and the feed raise; the
handlers below turn it, HTTP errors (404, 405, ...), store and database outages (503) and any
unexpected exception (500, traceback to the log only) into that envelope.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from . import metrics
from .api_errors import ApiError
from .feed.errors import FeedConflict, FeedError, SessionLimit
from .schemas.envelope import ErrorEnvelopeSchema
from .store import StoreError
from .timeutil import utc_timestamp

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


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
        if error.error_code == "SESSION_CONFLICT":
            metrics.session_conflict()
        return error_response(error)

    @app.errorhandler(FeedError)
    def handle_feed_error(error: FeedError):
        if isinstance(error, FeedConflict):
            metrics.session_conflict()
            return error_response(ApiError(str(error), "SESSION_CONFLICT"))
        return error_response(ApiError(str(error), "SESSION_LIMIT" if isinstance(error, SessionLimit)
                                       else "INVALID_PARAMETER"))

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
