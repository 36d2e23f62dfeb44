"""The APIResponse envelope ``{success, data, message}`` and the error envelope: the one place
bodies are built (``api_response``, ``error_response``)."""
from __future__ import annotations

from flask import Response, jsonify
from marshmallow import Schema, fields

from ..clock import utc_timestamp
from ..error_codes import ApiError

#: Seconds a 503 (a dependency down, a session busy) asks the client to wait before retrying: about
#: what a Redis failover takes.
RETRY_AFTER_UNAVAILABLE = "2"


class ErrorEnvelopeSchema(Schema):
    """Error envelope (its OpenAPI description; ``error_response`` builds the bodies)."""

    success = fields.Constant(False)
    detail = fields.String(required=True)
    error_code = fields.String(required=True)
    timestamp = fields.String(required=True)
    troubleshooting = fields.String(required=True)


def envelope(data, message: str | None = None) -> dict:
    """A success body, as a dict (a page splices its items into its JSON: ``content/page_response.py``)."""
    return {"success": True, "data": data, "message": message}


def api_response(data, message: str | None = None, headers=None) -> Response:
    """A success response (200): the envelope of ``data`` and ``message``."""
    response = jsonify(envelope(data, message))
    response.headers.update(headers or {})
    return response


def error_response(error: ApiError, **extra) -> Response:
    """The error envelope of ``error``, with ``extra`` fields (``/readyz``'s ``checks``); a 503 says
    when to retry (``Retry-After``)."""
    response = jsonify({"success": False, "detail": error.detail, "error_code": error.error_code,
                        "timestamp": utc_timestamp(), "troubleshooting": error.troubleshooting, **extra})
    response.status_code = error.status
    if error.status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_UNAVAILABLE
    return response
