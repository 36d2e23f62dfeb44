"""CORS: a browser on another origin (the ViralSpot frontend on http://localhost:3000) can call the API."""
from __future__ import annotations

import pytest

from viralspot import create_app
from viralspot.cors import parse_origins

FRONTEND = "http://localhost:3000"


def preflight(client, path, method, origin=FRONTEND, headers="content-type"):
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


ROUTE_METHODS = {"/api/reels": {"GET", "HEAD", "OPTIONS"}, "/api/posts": {"GET", "HEAD", "OPTIONS"},
                 "/api/filter-options": {"GET", "HEAD", "OPTIONS"}, "/api/reset-session": {"POST", "OPTIONS"},
                 "/api/sessions/abc": {"GET", "HEAD", "OPTIONS"}, "/health": {"GET", "HEAD", "OPTIONS"}}


def _names(header: str) -> set[str]:
    return {name.strip() for name in header.split(",")}


@pytest.mark.parametrize("path, method", [("/api/reels", "GET"), ("/api/posts", "GET"),
                                          ("/api/filter-options", "GET"), ("/api/reset-session", "POST"),
                                          ("/api/sessions/abc", "GET"), ("/health", "GET")])
def test_preflight_from_the_frontend_is_allowed(client, path, method):
    response = preflight(client, path, method)
    assert response.status_code == 204 and response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    # The route's own methods, as its Allow says: not every method of every route.
    assert _names(response.headers["Access-Control-Allow-Methods"]) == ROUTE_METHODS[path]
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("path", sorted(ROUTE_METHODS))
def test_options_without_cors_answers_204_naming_the_routes_methods(client, path):
    response = client.options(path)
    assert response.status_code == 204 and response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert _names(response.headers["Allow"]) == ROUTE_METHODS[path]
    assert "Access-Control-Allow-Origin" not in response.headers


def test_options_of_an_unknown_path_is_the_404_envelope(client):
    response = client.options("/api/nothing-here", headers={"Origin": FRONTEND, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False and body["error_code"]


def test_simple_request_carries_the_header(client):
    response = client.get("/health", headers={"Origin": FRONTEND})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_400_envelope_is_readable_cross_origin(client):
    response = client.get("/api/reels", query_string={"limit": 0}, headers={"Origin": FRONTEND})
    assert response.status_code == 400
    assert response.get_json()["error_code"] == "INVALID_PARAMETER"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("method, path, status", [("GET", "/api/no-such-route", 404),
                                                  ("DELETE", "/api/reels", 405),
                                                  ("POST", "/api/reset-session", 400)])
def test_other_error_envelopes_carry_the_header(client, method, path, status):
    response = client.open(path, method=method, headers={"Origin": FRONTEND})
    assert response.status_code == status
    assert response.get_json()["success"] is False
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_an_unexpected_500_carries_the_header(app, client, monkeypatch):
    from viralspot.content import routes

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "current_filter_options", broken)
    response = client.get("/api/filter-options", headers={"Origin": FRONTEND})
    assert response.status_code == 500
    assert response.get_json()["error_code"] == "INTERNAL_ERROR"
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_requests_without_an_origin_get_no_cors_headers(client):
    assert "Access-Control-Allow-Origin" not in client.get("/health").headers


class TestRestrictedOrigins:
    @pytest.fixture
    def app_config(self):
        return {"CORS_ORIGINS": "https://app.example.com, http://localhost:3000"}

    def test_a_listed_origin_is_echoed(self, client):
        response = preflight(client, "/api/reset-session", "POST")
        assert response.headers["Access-Control-Allow-Origin"] == FRONTEND
        assert "Origin" in response.headers.get("Vary", "")
        response = client.get("/api/reels", query_string={"limit": 0}, headers={"Origin": "https://app.example.com"})
        assert response.status_code == 400
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example.com"

    def test_another_origin_gets_no_allow_header(self, client):
        for response in (preflight(client, "/api/reels", "GET", origin="https://evil.example"),
                         client.get("/health", headers={"Origin": "https://evil.example"}),
                         client.get("/api/reels", query_string={"limit": 0},
                                    headers={"Origin": "https://evil.example"})):
            assert "Access-Control-Allow-Origin" not in response.headers

    def test_every_answer_varies_by_origin(self, client):
        """A shared cache keys the answer by the Origin: the one to no origin or to one not listed
        (no allow header) is not given to a listed one."""
        for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "https://app.example.com"}):
            for response in (client.get("/health", headers=headers), client.get("/api/reels?limit=1", headers=headers),
                             client.get("/api/reels?limit=0", headers=headers)):
                vary = [value.strip() for value in response.headers.get("Vary", "").split(",")]
                assert vary.count("Origin") == 1, (headers, response.status_code, vary)
        assert "Origin" not in client.get("/livez").headers.get("Vary", "")

    def test_an_origin_is_matched_exactly_not_as_a_pattern(self, client):
        response = client.get("/health", headers={"Origin": "http://localhost:30000"})
        assert "Access-Control-Allow-Origin" not in response.headers


def test_origins_from_the_environment(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_CORS_ORIGINS", "https://app.example.com")
    app = create_app({"CONFIG": "testing"})
    assert app.extensions["viralspot.cors_origins"] == ["https://app.example.com"]
    client = app.test_client()
    assert client.get("/health", headers={"Origin": "https://app.example.com"}).headers[
        "Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": FRONTEND}).headers


def test_default_allows_any_origin():
    assert create_app({"CONFIG": "testing"}).extensions["viralspot.cors_origins"] == ["*"]


@pytest.mark.parametrize("value, expected", [
    ("*", ["*"]),
    ("", ["*"]),
    (None, ["*"]),
    ("https://a.example, http://localhost:3000/ ,", ["https://a.example", "http://localhost:3000"]),
    (["https://a.example", "https://a.example"], ["https://a.example"]),
    ("https://a.example,*", ["*"]),
])
def test_parse_origins(value, expected):
    assert parse_origins(value) == expected


def test_a_browser_can_read_the_request_id(client):
    response = client.get("/api/reels?limit=1", headers={"Origin": "http://localhost:3000"})
    assert response.headers["X-Request-ID"]
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


def test_a_browser_can_read_when_to_try_again_after_a_429():
    client = create_app({"CONFIG": "testing", "RATE_LIMIT": "1/minute"}).test_client()
    assert client.get("/api/reels?limit=1", headers={"Origin": FRONTEND}).status_code == 200
    refused = client.get("/api/reels?limit=1", headers={"Origin": FRONTEND})
    assert refused.status_code == 429 and refused.headers["Access-Control-Allow-Origin"] == "*"
    exposed = {name.strip() for name in refused.headers["Access-Control-Expose-Headers"].split(",")}
    limit_headers = {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Request-ID"}
    assert limit_headers <= exposed
    assert all(name in refused.headers for name in limit_headers)
    assert exposed - limit_headers == {"X-Session-Order"}  # a random page's, not a refusal's
