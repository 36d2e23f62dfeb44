"""Query arguments of the session endpoints."""
from marshmallow import Schema

from .session_id import SessionIdField


class ResetSessionArgsSchema(Schema):
    session_id = SessionIdField(required=True)
