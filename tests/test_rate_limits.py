"""Public API hardening: per-client rate limits (flask-limiter) and the admin token for inspection
and /metrics. In-process on the memory store, then 2 gunicorn workers over a real Redis, and a
session flood against a Redis bounded by maxmemory."""
from __future__ import annotations

import http.client
import io
import json
import logging
import time

import flask_limiter._extension
import pytest

from viralspot import create_app

ENVELOPE_KEYS = {"success", "detail", "error_code", "timestamp", "troubleshooting"}


def make(**settings):
    return create_app({"CONFIG": "testing", **settings}).test_client()


def test_a_client_over_the_limit_gets_the_429_envelope_with_its_headers():
    client = make(RATE_LIMIT="3/minute")
    assert [client.get("/api/reels", query_string={"limit": 1}).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/api/posts")  # one budget for every /api/ route
    assert refused.status_code == 429 and refused.mimetype == "application/json"
    body = refused.get_json()
    assert set(body) == ENVELOPE_KEYS and body["error_code"] == "RATE_LIMITED"
    assert body["detail"] == "Too many requests from this client: at most 3 per 1 minute"
    headers = refused.headers
    assert headers["RateLimit-Limit"] == "3" and headers["RateLimit-Remaining"] == "0"
    assert 0 < int(headers["Retry-After"]) <= 61 and headers["RateLimit-Reset"] == headers["Retry-After"]
    # Probes, /metrics and the docs' description are outside /api/ or exempt: never limited.
    for path in ("/livez", "/readyz", "/health", "/", "/metrics"):
        assert all(client.get(path).status_code == 200 for _ in range(5)), path


def test_the_reset_endpoint_has_its_own_limit_and_an_empty_value_turns_a_limit_off():
    client = make(RATE_LIMIT="", RESET_RATE_LIMIT="2/minute")
    codes = [client.post("/api/reset-session", query_string={"session_id": "s"}).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert all(client.get("/api/reels").status_code == 200 for _ in range(20))  # no limit for the rest
    both = make(RATE_LIMIT="3/minute", RESET_RATE_LIMIT="")
    assert [both.post("/api/reset-session", query_string={"session_id": "s"}).status_code
            for _ in range(4)] == [200, 200, 200, 429]  # the reset counts in the all-routes budget


def test_behind_trusted_proxies_each_forwarded_client_has_its_own_budget():
    trusting = make(RATE_LIMIT="2/minute", TRUSTED_PROXIES=1)
    first = {"X-Forwarded-For": "203.0.113.7"}
    second = {"X-Forwarded-For": "203.0.113.8"}
    assert [trusting.get("/api/reels", headers=first).status_code for _ in range(3)] == [200, 200, 429]
    assert [trusting.get("/api/reels", headers=second).status_code for _ in range(2)] == [200, 200]
    # Without trusted proxies a forwarded address is the client's say-so: ignored.
    direct = make(RATE_LIMIT="2/minute")
    assert [direct.get("/api/reels", headers=h).status_code for h in (first, second, first)] == [200, 200, 429]
    with pytest.raises(RuntimeError, match="TRUSTED_PROXIES"):
        create_app({"CONFIG": "testing", "TRUSTED_PROXIES": -1})


def test_an_ipv6_client_has_one_budget_for_its_64_block():
    """A host is usually given a /64: every address of it is one client, not a budget each."""
    trusting = make(RATE_LIMIT="2/minute", TRUSTED_PROXIES=1)
    statuses = lambda address: trusting.get("/api/reels", headers={"X-Forwarded-For": address}).status_code  # noqa: E731
    assert [statuses(f"2001:db8:0:1::{n}") for n in (1, 2, 3)] == [200, 200, 429]
    assert [statuses(address) for address in ("2001:db8:0:2::1", "2001:db8:0:2::ffff")] == [200, 200]
    # IPv4, also written as an IPv4-mapped IPv6 address, is one address.
    assert [statuses(address) for address in ("198.51.100.1", "::ffff:198.51.100.1", "198.51.100.2")] == [
        200, 200, 200]
    assert statuses("198.51.100.1") == 429


class _Clock:
    """A ``time`` module whose ``time()`` the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)


def test_a_burst_across_a_windows_edge_gets_one_budget_not_two(monkeypatch):
    """A fixed window let a client spend its budget at the end of one minute and again at the start
    of the next (1,992 requests in 6.5 s under 1200/minute): the sliding window counter weighs the
    last minute's count by how much of it is still inside the last 60 s."""
    import limits.storage.memory
    import limits.strategies

    clock = _Clock(60 * 1_000_000 + 58.0)  # 2 s before a minute ends
    for module in (limits.storage.memory, limits.strategies):
        monkeypatch.setattr(module, "time", clock)
    client = make(RATE_LIMIT="10/minute")
    assert [client.get("/api/filter-options").status_code for _ in range(10)] == [200] * 10
    clock.now += 4  # 2 s into the next minute: 58 s of the last one still count (floor(9.67) = 9 of 10)
    assert [client.get("/api/filter-options").status_code for _ in range(10)] == [200] + [429] * 9
    clock.now += 30  # 32 s in: floor(10 x 28 / 60) = 4 of the last minute and 1 of this one count
    assert [client.get("/api/filter-options").status_code for _ in range(10)] == [200] * 5 + [429] * 5


class _ClockAhead:
    """flask-limiter's ``time`` module, ``seconds`` ahead: its back-off before asking a failed
    storage again has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def time(self) -> float:
        return time.time() + self.seconds

    def __getattr__(self, name):
        return getattr(time, name)


def storage_errors(client) -> float:
    exposition = client.get("/metrics").get_data(as_text=True)
    counted = [line for line in exposition.splitlines() if line.startswith("viralspot_rate_limit_storage_errors_total")]
    return float(counted[0].split()[-1])


def test_a_failing_limit_storage_counts_in_the_process_until_it_answers_again(redis_server_factory, monkeypatch):
    server = redis_server_factory()
    client = make(RATE_LIMIT="2/minute", SESSION_STORE_URL=server.url, SESSION_STORE_RETRIES=0)
    statuses = lambda: [client.get("/api/filter-options").status_code for _ in range(3)]  # noqa: E731
    assert statuses() == [200, 200, 429]  # counted in Redis
    port = server.port
    server.stop()
    # The counts move into the process: the limit still holds there (a budget of its own).
    assert statuses() == [200, 200, 429]
    assert storage_errors(client) >= 1
    server.start()
    assert server.port == port
    assert statuses()[-1] == 429  # flask-limiter has not asked the storage again yet: still in the process
    assert not server.client().keys("vs2:rl:*")
    monkeypatch.setattr(flask_limiter._extension, "time", _ClockAhead(64))
    assert statuses() == [200, 200, 429]  # back in the restarted Redis, whose counts start afresh
    assert server.client().keys("vs2:rl:*")


def test_probes_and_metrics_never_ask_a_failed_limit_storage(redis_server_factory, monkeypatch):
    """While the storage is down, flask-limiter asks it again after a back-off, on whatever request
    comes due: never a probe's or a scrape's (a hung Redis would make /livez wait a socket timeout).
    Had one asked, the back-off would start again from it, and the /api/ request after the restart
    would still count in the process."""
    server = redis_server_factory()
    client = make(RATE_LIMIT="2/minute", SESSION_STORE_URL=server.url, SESSION_STORE_RETRIES=0)
    assert client.get("/api/filter-options").status_code == 200
    server.stop()
    assert client.get("/api/filter-options").status_code == 200  # the storage failed: counts in the process
    monkeypatch.setattr(flask_limiter._extension, "time", _ClockAhead(64))  # asking it again is due
    for path in ("/livez", "/readyz", "/health", "/metrics", "/"):
        client.get(path)
    server.start()
    assert not server.client().keys("vs2:rl:*")
    assert client.get("/api/filter-options").status_code == 200
    assert server.client().keys("vs2:rl:*")  # this request asked, found it back, and counted there


def test_the_switch_to_counting_in_memory_is_in_the_app_log(redis_server_factory):
    server = redis_server_factory()
    url = server.url
    server.stop()
    client = make(RATE_LIMIT="2/minute", SESSION_STORE_URL=url, SESSION_STORE_RETRIES=0, LOG_LEVEL="WARNING")
    handler = next(h for h in logging.getLogger("viralspot").handlers if getattr(h, "_viralspot", False))
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        assert client.get("/api/filter-options").status_code == 200
    finally:
        handler.setStream(previous)
    assert "Rate limit storage unreachable - falling back to in-memory storage" in stream.getvalue()


def test_the_openapi_description_documents_429_and_401():
    spec = make().get("/api/openapi.json").get_json()
    for method, path in (("get", "/api/reels"), ("get", "/api/posts"), ("post", "/api/reset-session"),
                         ("get", "/api/filter-options"), ("get", "/api/sessions/{session_id}")):
        response = spec["paths"][path][method]["responses"]["429"]
        assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(response["headers"])
    for path in ("/livez", "/readyz", "/health", "/metrics"):
        assert "429" not in spec["paths"][path]["get"]["responses"]
    for path in ("/api/sessions/{session_id}", "/metrics"):
        operation = spec["paths"][path]["get"]
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
        assert operation["security"] == [{"admin_token": []}, {}]
    assert spec["components"]["securitySchemes"]["admin_token"]["scheme"] == "bearer"


# --- the admin token -----------------------------------------------------------------------------

def test_with_a_token_inspection_and_metrics_need_it():
    client = make(ADMIN_TOKEN="s3cret-token")
    for path in ("/api/sessions/someone", "/metrics"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            refused = client.get(path, headers=headers)
            assert refused.status_code == 401, (path, headers)
            assert refused.get_json()["error_code"] == "UNAUTHORIZED"
            assert refused.headers["WWW-Authenticate"] == 'Bearer realm="viralspot"'
            assert refused.headers["Cache-Control"] == "no-store"
    authorized = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/metrics", headers=authorized).status_code == 200
    assert client.get("/api/sessions/someone", headers=authorized).get_json()["error_code"] == "SESSION_NOT_FOUND"
    assert client.get("/api/reels").status_code == 200 and client.get("/livez").status_code == 200  # the rest is open


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "  Bearer  "])
def test_the_token_scheme_is_case_insensitive_and_the_token_exact(scheme):
    client = make(ADMIN_TOKEN="s3cret-token")
    assert client.get("/metrics", headers={"Authorization": f"{scheme} s3cret-token"}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"{scheme} S3CRET-TOKEN"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-token"}).status_code == 401


def test_a_cors_preflight_needs_no_token_and_spends_no_budget():
    client = make(ADMIN_TOKEN="s3cret-token", RATE_LIMIT="2/minute", RESET_RATE_LIMIT="1/minute")
    preflight = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    for path in ("/api/sessions/someone", "/api/reels", "/api/reset-session"):
        for _ in range(3):
            answer = client.options(path, headers=preflight)
            assert answer.status_code == 204, (path, answer.get_data())
            assert answer.headers["Access-Control-Allow-Origin"] == "*"
    # The budgets are whole: 2 calls, then 429; the reset's 1, then 429.
    assert [client.get("/api/reels").status_code for _ in range(3)] == [200, 200, 429]
    fresh = make(RATE_LIMIT="", RESET_RATE_LIMIT="1/minute")
    for _ in range(3):
        assert fresh.options("/api/reset-session", headers={**preflight, "Access-Control-Request-Method": "POST"}
                             ).status_code == 204
    assert [fresh.post("/api/reset-session", query_string={"session_id": "s"}).status_code
            for _ in range(2)] == [200, 429]


def test_without_a_token_development_needs_none_and_production_refuses_to_start():
    assert make().get("/metrics").status_code == 200
    production = {"CONFIG": "production", "SECRET_KEY": "a-real-secret-from-the-environment"}
    with pytest.raises(RuntimeError, match="VIRALSPOT_ADMIN_TOKEN"):
        create_app(production)
    assert create_app({**production, "PUBLIC_INSPECTION": True}).test_client().get("/metrics").status_code == 200
    assert create_app({**production, "ADMIN_TOKEN": "a-token-of-16+-chars"}).test_client().get(
        "/metrics").status_code == 401


# --- real servers ------------------------------------------------------------------------------

def _get(port: int, path: str, client_address: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("GET", path, headers={"X-Forwarded-For": client_address, "Connection": "close"})
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status in (200, 429), body
        assert response.status == 200 or body["error_code"] == "RATE_LIMITED"
        return response.status
    finally:
        connection.close()


@pytest.mark.redis
def test_two_gunicorn_workers_share_one_count_per_client(tmp_path, redis_clean):
    from gunicorn_servers import GunicornServer, cpu_ticks, seed_catalog

    database_url = f"sqlite:///{tmp_path}/catalog.db"
    seed_catalog(database_url)
    with GunicornServer(tmp_path, database_url=database_url, store_url=redis_clean.url, workers=2, threads=4,
                        extra_env={"VIRALSPOT_RATE_LIMIT": "30/minute", "VIRALSPOT_TRUSTED_PROXIES": "1"}) as server:
        workers = server.worker_pids()
        before = cpu_ticks(workers)
        answers = [_get(server.port, "/api/reels?limit=2", "198.51.100.1") for _ in range(60)]
        assert answers.count(200) == 30 and answers.count(429) == 30
        assert answers[:30] == [200] * 30  # the 31st request and every later one refused
        used = cpu_ticks(workers)
        assert all(used[pid] > before[pid] for pid in workers), "both workers served requests"
        assert [_get(server.port, "/api/posts?limit=2", "198.51.100.2") for _ in range(5)] == [200] * 5
        # The counts live under the service's prefix, with the sessions (a Redis ACL of vs2:* covers them).
        import redis
        with redis.Redis.from_url(redis_clean.url) as client:
            counts = [key.decode() for key in client.scan_iter(match="*198.51.100.*")]
        assert counts and all(key.startswith("vs2:rl:") for key in counts), counts


@pytest.mark.redis
def test_a_session_flood_from_one_client_is_stopped_before_it_evicts_anyone(tmp_path, redis_server_factory):
    """Redis sized for about 2,000 one-page sessions; the flooding client's 101st session is refused,
    and none of a second client's 50 sessions loses what it was served."""
    from gunicorn_servers import seed_catalog

    redis = redis_server_factory("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru")
    database_url = f"sqlite:///{tmp_path}/catalog.db"
    seed_catalog(database_url)
    app = create_app({"CONFIG": "testing", "DATABASE_URL": database_url, "SESSION_STORE_URL": redis.url,
                      "RATE_LIMIT": "100/minute", "TRUSTED_PROXIES": 1})
    client = app.test_client()
    honest = {"X-Forwarded-For": "192.0.2.50"}
    flood = {"X-Forwarded-For": "192.0.2.66"}

    def page(session_id, headers, offset=0):
        return client.get("/api/reels", headers=headers, query_string={
            "random_order": "true", "session_id": session_id, "limit": 10, "offset": offset})

    served = {}
    for number in range(50):
        response = page(f"honest-{number}", honest)
        assert response.status_code == 200
        served[number] = [item["id"] for item in response.get_json()["data"]["reels"]]
    codes = [page(f"flood-{number}", flood).status_code for number in range(10_000)]
    assert codes[:100] == [200] * 100 and set(codes[100:]) == {429}
    assert redis.client().info("stats")["evicted_keys"] == 0
    for number in range(50):  # each honest session kept its state: its page replays (100 requests in all)
        response = page(f"honest-{number}", honest)
        assert response.status_code == 200
        assert [item["id"] for item in response.get_json()["data"]["reels"]] == served[number]
    assert app.extensions["viralspot.session_store"].summary("honest-0").served_items_count == 10
