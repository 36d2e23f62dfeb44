"""The APIResponse envelope ``{success, data, message}`` and the error envelope: the one place
bodies are built (``api_response``, ``error_response``)."""
from __future__ import annotations

from flask import Response, jsonify
from marshmallow import Schema, fields

from ..clock import utc_timestamp


class ApiResponseSchema(Schema):
    """Success envelope."""

    success = fields.Boolean(required=True)
    data = fields.Raw(allow_none=True)
    message = fields.String(allow_none=True)


class ErrorEnvelopeSchema(Schema):
    success = fields.Constant(False)
    detail = fields.String(required=True)
    error_code = fields.String(required=True)
    timestamp = fields.String(required=True)
    troubleshooting = fields.String(required=True)


_envelope = ApiResponseSchema()
_error_envelope = ErrorEnvelopeSchema()


def envelope(data, message: str | None = None) -> dict:
    """A success body, as a dict (a page splices its items into its JSON: ``content/page_response.py``)."""
    return _envelope.dump({"success": True, "data": data, "message": message})


def api_response(data, message: str | None = None, headers=None) -> Response:
    """A success response (200): the envelope of ``data`` and ``message``."""
    response = jsonify(envelope(data, message))
    response.headers.update(headers or {})
    return response


def error_response(detail: str, error_code: str, status: int, troubleshooting: str, **extra) -> Response:
    """An error response: the error envelope, with ``extra`` fields (``/readyz``'s ``checks``)."""
    body = _error_envelope.dump({"detail": detail, "error_code": error_code, "timestamp": utc_timestamp(),
                                 "troubleshooting": troubleshooting})
    response = jsonify({**body, **extra})
    response.status_code = status
    return response
