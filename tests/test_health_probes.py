"""Orchestrator probes: ``GET /livez`` asks no dependency; ``GET /readyz`` checks the session store and
the database within a short timeout and answers 503 (the error envelope plus each check's result);
``GET /health`` keeps working. Bodies conform to the served OpenAPI description."""
from __future__ import annotations

import socket
import threading
import time

import pytest
from openapi_schema_validator import OAS30Validator

from viralspot import create_app
from viralspot.store import StoreUnavailable

ENVELOPE_KEYS = {"success", "detail", "error_code", "timestamp", "troubleshooting"}


class BrokenStore:
    """A session store whose every call fails (ping raises, as a misbehaving backend might)."""

    storage_type = "broken"

    def ping(self):
        raise StoreUnavailable("connection refused")

    def close(self):
        pass


class HangingStore:
    """A session store whose ping blocks until released; counts the pings started."""

    storage_type = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.pings = 0

    def ping(self):
        self.pings += 1
        self.release.wait(30)
        return True

    def close(self):
        self.release.set()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def conforms(app, method: str, path: str, response) -> None:
    """The response's status is documented for the operation and its body matches the schema."""
    spec = app.test_client().get("/api/openapi.json").get_json()
    responses = spec["paths"][path][method]["responses"]
    assert str(response.status_code) in responses
    schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
    OAS30Validator({**schema, "components": spec["components"]}).validate(response.get_json())


def test_livez_is_200_and_documented(app, client):
    response = client.get("/livez")
    assert response.status_code == 200
    assert response.get_json()["data"]["status"] == "alive"
    assert response.headers["Cache-Control"] == "no-store"
    conforms(app, "get", "/livez", response)


def test_livez_asks_no_dependency():
    app = create_app({"CONFIG": "testing",
                      "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/viralspot"})
    app.extensions["viralspot.session_store"] = BrokenStore()
    try:
        client = app.test_client()
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 503
    finally:
        app.extensions["viralspot.catalog"].dispose()


def test_readyz_is_200_with_each_check(app, client):
    response = client.get("/readyz")
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["status"] == "ready"
    assert {name: check["status"] for name, check in data["checks"].items()} == {"session_store": "ok",
                                                                              "database": "ok"}
    assert all(0 <= check["seconds"] < 1 for check in data["checks"].values())
    conforms(app, "get", "/readyz", response)


def test_readyz_store_down_is_503_envelope_with_checks(app, client):
    app.extensions["viralspot.session_store"] = BrokenStore()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS | {"checks"}
    assert body["success"] is False and body["error_code"] == "SESSION_STORE_UNAVAILABLE"
    assert body["checks"]["session_store"]["status"] == "unavailable"
    assert body["checks"]["database"]["status"] == "ok"
    assert response.headers["Retry-After"] == "2"
    conforms(app, "get", "/readyz", response)
    # /health answers as it always has: the plain envelope.
    health = client.get("/health")
    assert health.status_code == 503 and set(health.get_json()) == ENVELOPE_KEYS


def test_readyz_database_down_is_503_database_unavailable():
    app = create_app({"CONFIG": "testing",
                      "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/viralspot"})
    try:
        response = app.test_client().get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["error_code"] == "DATABASE_UNAVAILABLE"
        assert body["checks"]["database"]["status"] in ("unavailable", "timeout")
        assert body["checks"]["session_store"]["status"] == "ok"
        conforms(app, "get", "/readyz", response)
    finally:
        app.extensions["viralspot.catalog"].dispose()


def test_a_hanging_dependency_costs_the_timeout_and_one_thread():
    app = create_app({"CONFIG": "testing", "READINESS_TIMEOUT": 0.2})
    store = app.extensions["viralspot.session_store"] = HangingStore()
    client = app.test_client()
    try:
        for _ in range(3):
            started = time.monotonic()
            response = client.get("/readyz")
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            body = response.get_json()
            assert body["checks"]["session_store"]["status"] == "timeout"
            assert body["checks"]["database"]["status"] == "ok"
            assert body["error_code"] == "SESSION_STORE_UNAVAILABLE"
            assert 0.15 < elapsed < 2.0, elapsed
        assert client.get("/health").status_code == 503  # /health is bounded the same way
        assert store.pings == 1  # later probes joined the check still in flight
        store.release.set()
        deadline = time.monotonic() + 5
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "readiness did not recover"
        assert store.pings in (1, 2)  # the check in flight may have answered this one
    finally:
        store.release.set()


def test_probes_are_documented(client):
    spec = client.get("/api/openapi.json").get_json()
    readyz = spec["paths"]["/readyz"]["get"]
    assert set(readyz["responses"]) == {"200", "400", "408", "414", "431", "500", "503"}
    schema = readyz["responses"]["503"]["content"]["application/json"]["schema"]
    assert schema["allOf"][0] == {"$ref": "#/components/schemas/ReadinessError"}
    assert "checks" in spec["components"]["schemas"]["ReadinessError"]["required"]
    assert set(spec["paths"]["/livez"]["get"]["responses"]) == {"200", "400", "408", "414", "431", "500"}
    assert "/health" in spec["paths"] and "/" in spec["paths"]


@pytest.mark.redis
def test_readyz_over_real_redis_up_and_down(redis_server_factory):
    redis = redis_server_factory()
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": redis.url, "READINESS_TIMEOUT": 1.0})
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        redis.stop()
        started = time.monotonic()
        response = client.get("/readyz")
        assert time.monotonic() - started < 2.0
        assert response.status_code == 503
        assert response.get_json()["checks"]["session_store"]["status"] in ("unavailable", "timeout")
        conforms(app, "get", "/readyz", response)
        assert client.get("/livez").status_code == 200
        redis.start()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "readiness did not recover after Redis came back"
            time.sleep(0.1)
    finally:
        app.extensions["viralspot.session_store"].close()
        app.extensions["viralspot.catalog"].dispose()


@pytest.mark.parametrize("setting", [0, -1, "soon", 61])
def test_a_bad_readiness_timeout_stops_start_up(setting):
    with pytest.raises(RuntimeError, match="READINESS_TIMEOUT"):
        create_app({"CONFIG": "testing", "READINESS_TIMEOUT": setting})
