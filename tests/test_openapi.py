"""The OpenAPI description: valid, complete (every route), generated from the schemas, and true to
what the service answers (real responses validated against it)."""
from __future__ import annotations

import json
import re

import pytest
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec

from viralspot.catalog.filters import ACCOUNT_TYPES, CONTENT_TYPE_ALIASES, CONTENT_TYPES, DATE_RANGES
from viralspot.catalog.queries import SORTS_POSTS, SORTS_REELS
from viralspot.error_codes import ERROR_CODES
from viralspot.api import ERROR_SCHEMA, Blueprint
from viralspot.schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema
from viralspot.catalog.items import serialize_item

SESSION = "openapi-test-session"
#: The docs page and its assets, and flask-smorest's own route serving the description: not API operations.
NOT_OPERATIONS = {"docs.swagger_ui_asset", "docs.docs_page", "api-docs.openapi_json"}


@pytest.fixture
def app_config(tmp_path):
    """A seeded SQLite catalog file, so pages have items to validate."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db"}


@pytest.fixture
def seeded(app):
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", "60", "--seed", "7"])
    assert result.exit_code == 0, result.output
    return app


@pytest.fixture
def spec(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def operation(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method]


def parameters(spec: dict, method: str, path: str) -> dict[str, dict]:
    return {parameter["name"]: parameter for parameter in operation(spec, method, path).get("parameters", [])}


def body_schema(spec: dict, method: str, path: str, status: int, media_type: str = "application/json") -> dict:
    return operation(spec, method, path)["responses"][str(status)]["content"][media_type]["schema"]


def assert_conforms(spec: dict, schema: dict, body) -> None:
    """``body`` is valid for ``schema`` (an OpenAPI 3.0 schema whose $refs point into ``spec``)."""
    OAS30Validator({**schema, "components": spec["components"]}).validate(body)


def assert_response_documented(spec: dict, method: str, path: str, response) -> None:
    responses = operation(spec, method, path)["responses"]
    assert str(response.status_code) in responses, (method, path, response.status_code)
    assert_conforms(spec, body_schema(spec, method, path, response.status_code), response.get_json())


# --- the description as a document -----------------------------------------------------------------

def test_served_description_is_valid_openapi_3(spec):
    validate_spec(spec)
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]


def test_write_command_writes_the_served_description(app, spec, tmp_path):
    target = tmp_path / "openapi.json"
    result = app.test_cli_runner().invoke(args=["openapi", "write", str(target)])
    assert result.exit_code == 0, result.output
    written = json.loads(target.read_text(encoding="utf-8"))
    validate_spec(written)
    assert written == spec


def test_every_route_of_the_app_is_in_the_description(app, spec):
    documented_operations = {(method, path) for path, item in spec["paths"].items() for method in item
                             if method != "parameters"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.endswith(".static") or rule.endpoint in NOT_OPERATIONS:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <any_text:session_id> is {session_id}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            assert (method.lower(), path) in documented_operations, f"{method} {rule.rule}"
            checked += 1
    assert checked == len(documented_operations)


def test_the_known_operations_are_there(spec):
    for method, path in [("get", "/api/reels"), ("get", "/api/posts"), ("get", "/api/filter-options"),
                         ("post", "/api/reset-session"), ("get", "/api/sessions/{session_id}"),
                         ("get", "/health"), ("get", "/"), ("get", "/livez"), ("get", "/readyz"),
                         ("get", "/metrics")]:
        assert operation(spec, method, path)["summary"]
    ids = [item[method]["operationId"] for item in spec["paths"].values() for method in item if method != "parameters"]
    assert len(ids) == len(set(ids))


def test_an_unknown_error_code_in_a_declaration_is_refused():
    bp = Blueprint("typo", __name__)
    with pytest.raises(ValueError, match="DATABASE_GONE"):
        bp.errors("DATABASE_GONE")


# --- arguments: type, range, default, allowed values, from the marshmallow schemas ---------------

@pytest.mark.parametrize("path, schema_class, sorts", [("/api/reels", ContentQueryArgsSchema, SORTS_REELS),
                                                       ("/api/posts", PostQueryArgsSchema, SORTS_POSTS)])
def test_content_arguments(spec, path, schema_class, sorts):
    params = parameters(spec, "get", path)
    assert set(params) == set(schema_class._declared_fields)
    assert all(param["in"] == "query" and not param["required"] for param in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "default": 24, "minimum": 1, "maximum": 100}
    assert params["offset"]["schema"] == {"type": "integer", "default": 0, "minimum": 0, "maximum": 10 ** 9}
    assert params["random_order"]["schema"] == {"type": "string", "enum": ["true", "false", "weighted"],
                                                "default": "false"}
    assert "weighted" in params["random_order"]["description"]
    assert params["is_verified"]["schema"] == {"type": "boolean"}
    assert params["sort_by"]["schema"] == {"type": "string", "enum": list(sorts)}
    assert params["date_range"]["schema"]["enum"] == [*DATE_RANGES, "all"]
    assert params["search"]["schema"] == {"type": "string", "maxLength": 500}
    assert params["min_views"]["schema"]["type"] == "integer" and params["min_views"]["schema"]["minimum"] == 0
    assert params["min_account_engagement_rate"]["schema"] == {"type": "number", "minimum": 0, "maximum": 100}
    assert params["min_outlier_score"]["schema"] == {"type": "number", "minimum": 0}
    for name in ("keywords", "primary_categories", "languages", "account_types", "content_types"):
        assert params[name]["schema"]["type"] == "array", name
        assert (params[name]["style"], params[name]["explode"]) == ("form", False), name
        assert params[name]["description"].endswith("At most 100 non-blank values.")
    assert params["account_types"]["schema"]["items"]["enum"] == list(ACCOUNT_TYPES)
    assert params["content_types"]["schema"]["items"]["enum"] == [*CONTENT_TYPES, *CONTENT_TYPE_ALIASES]
    session = params["session_id"]
    assert session["schema"]["maxLength"] == 255 and session["schema"]["pattern"] == "^[A-Za-z0-9._-]+$"
    assert all(param.get("description") for param in params.values())


def test_session_arguments(spec):
    reset = parameters(spec, "post", "/api/reset-session")
    assert list(reset) == ["session_id"]
    assert reset["session_id"]["in"] == "query" and reset["session_id"]["required"] is True
    inspect = parameters(spec, "get", "/api/sessions/{session_id}")
    assert list(inspect) == ["session_id"]
    assert inspect["session_id"]["in"] == "path" and inspect["session_id"]["required"] is True
    assert inspect["session_id"]["schema"]["pattern"] == "^[A-Za-z0-9._-]+$"


# --- errors: the envelope, each status with its error_code values, from viralspot.errors --------

def test_error_envelope_lists_every_error_code(spec):
    envelope = spec["components"]["schemas"][ERROR_SCHEMA]
    assert envelope["properties"]["error_code"]["enum"] == list(ERROR_CODES)
    assert set(envelope["required"]) == {"success", "detail", "error_code", "timestamp", "troubleshooting"}
    assert envelope["properties"]["success"]["enum"] == [False]


def test_each_error_response_lists_the_codes_of_its_status(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            errors = {status: response for status, response in op["responses"].items() if status != "200"}
            assert "500" in errors, (method, path)
            for status, response in errors.items():
                media = response["content"]["application/json"]
                codes = media["schema"]["allOf"][1]["properties"]["error_code"]["enum"]
                assert codes, (method, path, status)
                assert all(ERROR_CODES[code][0] == int(status) for code in codes), (method, path, status, codes)
                assert all(f"`{code}`" in response["description"] for code in codes)
                for code, example in media["examples"].items():
                    assert example["value"]["error_code"] == code
                    assert_conforms(spec, media["schema"], example["value"])
    assert "INTERNAL_ERROR" in json.dumps(operation(spec, "get", "/health")["responses"]["500"])


def test_documented_error_codes_per_operation(spec):
    def codes(method, path, status):
        schema = body_schema(spec, method, path, status)
        return set(schema["allOf"][1]["properties"]["error_code"]["enum"])

    assert codes("get", "/api/reels", 400) == {"MISSING_PARAMETER", "EMPTY_VALUE", "TOO_LONG", "INVALID_FORMAT",
                                                "INVALID_PARAMETER", "BAD_REQUEST", "SESSION_LIMIT"}
    assert codes("get", "/api/reels", 503) == {"SESSION_STORE_UNAVAILABLE", "SESSION_CONFLICT",
                                                "DATABASE_UNAVAILABLE"}
    assert codes("get", "/api/sessions/{session_id}", 404) == {"SESSION_NOT_FOUND"}
    assert codes("post", "/api/reset-session", 400) >= {"MISSING_PARAMETER", "INVALID_FORMAT"}
    assert codes("get", "/health", 503) == {"DATABASE_UNAVAILABLE", "SESSION_STORE_UNAVAILABLE"}
    for method, path in (("get", "/api/reels"), ("get", "/livez"), ("post", "/api/reset-session")):
        assert codes(method, path, 414) == {"URI_TOO_LONG"} and codes(method, path, 431) == {"HEADERS_TOO_LARGE"}
    # A request gunicorn cannot parse is refused before any route: every operation documents it.
    assert codes("get", "/livez", 400) == codes("get", "/api/filter-options", 400) == {"BAD_REQUEST"}
    assert "BAD_REQUEST" in codes("post", "/api/reset-session", 400)


# --- success bodies: documented, and true to the real responses -------------------------------------

def test_item_schema_has_exactly_the_fields_of_a_served_item(spec):
    row = {"content_id": "1", "username": "anna", "content_type": "reel", "shortcode": "C1"}
    item = spec["components"]["schemas"]["Item"]
    assert set(item["properties"]) == set(serialize_item(row))
    assert set(item["required"]) == set(serialize_item(row))
    assert_conforms(spec, {"$ref": "#/components/schemas/Item"}, serialize_item(row))
    incomplete = serialize_item(row)
    del incomplete["outlierScore"]
    with pytest.raises(ValidationError, match="outlierScore"):
        assert_conforms(spec, {"$ref": "#/components/schemas/Item"}, incomplete)


def test_reset_session_documents_both_bodies(spec):
    media = operation(spec, "post", "/api/reset-session")["responses"]["200"]["content"]["application/json"]
    examples = media["examples"]
    assert set(examples) == {"found", "not_found"}
    assert examples["found"]["value"]["data"]["session_reset"]["session_found"] is True
    assert examples["not_found"]["value"]["message"] == "Session not found - no data to reset"
    for example in examples.values():
        assert_conforms(spec, media["schema"], example["value"])


def test_content_pages_conform(seeded, client, spec):
    for path in ("/api/reels", "/api/posts"):
        response = client.get(path, query_string={"limit": 5})
        assert response.status_code == 200 and response.get_json()["data"]["reels"]
        assert_response_documented(spec, "get", path, response)
        response = client.get(path, query_string={"random_order": "true", "session_id": SESSION, "limit": 5})
        assert response.status_code == 200
        assert_response_documented(spec, "get", path, response)


def test_filter_options_and_health_conform(seeded, client, spec):
    for method, path in (("get", "/api/filter-options"), ("get", "/health"), ("get", "/")):
        response = client.open(path, method=method.upper())
        assert response.status_code == 200
        assert_response_documented(spec, method, path, response)


def test_session_bodies_conform(seeded, client, spec):
    not_found = client.post("/api/reset-session", query_string={"session_id": SESSION})
    assert not_found.get_json()["data"]["session_reset"]["session_found"] is False
    assert_response_documented(spec, "post", "/api/reset-session", not_found)
    missing = client.get(f"/api/sessions/{SESSION}")
    assert (missing.status_code, missing.get_json()["error_code"]) == (404, "SESSION_NOT_FOUND")
    assert_response_documented(spec, "get", "/api/sessions/{session_id}", missing)

    assert client.get("/api/reels", query_string={"random_order": "true", "session_id": SESSION}).status_code == 200
    inspected = client.get(f"/api/sessions/{SESSION}")
    assert inspected.status_code == 200
    assert inspected.get_json()["data"]["session"]["feeds"]
    assert_response_documented(spec, "get", "/api/sessions/{session_id}", inspected)
    found = client.post("/api/reset-session", query_string={"session_id": SESSION})
    assert found.get_json()["data"]["session_reset"]["session_found"] is True
    assert_response_documented(spec, "post", "/api/reset-session", found)


def test_error_bodies_conform(client, spec):
    for method, path, query, code in (
            ("get", "/api/reels", {"limit": 0}, "INVALID_PARAMETER"),
            ("get", "/api/posts", {"random_order": "true"}, "MISSING_PARAMETER"),
            ("post", "/api/reset-session", {"session_id": "bad id!"}, "INVALID_FORMAT"),
            ("post", "/api/reset-session", {"session_id": " "}, "EMPTY_VALUE")):
        response = client.open(path, method=method.upper(), query_string=query)
        assert (response.status_code, response.get_json()["error_code"]) == (400, code)
        assert_response_documented(spec, method, path, response)


def test_every_schema_the_description_holds_is_used(spec):
    """flask-smorest registered its own ``Error`` schema ({code, status, message, errors}), which is
    not the envelope this service answers, and ``PaginationMetadata``: a client generator made types
    of both."""
    text = json.dumps(spec)
    schemas = set(spec["components"]["schemas"])
    assert {"Error", "PaginationMetadata"}.isdisjoint(schemas)
    unused = {name for name in schemas if f'"#/components/schemas/{name}"' not in text}
    assert not unused, unused
