"""Request ids: kept from a valid ``X-Request-ID`` or made, echoed on every response, on every log line
of the request (text and JSON formats); an invalid header value is never logged."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from viralspot import create_app
from viralspot.error_codes import ApiError
from viralspot.request_ids import HEADER, MAX_LENGTH

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def log_output():
    """What the service's log handler writes, for the duration of the test."""
    create_app({"CONFIG": "testing"})  # the handler exists once an app was made
    handler = next(h for h in logging.getLogger("viralspot").handlers if getattr(h, "_viralspot", False))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def app_with_logging_routes(**overrides):
    app = create_app({"CONFIG": "testing", "LOG_LEVEL": "INFO", **overrides})
    log = logging.getLogger("viralspot.test_routes")

    @app.get("/api/test-log")
    def test_log():
        log.info("first line of the request")
        log.warning("second line\nwith a newline")
        return {"ok": True}

    @app.get("/api/test-error")
    def test_error():
        raise RuntimeError("boom")

    @app.get("/api/test-api-error")
    def test_api_error():
        raise ApiError("bad thing", "INVALID_PARAMETER")

    return app


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/livez", 200),
    ("GET", "/api/reels?limit=0", 400),
    ("GET", "/no/such/route", 404),
    ("DELETE", "/livez", 405),
    ("GET", "/api/sessions/unknown", 404),
    ("GET", "/metrics", 200),
    ("GET", "/api/docs", 200),
])
def test_every_response_carries_a_request_id(client, method, path, status):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert GENERATED.fullmatch(response.headers[HEADER])
    kept = client.open(path, method=method, headers={HEADER: "lb-7f.3_a-Z"})
    assert kept.headers[HEADER] == "lb-7f.3_a-Z"


def test_errors_and_500s_carry_it_too():
    client = app_with_logging_routes().test_client()
    for path, status in (("/api/test-error", 500), ("/api/test-api-error", 400)):
        response = client.get(path, headers={HEADER: "req-1"})
        assert response.status_code == status
        assert response.headers[HEADER] == "req-1"
        assert response.get_json()["success"] is False


def test_each_request_gets_its_own_id(client):
    ids = {client.get("/livez").headers[HEADER] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("incoming", [
    "", " ", "has space", "semi;colon", "x" * (MAX_LENGTH + 1), "<script>", "quote\"d", "caf\u00e9", "a/b", "%0A",
])
def test_an_invalid_incoming_id_is_replaced(client, incoming):
    response = client.get("/livez", headers={HEADER: incoming})
    assert GENERATED.fullmatch(response.headers[HEADER])


def test_the_longest_valid_id_is_kept(client):
    longest = "a" * MAX_LENGTH
    assert client.get("/livez", headers={HEADER: longest}).headers[HEADER] == longest


def test_text_log_lines_carry_the_request_id(log_output):
    client = app_with_logging_routes().test_client()
    response = client.get("/api/test-log", headers={HEADER: "text-req-42"})
    assert response.status_code == 200
    lines = [line for line in log_output.getvalue().splitlines() if "test_routes" in line]
    assert len(lines) == 2
    assert all("[text-req-42]" in line for line in lines)


def test_json_log_lines_are_one_object_each_with_the_request_id(log_output):
    client = app_with_logging_routes(LOG_FORMAT="json").test_client()
    response = client.get("/api/test-log", headers={HEADER: "json-req-42"})
    assert response.status_code == 200
    generated = client.get("/api/test-error").headers[HEADER]
    lines = log_output.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    mine = [entry for entry in entries if entry["logger"] == "viralspot.test_routes"]
    assert [entry["message"] for entry in mine] == ["first line of the request", "second line\nwith a newline"]
    assert all(entry["request_id"] == "json-req-42" for entry in mine)
    assert {entry["level"] for entry in mine} == {"INFO", "WARNING"}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"]) for entry in mine)
    failure = next(entry for entry in entries if entry["logger"] == "viralspot.errors")
    assert failure["request_id"] == generated
    assert "RuntimeError: boom" in failure["exception"]  # the traceback, inside the one line


def test_lines_outside_a_request_have_no_id(log_output):
    create_app({"CONFIG": "testing", "LOG_FORMAT": "json"})
    logging.getLogger("viralspot.test_routes").warning("outside")
    entry = json.loads(log_output.getvalue().splitlines()[-1])
    assert entry["request_id"] == "-" and entry["message"] == "outside"


def test_an_invalid_header_value_never_reaches_the_log(log_output):
    client = app_with_logging_routes().test_client()
    response = client.get("/api/test-log", headers={HEADER: "evil] injected-line <x>"})
    assert response.status_code == 200
    output = log_output.getvalue()
    assert "injected-line" not in output and "evil" not in output
    assert f"[{response.headers[HEADER]}]" in output


def test_readiness_check_threads_log_with_the_request_id(log_output):
    from test_health_probes import BrokenStore

    app = create_app({"CONFIG": "testing"})
    app.extensions["viralspot.session_store"] = BrokenStore()
    response = app.test_client().get("/readyz", headers={HEADER: "probe-req-1"})
    assert response.status_code == 503
    lines = [line for line in log_output.getvalue().splitlines() if "session_store check failed" in line]
    assert lines and all("[probe-req-1]" in line for line in lines)


def test_an_unknown_log_format_stops_start_up():
    with pytest.raises(RuntimeError, match="LOG_FORMAT"):
        create_app({"CONFIG": "testing", "LOG_FORMAT": "xml"})
