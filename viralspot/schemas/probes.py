"""Bodies of the orchestrator probes ``GET /livez`` and ``GET /readyz`` (``viralspot/health.py``)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from .envelope import ErrorEnvelopeSchema
from .responses import success_envelope

#: What one readiness check found: answered, answered "down" or raised, or no answer in time.
CHECK_STATES = ("ok", "unavailable", "timeout")


class LivenessDataSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["alive"]))
    service = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})


#: ``GET /livez``: the process serves requests; no dependency is asked.
LivenessResponseSchema = success_envelope("LivenessResponseSchema", LivenessDataSchema)


class CheckResultSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(CHECK_STATES))
    seconds = fields.Float(required=True, validate=validate.Range(min=0),
                           metadata={"description": "How long the check took (or was waited for)."})


class ReadinessChecksSchema(Schema):
    session_store = fields.Nested(CheckResultSchema, required=True,
                                  metadata={"description": "The session store's ping."})
    database = fields.Nested(CheckResultSchema, required=True, metadata={
        "description": "The catalog state (version and largest id) read from the database."})


class ReadinessDataSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready"]))
    service = fields.String(required=True)
    checks = fields.Nested(ReadinessChecksSchema, required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})


#: ``GET /readyz`` when every check passed.
ReadinessResponseSchema = success_envelope("ReadinessResponseSchema", ReadinessDataSchema)


class ReadinessErrorSchema(ErrorEnvelopeSchema):
    """``GET /readyz`` when a check failed: the error envelope plus the result of each check."""

    checks = fields.Nested(ReadinessChecksSchema, required=True)

    @staticmethod
    def example_fields(code: str) -> dict:
        """The ``checks`` of the documented 503 example of ``code``."""
        down = "database" if code == "DATABASE_UNAVAILABLE" else "session_store"
        return {"checks": {name: ({"status": "timeout", "seconds": 1.0} if name == down
                                  else {"status": "ok", "seconds": 0.0012})
                           for name in ("session_store", "database")}}
