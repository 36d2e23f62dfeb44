"""The ``session_id`` argument (alone in ``SessionIdArgsSchema``, of the session endpoints): stripped, then
checked in the documented order; each failure carries its ``error_code`` on the message (``CodedMessage``)."""
from __future__ import annotations

import re

from marshmallow import Schema, ValidationError, fields

MAX_SESSION_ID_LENGTH = 255
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9._-]+\Z", re.ASCII)

MISSING_MESSAGE = "session_id parameter is required"
EMPTY_MESSAGE = "session_id cannot be empty"
TOO_LONG_MESSAGE = "session_id is too long (maximum 255 characters)"
INVALID_MESSAGE = "session_id contains invalid characters (only alphanumeric, dots, underscores, and hyphens allowed)"


class CodedMessage(str):
    """A validation message that knows its API error code."""

    def __new__(cls, text: str, error_code: str):
        message = super().__new__(cls, text)
        message.error_code = error_code
        return message


def validate_session_id(raw: str) -> str:
    """Return the stripped session id or raise ``ValidationError`` with a coded message."""
    value = raw.strip()
    if not value:
        raise ValidationError(CodedMessage(EMPTY_MESSAGE, "EMPTY_VALUE"))
    if len(value) > MAX_SESSION_ID_LENGTH:
        raise ValidationError(CodedMessage(TOO_LONG_MESSAGE, "TOO_LONG"))
    if not _SESSION_ID_RE.match(value):
        raise ValidationError(CodedMessage(INVALID_MESSAGE, "INVALID_FORMAT"))
    return value


class SessionIdField(fields.String):
    default_error_messages = {
        "required": CodedMessage(MISSING_MESSAGE, "MISSING_PARAMETER"),
        "null": CodedMessage(MISSING_MESSAGE, "MISSING_PARAMETER"),
    }

    def _deserialize(self, value, attr, data, **kwargs):
        return validate_session_id(super()._deserialize(value, attr, data, **kwargs))


class SessionIdArgsSchema(Schema):
    session_id = SessionIdField(required=True)
