"""Arguments of the session endpoints: ``session_id``, in the reset's query or the inspection's path."""
from marshmallow import Schema

from .session_id import SessionIdField


class SessionIdArgsSchema(Schema):
    session_id = SessionIdField(required=True)
