"""The APIResponse envelope ``{success, data, message, error}`` and the error envelope."""
from marshmallow import Schema, fields, post_dump


class ApiResponseSchema(Schema):
    """Success envelope. ``error`` is written only when set, as the documented bodies show."""

    success = fields.Boolean(required=True)
    data = fields.Raw(allow_none=True)
    message = fields.String(allow_none=True)
    error = fields.String(allow_none=True)

    @post_dump
    def drop_unset_error(self, body, **kwargs):
        if body.get("error") is None:
            body.pop("error", None)
        return body


class ErrorEnvelopeSchema(Schema):
    success = fields.Constant(False)
    detail = fields.String(required=True)
    error_code = fields.String(required=True)
    timestamp = fields.String(required=True)
    troubleshooting = fields.String(required=True)


_envelope = ApiResponseSchema()


def api_response(data, message: str | None = None, success: bool = True) -> dict:
    """The one way views build a success body."""
    return _envelope.dump({"success": success, "data": data, "message": message})
