"""Prometheus metrics: ``GET /metrics``, what it counts, bounded labels, ``VIRALSPOT_METRICS`` off,
and multiprocess mode under real gunicorn (a scrape answered by any worker reports every worker).

The random feed's series are ``viralspot_random_feed_pages_total{how="claim"|"replay"}`` (a page
that asked the store to take items, or one read from what the feed holds) and
``viralspot_random_feed_round_trips_total`` (session store calls of answered random pages); the
old state model's plan, claim, claim-conflict and list-build series are gone.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from viralspot import create_app
from viralspot.metrics import EXTENSION_KEY, store_error_kind
from viralspot.store import PageResult, PageStatus, StoreUnavailable

SESSION = "metrics-session-7f3a"


# --- helpers ----------------------------------------------------------------------------------------

def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a text exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def seeded_app(tmp_path, items: int = 60, **overrides):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db", **overrides})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(items), "--seed", "7"])
    assert result.exit_code == 0, result.output
    return app


def dispose(app) -> None:
    app.extensions["viralspot.catalog"].dispose()
    app.extensions["viralspot.session_store"].close()


def random_page(client, session=SESSION, offset=0, limit=10):
    return client.get("/api/reels", query_string={"random_order": "true", "session_id": session,
                                                  "offset": offset, "limit": limit})


# --- in process ----------------------------------------------------------------------------------------

def test_metrics_endpoint_is_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    for name in ("viralspot_http_requests_total", "viralspot_http_request_duration_seconds",
                 "viralspot_random_feed_pages_total", "viralspot_random_feed_round_trips_total",
                 "viralspot_session_conflict_responses_total", "viralspot_store_errors_total",
                 "viralspot_item_snapshot_lookups_total", "viralspot_database_errors_total",
                 "viralspot_session_reset_notices_total", "viralspot_random_feed_sessions_started_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    for gone in ("viralspot_random_feed_claims", "viralspot_random_feed_claim_conflicts",
                 "viralspot_random_feed_list_builds", 'plan="'):
        assert gone not in text, gone
    # The page series exist from the start, at 0, so rates and ratios are defined.
    samples = parse(text)
    for how in ("claim", "replay"):
        assert ("viralspot_random_feed_pages_total", (("how", how),)) in samples
    for started in ("first", "later"):
        assert value(samples, "viralspot_random_feed_sessions_started_total", page=started) == 0
    assert value(samples, "viralspot_random_feed_round_trips_total") == 0
    assert "_created" not in text


def test_requests_are_counted_by_endpoint_method_and_status_with_bounded_labels(client):
    for _ in range(3):
        assert client.get("/livez").status_code == 200
    assert client.get("/api/sessions/no-such-session").status_code == 404
    assert client.get("/no/such/path/abc123").status_code == 404
    assert client.delete("/livez").status_code == 405
    assert client.open("/livez", method="BREW").status_code == 405
    samples = scrape(client)
    assert value(samples, "viralspot_http_requests_total", endpoint="health.livez", method="GET", status="200") == 3
    assert value(samples, "viralspot_http_requests_total", endpoint="session.inspect_session", method="GET",
                 status="404") == 1
    # No route matched: one label value, never the path; a made-up method is "other".
    assert value(samples, "viralspot_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value(samples, "viralspot_http_requests_total", endpoint="unmatched", method="DELETE", status="405") == 1
    assert value(samples, "viralspot_http_requests_total", endpoint="unmatched", method="other", status="405") == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert "abc123" not in text and "no-such-session" not in text and "BREW" not in text
    # The latency histogram, by endpoint.
    assert value(samples, "viralspot_http_request_duration_seconds_count", endpoint="health.livez") == 3
    assert value(samples, "viralspot_http_request_duration_seconds_bucket", endpoint="health.livez", le="+Inf") == 3


def test_random_feed_pages_by_how_and_their_round_trips(tmp_path):
    app = seeded_app(tmp_path)
    try:
        client = app.test_client()
        assert random_page(client).status_code == 200  # a new session: one call that takes items
        assert random_page(client, offset=10).status_code == 200  # the next page: one call
        assert random_page(client).status_code == 200  # the first page again: a read
        samples = scrape(client)
        assert value(samples, "viralspot_random_feed_pages_total", how="claim") == 2
        assert value(samples, "viralspot_random_feed_pages_total", how="replay") == 1
        assert value(samples, "viralspot_random_feed_round_trips_total") == 3
        # Plain pages and refused random pages count no random page.
        assert client.get("/api/reels", query_string={"limit": 5}).status_code == 200
        assert random_page(client, "refused", offset=5000).status_code == 404  # no session, and far in
        again = scrape(client)
        assert value(again, "viralspot_random_feed_pages_total", how="claim") == 2
        assert value(again, "viralspot_random_feed_round_trips_total") == 3
        assert SESSION not in client.get("/metrics").get_data(as_text=True)
    finally:
        dispose(app)


def test_sessions_started_by_a_first_page_and_by_a_later_page_of_a_lost_session(tmp_path):
    app = seeded_app(tmp_path)
    try:
        client = app.test_client()
        orders = {random_page(client, offset=offset).headers["X-Session-Order"] for offset in (0, 10, 0)}
        assert len(orders) == 1  # one session started
        assert random_page(client, "other").status_code == 200  # another
        app.extensions["viralspot.session_store"].reset(SESSION)  # lost, as by expiry or eviction
        assert random_page(client, offset=20).headers["X-Session-Order"] not in orders
        samples = scrape(client)
        assert value(samples, "viralspot_random_feed_sessions_started_total", page="first") == 2
        assert value(samples, "viralspot_random_feed_sessions_started_total", page="later") == 1
    finally:
        dispose(app)


def test_round_trips_count_every_store_call_of_a_page(tmp_path):
    """A page whose first candidates the session was served in another feed makes more calls: the
    counter adds each one, as the page reports them."""
    app = seeded_app(tmp_path)
    try:
        client = app.test_client()
        service = app.extensions["viralspot.random_feeds"]
        calls = []
        inner = service.store

        class Counting:
            def serve_page(self, *args, **kwargs):
                calls.append(1)
                return inner.serve_page(*args, **kwargs)

            def __getattr__(self, name):
                return getattr(inner, name)

        service.store = Counting()
        assert random_page(client, limit=40).status_code == 200
        response = client.get("/api/posts", query_string={"random_order": "true", "session_id": SESSION,
                                                          "limit": 20, "content_types": "reel,post"})
        assert response.status_code == 200
        assert value(scrape(client), "viralspot_random_feed_round_trips_total") == len(calls) > 2
    finally:
        dispose(app)


class LosingStore:
    """Wraps a store: its first ``losses`` pages that would take items answer STALE with the
    session's view (a concurrent request of the session changed it meanwhile)."""

    def __init__(self, inner, losses: int) -> None:
        self.inner = inner
        self.losses = losses

    def serve_page(self, session_id, feed_id, view, **kwargs):
        if self.losses > 0 and kwargs.get("candidates") is not None:
            read = self.inner.serve_page(session_id, feed_id, view, **{**kwargs, "candidates": None})
            if read.status is not PageStatus.ABSENT:
                self.losses -= 1
                return PageResult(PageStatus.STALE, read.view)
        return self.inner.serve_page(session_id, feed_id, view, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_session_conflict_answers(tmp_path):
    app = seeded_app(tmp_path)
    try:
        service = app.extensions["viralspot.random_feeds"]
        store = service.store
        client = app.test_client()
        for session in ("conflicted-once", "always-conflicted"):
            assert random_page(client, session).status_code == 200
        service.store = LosingStore(store, losses=2)
        assert random_page(client, "conflicted-once", offset=10).status_code == 200  # lost twice, then won
        service.store = LosingStore(store, losses=10_000)
        response = random_page(client, "always-conflicted", offset=10)
        assert response.status_code == 503 and response.get_json()["error_code"] == "SESSION_CONFLICT"
        service.store = store
        samples = scrape(client)
        assert value(samples, "viralspot_session_conflict_responses_total") == 1
        assert value(samples, "viralspot_http_requests_total", endpoint="content.reels", method="GET",
                     status="503") == 1
        assert value(samples, "viralspot_random_feed_pages_total", how="claim") == 3
        assert value(samples, "viralspot_random_feed_round_trips_total") == 1 + 1 + 3  # the 503 counts none
    finally:
        dispose(app)


class UnreachableStore:
    storage_type = "unreachable"
    max_feeds = max_items = 10

    def __init__(self, cause: BaseException | None = None) -> None:
        self.cause = cause

    def _down(self, *args, **kwargs):
        if self.cause is None:
            raise StoreUnavailable("connection refused")
        raise StoreUnavailable("redis: down") from self.cause

    serve_page = reset = session_count = summary = session_ids = stats = _down

    def ping(self):
        return False

    def close(self):
        pass


def down(app, store) -> None:
    app.extensions["viralspot.session_store"] = store
    app.extensions["viralspot.random_feeds"].store = store


def test_store_errors_by_kind(client, app):
    real = app.extensions["viralspot.session_store"]
    try:
        down(app, UnreachableStore(TimeoutError("timed out")))
        assert client.post("/api/reset-session?session_id=abc").status_code == 503
        assert client.get("/api/sessions/abc").status_code == 503
        assert random_page(client, "abc").status_code == 503
        down(app, UnreachableStore())
        assert client.post("/api/reset-session?session_id=abc").status_code == 503
    finally:
        down(app, real)
    samples = scrape(client)
    assert value(samples, "viralspot_store_errors_total", kind="TimeoutError") == 3
    assert value(samples, "viralspot_store_errors_total", kind="StoreUnavailable") == 1
    assert value(samples, "viralspot_random_feed_pages_total", how="claim") == 0


def test_store_error_kind_names_the_underlying_error():
    class ConnectionError(Exception):  # noqa: A001 - as redis-py names it
        pass

    try:
        try:
            raise ConnectionError("refused")
        except ConnectionError as error:
            raise StoreUnavailable("redis: refused") from error
    except StoreUnavailable as error:
        assert store_error_kind(error) == "ConnectionError"
    assert store_error_kind(StoreUnavailable("x")) == "StoreUnavailable"


def test_item_snapshot_hits_and_misses(tmp_path):
    app = seeded_app(tmp_path, ITEM_SNAPSHOT_DIR=str(tmp_path / "snapshots"), ITEM_SNAPSHOT_WRITE=False)
    try:
        from viralspot.catalog.database import ITEM_SNAPSHOTS

        app.extensions[ITEM_SNAPSHOTS].recheck = 0  # look for the file on every page
        client = app.test_client()
        assert random_page(client, "before").status_code == 200  # no snapshot written: a miss
        result = app.test_cli_runner().invoke(args=["content", "snapshot"])
        assert result.exit_code == 0, result.output
        assert random_page(client, "after").status_code == 200  # read from the snapshot: a hit
        samples = scrape(client)
        assert value(samples, "viralspot_item_snapshot_lookups_total", result="miss") == 1
        assert value(samples, "viralspot_item_snapshot_lookups_total", result="hit") == 1
    finally:
        dispose(app)


def test_each_app_counts_its_own_requests_outside_gunicorn():
    first, second = create_app({"CONFIG": "testing"}), create_app({"CONFIG": "testing"})
    first.test_client().get("/livez")
    samples = scrape(second.test_client())
    assert value(samples, "viralspot_http_requests_total", endpoint="health.livez", method="GET", status="200") == 0
    assert first.extensions[EXTENSION_KEY] is not second.extensions[EXTENSION_KEY]


@pytest.mark.parametrize("setting", [False, 0, "false", "off"])
def test_metrics_can_be_turned_off(setting):
    app = create_app({"CONFIG": "testing", "METRICS": setting})
    client = app.test_client()
    assert EXTENSION_KEY not in app.extensions
    response = client.get("/metrics")
    assert response.status_code == 404 and response.get_json()["error_code"] == "NOT_FOUND"
    assert client.get("/livez").status_code == 200
    assert "/metrics" not in client.get("/api/openapi.json").get_json()["paths"]


def test_metrics_off_from_the_environment(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_METRICS", "false")
    app = create_app({"CONFIG": "testing"})
    assert app.test_client().get("/metrics").status_code == 404


def test_metrics_is_documented_as_text(client):
    operation = client.get("/api/openapi.json").get_json()["paths"]["/metrics"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert operation["tags"] == ["metrics"]


# --- multiprocess mode under real gunicorn -------------------------------------------------------------

def request(port: int, path: str, headers: dict | None = None, timeout: float = 10.0):
    """(status, headers, body) of one GET on a new connection (so any worker may accept it)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def livez_count(body: bytes) -> float:
    return value(parse(body.decode()), "viralspot_http_requests_total", endpoint="health.livez", method="GET",
                 status="200")


def multiproc_dir_of(pid: int) -> Path | None:
    """The directory of the metric files worker ``pid`` has open (prometheus_client keeps them open)."""
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = Path(os.readlink(fd))
            except OSError:
                continue
            if target.suffix == ".db" and target.name.startswith(("counter_", "histogram_")):
                return target.parent
    except FileNotFoundError:
        pass
    return None


def per_worker_livez(directory: Path, pids: set[int], scratch: Path) -> dict[int, float]:
    """Each worker's own livez count: its files alone, read by prometheus_client's collector."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    counts = {}
    for pid in pids:
        alone = scratch / str(pid)
        alone.mkdir(parents=True, exist_ok=True)
        for old in alone.iterdir():
            old.unlink()
        for path in directory.glob(f"*_{pid}.db"):
            shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = livez_count(generate_latest(registry))
    return counts


@pytest.mark.redis
def test_a_scrape_answered_by_any_worker_reports_every_worker(redis_clean, tmp_path):
    from gunicorn_servers import GunicornServer, run_threads

    database_url = f"sqlite:///{tmp_path}/catalog.db"
    with GunicornServer(tmp_path, database_url=database_url, store_url=redis_clean.url, workers=2, threads=2,
                        name="metrics", extra_env={"VIRALSPOT_LOG_FORMAT": "json", "GUNICORN_ACCESSLOG": "-",
                                                   "VIRALSPOT_LOG_LEVEL": "INFO"}) as server:
        port = server.port
        workers = server.worker_pids()
        assert len(workers) == 2
        directory = multiproc_dir_of(min(workers))
        assert directory is not None and directory == multiproc_dir_of(max(workers))
        assert directory.name.startswith("viralspot-metrics-")  # made by gunicorn.conf.py

        # Requests over new connections from 4 threads, until both workers have served some.
        sent = 0
        served: dict[int, float] = {}
        for _batch in range(20):
            def client():
                for _ in range(10):
                    status, headers, _body = request(port, "/livez", {"X-Request-ID": "mp-livez"})
                    assert status == 200 and headers["X-Request-ID"] == "mp-livez"
            run_threads([client] * 4, timeout=60)
            sent += 40
            served = per_worker_livez(directory, workers, tmp_path / "per-worker")
            if all(count > 0 for count in served.values()):
                break
        assert sum(served.values()) == sent
        assert all(count > 0 for count in served.values()), served  # both workers served requests

        # Each scrape, whichever worker answers it, reports the total.
        scrape_counts = []
        for _ in range(12):
            status, headers, body = request(port, "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            scrape_counts.append(livez_count(body))
        assert scrape_counts == [sent] * 12, scrape_counts

        # A worker that exits: its counts stay in every scrape after the master replaced it.
        victim = min(workers)
        os.kill(victim, signal.SIGTERM)
        replacement = server.wait_workers(2, exclude={victim}, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                status, _headers, body = request(port, "/metrics")
                if status == 200 and multiproc_dir_of(max(replacement - workers)) is not None:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        for _ in range(6):
            status, _headers, body = request(port, "/metrics")
            assert status == 200 and livez_count(body) == sent
        log_text = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert not directory.exists()  # removed as the master exits

    # VIRALSPOT_LOG_FORMAT=json: every line gunicorn and the app wrote is one JSON object; the access
    # lines carry the request id the app answered.
    lines = [line for line in log_text.splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    access = [entry for entry in entries if entry.get("logger") == "gunicorn.access" and entry["path"] == "/livez"]
    assert len(access) == sent
    assert all(entry["request_id"] == "mp-livez" and entry["status"] == 200 for entry in access)
    scrapes = [entry for entry in entries if entry.get("logger") == "gunicorn.access" and entry["path"] == "/metrics"]
    assert scrapes and all(len(entry["request_id"]) == 32 for entry in scrapes)  # made by the app


def test_a_gunicorn_that_cannot_bind_its_port_leaves_no_metrics_directory(tmp_path):
    """The master makes its multiprocess directory before it binds; gunicorn calls no ``on_exit``
    when the port is taken, so the directory was left behind, one a failed start."""
    import socket
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path), "PORT": str(taken.getsockname()[1]),
               "VIRALSPOT_DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db"}
        answer = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=root,
                                env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode != 0 and "Connection in use" in answer.stderr, answer.stderr[-1000:]
    assert "prometheus multiprocess directory: " + str(tmp_path) in answer.stderr  # it was made there
    assert not list(tmp_path.glob("viralspot-metrics-*"))

