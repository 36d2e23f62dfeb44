"""OpenAPI 3 from the app's url_map and each route's ``@documented`` declaration.

``build_spec(app)`` visits every rule of the app (but static files and routes
marked ``not_documented``), takes the view's ``Operation`` and lets apispec's
marshmallow plugin turn its schemas into parameters and bodies. The error
responses are built from ``viralspot.errors.ERROR_CODES``: each declared code
goes under its status, with its troubleshooting text and an example body.
``undocumented_routes(app)`` names the routes a description would lack.
"""
from __future__ import annotations

import re
from importlib import metadata
from typing import Any, Iterator

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from marshmallow import Schema
from werkzeug.routing import Rule
from werkzeug.routing.converters import FloatConverter, IntegerConverter, UUIDConverter

from ..api_errors import ERROR_CODES
from ..schemas.content import MAX_LIST_VALUES, MAX_VALUE_LENGTH, CommaList
from ..schemas.envelope import ErrorEnvelopeSchema
from ..schemas.session_id import MAX_SESSION_ID_LENGTH, SessionIdField
from . import descriptions
from .declare import Operation, is_excluded, operation_of

OPENAPI_VERSION = "3.0.3"
ERROR_SCHEMA = "ErrorEnvelope"
ALWAYS_ERRORS = ("INTERNAL_ERROR",)
#: The session_id rule (``schemas/session_id.py``) as a JSON Schema pattern, once stripped.
SESSION_ID_PATTERN = r"^[A-Za-z0-9._-]+$"
#: The session the examples name (the reset examples' too).
EXAMPLE_SESSION_ID = "user_session_abc123"
_IGNORED_METHODS = {"HEAD", "OPTIONS"}
_RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_STATUS_NAMES = {400: "Bad request", 404: "Not found", 405: "Method not allowed", 500: "Internal server error",
                 503: "Service unavailable"}
_EXAMPLE_TIMESTAMP = "2024-01-15T10:30:00.000Z"


def _version() -> str:
    try:
        return metadata.version("viralspot")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree that is not installed
        return "0.0.0"


def openapi_path(rule: Rule) -> str:
    """``/api/sessions/<session_id>`` -> ``/api/sessions/{session_id}``."""
    return _RULE_ARGUMENT.sub(lambda match: "{" + match.group(1) + "}", rule.rule)


def operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
    return f"{method.lower()}_{words or 'root'}"


