"""``@documented(...)``: what one route takes and answers, declared next to the route.

Put it right under the route decorator::

    @bp.get("/reels")
    @documented("One page of reels", query=ContentQueryArgsSchema, response=ContentPageResponseSchema,
                errors=ARGUMENT_ERRORS + SESSION_ID_ERRORS + RANDOM_FEED_ERRORS + DATABASE_ERRORS)
    @use_args(present_arguments(ContentQueryArgsSchema))
    def reels(args): ...

``query`` and ``path`` are the marshmallow schemas the view loads its arguments
with (each field becomes a parameter with its type, range, default and allowed
values); ``response`` is the schema of the 200 body; ``errors`` are the
``error_code`` values (``viralspot.errors.ERROR_CODES``) the operation may
answer, grouped into responses by their status. ``INTERNAL_ERROR`` (500) is
added to every operation. ``error_bodies`` ({status: schema}) replaces the error
envelope of that status with a subclass of ``ErrorEnvelopeSchema`` carrying more
fields (its optional ``example_fields(code)`` adds them to the examples). A route
without a declaration is missing from ``/api/openapi.json``, and
tests/test_openapi.py fails; mark a route that is not part of the API (a static
asset) with ``@not_documented``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from marshmallow import Schema

F = TypeVar("F", bound=Callable[..., Any])

#: Attribute of a view function holding its ``Operation``.
OPERATION_ATTR = "__openapi_operation__"
#: Attribute of a view function that is deliberately left out of the description.
EXCLUDED_ATTR = "__openapi_excluded__"

#: A malformed or out-of-range query argument.
ARGUMENT_ERRORS = ("INVALID_PARAMETER", "BAD_REQUEST")
#: The session_id rules (missing, blank, too long, bad characters).
SESSION_ID_ERRORS = ("MISSING_PARAMETER", "EMPTY_VALUE", "TOO_LONG", "INVALID_FORMAT")
#: The catalog database is down.
DATABASE_ERRORS = ("DATABASE_UNAVAILABLE",)
#: The session store is down.
STORE_ERRORS = ("SESSION_STORE_UNAVAILABLE",)
#: A random page: the session store, and a session too busy with concurrent requests.
RANDOM_FEED_ERRORS = ("SESSION_LIMIT", "SESSION_STORE_UNAVAILABLE", "SESSION_CONFLICT")

SchemaLike = type[Schema] | Schema
#: A success body: a marshmallow schema, or a JSON schema dict (non-JSON bodies, free-form JSON).
BodyLike = SchemaLike | Mapping[str, Any]


@dataclass(frozen=True)
class Operation:
    """One route's declaration; ``spec.build_spec`` turns it into an OpenAPI operation."""

    summary: str
    description: str | None = None
    query: SchemaLike | None = None
    path: SchemaLike | None = None
    response: BodyLike | None = None
    response_description: str = "Success"
    media_type: str = "application/json"
    #: name -> {"summary", "value"}, or a callable returning that (built when the description is).
    examples: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None
    errors: tuple[str, ...] = ()
    #: status -> the error body schema of that status, when it extends the envelope.
    error_bodies: Mapping[int, SchemaLike] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def documented(summary: str, *, description: str | None = None, query: SchemaLike | None = None,
               path: SchemaLike | None = None, response: BodyLike | None = None,
               response_description: str = "Success", media_type: str = "application/json",
               examples: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
               errors: tuple[str, ...] | list[str] = (), tags: tuple[str, ...] | list[str] = (),
               error_bodies: Mapping[int, SchemaLike] | None = None, **extra: Any) -> Callable[[F], F]:
    """Attach an ``Operation`` to the view; ``extra`` keys are copied into the OpenAPI operation."""
    operation = Operation(summary=summary, description=description, query=query, path=path, response=response,
                          response_description=response_description, media_type=media_type, examples=examples,
                          errors=tuple(dict.fromkeys(errors)), error_bodies=dict(error_bodies or {}),
                          tags=tuple(tags), extra=dict(extra))

    def decorate(view: F) -> F:
        setattr(view, OPERATION_ATTR, operation)
        return view

    return decorate


def not_documented(view: F) -> F:
    """Leave this route out of the description on purpose (static assets)."""
    setattr(view, EXCLUDED_ATTR, True)
    return view


def operation_of(view: Callable) -> Operation | None:
    return getattr(view, OPERATION_ATTR, None)


def is_excluded(endpoint: str, view: Callable | None) -> bool:
    """Static-file endpoints (the app's and blueprints') and views marked ``not_documented``."""
    if endpoint == "static" or endpoint.endswith(".static"):
        return True
    return bool(getattr(view, EXCLUDED_ATTR, False))
