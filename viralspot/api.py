"""The API layer on flask-smorest: the ``Api`` whose OpenAPI description comes from the routes'
own declarations, and the ``Blueprint`` every route module uses::

    @bp.route("/reels", methods=["GET"])
    @bp.query(ContentQueryArgsSchema)                      # webargs loads, marshmallow validates
    @bp.response(200, ContentPageResponseSchema)           # the success body (documented)
    @bp.errors(*ARGUMENT_ERRORS, *RANDOM_FEED_ERRORS)      # each error_code under its status
    def reels(args): ...

Views return ``Response`` objects, which flask-smorest passes through; argument errors are our 400
envelope (``args.py``), never webargs' 422, and every HTTP error is the envelope (``errors.py``).
"""
from __future__ import annotations

from importlib import metadata
from typing import Any

import flask_smorest
from flask import Flask

from .error_codes import ERROR_CODES
from .args import ApiParser
from .schemas.content import MAX_LIST_VALUES, MAX_VALUE_LENGTH, CommaList
from .schemas.envelope import ErrorEnvelopeSchema
from .schemas.session_id import MAX_SESSION_ID_LENGTH, SessionIdField

TITLE = "ViralSpot content API"
OVERVIEW = """\
Catalog browsing and session-consistent random feeds for the ViralSpot frontend.

**Envelopes.** Every success body is `{success: true, data, message}`. Every error, on every
route, is `{success: false, detail, error_code, timestamp, troubleshooting}`; each operation
lists the `error_code` values it may answer under their HTTP status.

**Random feeds.** `random_order=true` with a `session_id` serves the session's own random order
of the endpoint's filtered catalog: pages never repeat an item within a session until
`POST /api/reset-session`, which starts a fresh order.
"""

#: A malformed or out-of-range query argument; a request line or headers over the server's limits.
ARGUMENT_ERRORS = ("INVALID_PARAMETER", "BAD_REQUEST", "URI_TOO_LONG", "HEADERS_TOO_LARGE")
#: The session_id rules (missing, blank, too long, bad characters).
SESSION_ID_ERRORS = ("MISSING_PARAMETER", "EMPTY_VALUE", "TOO_LONG", "INVALID_FORMAT")
DATABASE_ERRORS = ("DATABASE_UNAVAILABLE",)
STORE_ERRORS = ("SESSION_STORE_UNAVAILABLE",)
RANDOM_FEED_ERRORS = ("SESSION_LIMIT", "SESSION_NOT_FOUND", "SESSION_STORE_UNAVAILABLE", "SESSION_CONFLICT")
#: Every /api/ route: over the client's rate limit.
LIMITED = ("RATE_LIMITED",)
#: Session inspection and /metrics when VIRALSPOT_ADMIN_TOKEN is set.
ADMIN_ONLY = ("UNAUTHORIZED",)
_SECONDS = {"schema": {"type": "integer", "minimum": 0}}
#: Headers of a status's error responses.
_ERROR_HEADERS = {
    429: {"Retry-After": {"description": "Seconds until the client's limit resets.", **_SECONDS},
          "RateLimit-Limit": {"description": "Requests the limit allows in its window.", **_SECONDS},
          "RateLimit-Remaining": {"description": "Requests left in the window (0).", **_SECONDS},
          "RateLimit-Reset": {"description": "Seconds until the window resets.", **_SECONDS}},
    401: {"WWW-Authenticate": {"description": 'Bearer realm="viralspot"', "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying (a store failover takes about 2).",
                          **_SECONDS}},
}
#: Every operation may answer these: gunicorn's refusals of a request it cannot read (``gunicorn_worker.py``),
#: and an unexpected error.
ALWAYS_ERRORS = ("BAD_REQUEST", "REQUEST_TIMEOUT", "URI_TOO_LONG", "HEADERS_TOO_LARGE", "INTERNAL_ERROR")
ERROR_SCHEMA = "ErrorEnvelope"
#: The session_id rule (``schemas/session_id.py``) as a JSON Schema pattern, once stripped.
SESSION_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
EXAMPLE_SESSION_ID = "user_session_abc123"
_EXAMPLE_TIMESTAMP = "2024-01-15T10:30:00.000Z"