def documented_routes(app: Flask) -> Iterator[tuple[Rule, str, Operation]]:
    """(rule, method, operation) of every documented route, in registration order."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if is_excluded(rule.endpoint, view):
            continue
        operation = operation_of(view) if view is not None else None
        if operation is None:
            continue
        for method in sorted(set(rule.methods or ()) - _IGNORED_METHODS):
            yield rule, method, operation


def undocumented_routes(app: Flask) -> list[str]:
    """``"GET /path (endpoint)"`` of every route that is neither documented nor excluded."""
    missing = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        if is_excluded(rule.endpoint, view) or (view is not None and operation_of(view) is not None):
            continue
        methods = ",".join(sorted(set(rule.methods or ()) - _IGNORED_METHODS))
        missing.append(f"{methods} {rule.rule} ({rule.endpoint})")
    return missing


# --- marshmallow -> OpenAPI: what the plugin does not know about our fields -----------------------

def _field_properties(self, field, ret=None, **kwargs) -> dict:
    """Comma lists are arrays (serialized ``a,b,c``); session ids carry their rule."""
    if isinstance(field, CommaList):
        items: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_LENGTH}
        choices = field.metadata.get("item_choices")
        if choices:
            items["enum"] = list(choices)
        return {"type": "array", "items": items, "maxItems": MAX_LIST_VALUES}
    if isinstance(field, SessionIdField):
        return {"type": "string", "minLength": 1, "maxLength": MAX_SESSION_ID_LENGTH, "pattern": SESSION_ID_PATTERN,
                "example": EXAMPLE_SESSION_ID}
    return {}


def _parameter_properties(self, field, ret=None, **kwargs) -> dict:
    """Arrays travel comma-separated (``style: form, explode: false``); arguments get their sentence."""
    schema = ret.get("schema", {})
    if schema.get("type") == "array":
        ret["style"], ret["explode"] = "form", False
    if ret.get("in") == "path":
        ret["required"] = True
    name = ret.get("name", "")
    sentence = ret.get("description") or descriptions.ARGUMENTS.get(name)
    if name.startswith("min_") and f"max_{name[4:]}" in getattr(field.parent, "fields", {}):
        sentence = f"{sentence or ''} Must not exceed max_{name[4:]}.".strip()
    if sentence:
        ret["description"] = sentence
    return ret


def _plugin_for(spec: APISpec) -> MarshmallowPlugin:
    return next(plugin for plugin in spec.plugins if isinstance(plugin, MarshmallowPlugin))


def _new_spec() -> APISpec:
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=descriptions.TITLE,
        version=_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": descriptions.OVERVIEW},
    )
    plugin.converter.add_attribute_function(_field_properties)
    plugin.converter.add_parameter_attribute_function(_parameter_properties)
    return spec


# --- errors ---------------------------------------------------------------------------------------

def _error_component(spec: APISpec, schema: type[Schema] = ErrorEnvelopeSchema) -> dict:
    """The error envelope (``ErrorEnvelopeSchema``, or a subclass with more fields) with ``error_code``
    restricted to ``ERROR_CODES``."""
    component = _plugin_for(spec).converter.schema2jsonschema(schema)
    component["properties"]["success"] = {"type": "boolean", "enum": [False]}
    component["properties"]["error_code"] = {"type": "string", "enum": list(ERROR_CODES)}
    component["properties"]["timestamp"]["format"] = "date-time"
    component["required"] = ["success", *[name for name in component.get("required", []) if name != "success"]]
    component["description"] = ("Every error, on every route." if schema is ErrorEnvelopeSchema
                                else " ".join((schema.__doc__ or "").split()))
    return component


def _error_bodies(spec: APISpec | None, operation: Operation, where: str) -> dict[int, tuple[str, Any]]:
    """{status: (component name, example_fields or None)} of the operation's ``error_bodies``,
    each registered once as a component beside the plain envelope."""
    bodies = {}
    for status, schema in operation.error_bodies.items():
        schema_class = schema if isinstance(schema, type) else type(schema)
        if spec is None or not issubclass(schema_class, ErrorEnvelopeSchema):
            raise ValueError(f"{where}: error_bodies[{status}] must extend ErrorEnvelopeSchema (and needs a spec)")
        name = schema_class.__name__.removesuffix("Schema")
        if name not in spec.components.schemas:
            spec.components.schema(name, _error_component(spec, schema_class))
        bodies[int(status)] = (name, getattr(schema_class, "example_fields", None))
    return bodies


def error_example(code: str) -> dict:
    status, troubleshooting = ERROR_CODES[code]
    return {"success": False, "detail": f"{_STATUS_NAMES.get(status, 'Error')} ({code})", "error_code": code,
            "timestamp": _EXAMPLE_TIMESTAMP, "troubleshooting": troubleshooting}


def error_responses(codes: tuple[str, ...], where: str,
                    bodies: dict[int, tuple[str, Any]] | None = None) -> dict[str, dict]:
    """``{status: response}`` for ``codes`` (plus ``ALWAYS_ERRORS``), each status listing its codes;
    ``bodies`` (``_error_bodies``) names the envelope component of a status that extends it."""
    bodies = bodies or {}
    unknown = [code for code in codes if code not in ERROR_CODES]
    if unknown:
        raise ValueError(f"{where} declares unknown error codes {unknown}; see viralspot.errors.ERROR_CODES")
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*codes, *ALWAYS_ERRORS)):
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    if set(bodies) - set(by_status):
        raise ValueError(f"{where} declares error bodies for statuses {sorted(set(bodies) - set(by_status))} "
                         "without an error code of that status")
    responses = {}
    for status in sorted(by_status):
        status_codes = by_status[status]
        component, example_fields = bodies.get(status, (ERROR_SCHEMA, None))
        lines = "\n".join(f"- `{code}`: {ERROR_CODES[code][1]}" for code in status_codes)
        responses[str(status)] = {
            "description": f"{_STATUS_NAMES.get(status, 'Error')}. `error_code` is one of:\n\n{lines}",
            "content": {"application/json": {
                "schema": {"allOf": [
                    {"$ref": f"#/components/schemas/{component}"},
                    {"type": "object", "properties": {"error_code": {"type": "string", "enum": status_codes}}},
                ]},
                "examples": {code: {"summary": code, "value": {**error_example(code),
                                                              **(example_fields(code) if example_fields else {})}}
                             for code in status_codes},
            }},
        }
    return responses


# --- operations -----------------------------------------------------------------------------------

def _path_parameters(rule: Rule, operation: Operation) -> list[dict]:
    """Declared path schema first; any rule argument it lacks gets its converter's type."""
    parameters: list[dict] = []
    declared: set[str] = set()
    if operation.path is not None:
        parameters.append({"in": "path", "schema": operation.path})
        schema = operation.path() if isinstance(operation.path, type) else operation.path
        declared = set(schema.fields)
    for name in rule.arguments:
        if name in declared:
            continue
        converter = rule._converters.get(name)  # noqa: SLF001 - werkzeug keeps them only there
        if isinstance(converter, IntegerConverter):
            schema_dict: dict[str, Any] = {"type": "integer"}
        elif isinstance(converter, FloatConverter):
            schema_dict = {"type": "number"}
        elif isinstance(converter, UUIDConverter):
            schema_dict = {"type": "string", "format": "uuid"}
        else:
            schema_dict = {"type": "string"}
        parameters.append({"in": "path", "name": name, "required": True, "schema": schema_dict})
    return parameters


def _success_response(operation: Operation) -> dict:
    media: dict[str, Any] = {}
    body = operation.response
    if body is None:
        body = {"type": "string"} if not operation.media_type.endswith("json") else {"type": "object"}
    media["schema"] = dict(body) if not _is_schema(body) else body
    examples = operation.examples() if callable(operation.examples) else operation.examples
    if examples:
        media["examples"] = dict(examples)
    return {"description": operation.response_description, "content": {operation.media_type: media}}


def _is_schema(body: Any) -> bool:
    return isinstance(body, Schema) or (isinstance(body, type) and issubclass(body, Schema))


def operation_object(rule: Rule, method: str, operation: Operation, spec: APISpec | None = None) -> dict:
    path = openapi_path(rule)
    where = f"{method} {rule.rule}"
    bodies = _error_bodies(spec, operation, where) if operation.error_bodies else None
    parameters = _path_parameters(rule, operation)
    if operation.query is not None:
        parameters.append({"in": "query", "schema": operation.query})
    tags = list(operation.tags) or [rule.endpoint.split(".", 1)[0] if "." in rule.endpoint else "default"]
    body: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": operation.summary,
        "tags": tags,
    }
    if operation.description:
        body["description"] = operation.description
    if parameters:
        body["parameters"] = parameters
    body["responses"] = {"200": _success_response(operation),
                         **error_responses(operation.errors, where, bodies)}
    body.update(operation.extra)
    return body


def build_spec(app: Flask) -> dict:
    """The OpenAPI description of every documented route of ``app``, as a dict."""
    spec = _new_spec()
    spec.components.schema(ERROR_SCHEMA, _error_component(spec))
    used_tags: list[str] = []
    for rule, method, operation in documented_routes(app):
        operation_body = operation_object(rule, method, operation, spec)
        used_tags.extend(tag for tag in operation_body["tags"] if tag not in used_tags)
        spec.path(path=openapi_path(rule), operations={method.lower(): operation_body})
    for tag in used_tags:
        spec.tag({"name": tag, **({"description": descriptions.TAGS[tag]} if tag in descriptions.TAGS else {})})
    return spec.to_dict()