def error_example(code: str) -> dict:
    """The documented example body of ``code``."""
    return {"success": False, "detail": code.replace("_", " ").capitalize(), "error_code": code,
            "timestamp": _EXAMPLE_TIMESTAMP, "troubleshooting": ERROR_CODES[code][1]}


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint, with our argument errors and error-code declarations."""

    ARGUMENTS_PARSER = ApiParser()

    def query(self, schema, location: str = "query"):
        """Load the view's arguments with ``schema``, one instance for every request."""
        declare = self.arguments(schema() if isinstance(schema, type) else schema, location=location, as_kwargs=False)

        def decorate(view):
            wrapped = declare(view)
            # The parser answers our 400 envelope, documented by ``errors``, not webargs' 422.
            wrapped._apidoc["arguments"].pop("responses", None)
            return wrapped

        return decorate

    def errors(self, *codes: str, bodies: dict[int, type] | None = None, headers: dict[int, dict] | None = None):
        """Document the ``error_code`` values the operation may answer, grouped under their status
        (``bodies``: a status's own body schema; ``headers``: its headers beyond every route's)."""
        unknown = [code for code in codes if code not in ERROR_CODES]
        if unknown:
            raise ValueError(f"unknown error codes {unknown}; see viralspot.error_codes.ERROR_CODES")
        by_status: dict[int, list[str]] = {}
        for code in dict.fromkeys((*codes, *ALWAYS_ERRORS)):
            by_status.setdefault(ERROR_CODES[code][0], []).append(code)
        # Optional: the token is needed only when the server sets one (VIRALSPOT_ADMIN_TOKEN).
        doc = {"security": [{"admin_token": []}, {}]} if "UNAUTHORIZED" in codes else {}

        def decorate(view):
            for status, status_codes in sorted(by_status.items()):
                body = (bodies or {}).get(status)
                reference = body or {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
                lines = "\n".join(f"- `{code}`: {ERROR_CODES[code][1]}" for code in status_codes)
                extra = getattr(body, "example_fields", lambda code: {})
                view = self.alt_response(
                    status, schema={"allOf": [reference, {"type": "object", "properties": {
                        "error_code": {"type": "string", "enum": status_codes}}}]},
                    description=f"`error_code` is one of:\n\n{lines}",
                    headers={**_ERROR_HEADERS.get(status, {}), **(headers or {}).get(status, {})} or None,
                    examples={code: {"summary": code, "value": {**error_example(code), **extra(code)}}
                              for code in status_codes})(view)
            return self.doc(operationId=f"{self.name}_{view.__name__}", **doc)(view)

        return decorate


def _field_properties(self, field, ret=None, **kwargs) -> dict:
    """Comma lists are arrays (serialized ``a,b,c``); session ids carry their rule."""
    if isinstance(field, CommaList):
        items: dict[str, Any] = {"type": "string", "maxLength": MAX_VALUE_LENGTH}  # blank items are dropped
        choices = field.metadata.get("item_choices")
        if choices:
            items["enum"] = list(choices)
        return {"type": "array", "items": items}
    if isinstance(field, SessionIdField):
        return {"type": "string", "minLength": 1, "maxLength": MAX_SESSION_ID_LENGTH, "pattern": SESSION_ID_PATTERN,
                "example": EXAMPLE_SESSION_ID}
    return {}


def _parameter_properties(self, field, ret=None, **kwargs) -> dict:
    """Arrays travel comma-separated; a blank filter counts as absent; min_x names its max_x."""
    if ret.get("schema", {}).get("type") == "array":
        ret["style"], ret["explode"] = "form", False
        # Counted once blanks are dropped (a maxItems on the raw list would overstate it).
        ret["description"] = f"{ret.get('description') or ''} At most {MAX_LIST_VALUES} non-blank values.".strip()
    if ret.get("in") == "query" and not ret.get("required") and ret.get("name") != "session_id":
        ret["allowEmptyValue"] = True
    name = ret.get("name", "")
    if name.startswith("min_") and f"max_{name[4:]}" in getattr(field.parent, "fields", {}):
        ret["description"] = f"{ret.get('description') or ''} Must not exceed max_{name[4:]}.".strip()
    return ret


class Api(flask_smorest.Api):
    """flask-smorest's ``Api``; its errors are answered by ``errors.py``'s handler, with our envelope."""

    DEFAULT_ERROR_RESPONSE_NAME = None

    def init_app(self, app: Flask, *, spec_kwargs=None) -> None:
        try:
            version = metadata.version("viralspot")
        except metadata.PackageNotFoundError:  # pragma: no cover - a tree that is not installed
            version = "0.0.0"
        for name, value in {"API_TITLE": TITLE, "API_VERSION": version, "OPENAPI_VERSION": "3.0.3",
                            "OPENAPI_URL_PREFIX": "/api", "OPENAPI_JSON_PATH": "openapi.json"}.items():
            app.config.setdefault(name, value)
        super().init_app(app, spec_kwargs={"info": {"description": OVERVIEW}, **(spec_kwargs or {})})
        converter = self.ma_plugin.converter
        converter.add_attribute_function(_field_properties)
        converter.add_parameter_attribute_function(_parameter_properties)
        envelope = converter.schema2jsonschema(ErrorEnvelopeSchema)
        envelope["properties"]["success"] = {"type": "boolean", "enum": [False]}
        envelope["properties"]["error_code"] = {"type": "string", "enum": list(ERROR_CODES)}
        envelope["properties"]["timestamp"]["format"] = "date-time"
        envelope["required"] = ["success", *envelope.get("required", [])]
        envelope["description"] = "Every error, on every route."
        self.spec.components.schema(ERROR_SCHEMA, envelope)
        self.spec.components.security_scheme("admin_token", {"type": "http", "scheme": "bearer", "description": (
            "VIRALSPOT_ADMIN_TOKEN, needed only when the server sets one.")})

    def _register_responses(self) -> None:
        """None: flask-smorest's default error responses (and their ``Error`` schema, which is not
        our envelope) would describe errors this service never answers; routes declare theirs."""

    def _register_pagination_header(self) -> None:
        """None: no route pages by flask-smorest's pagination header (``PaginationMetadata``)."""

    def _register_error_handlers(self) -> None:
        """None here: ``errors.py`` answers every error with the envelope."""
