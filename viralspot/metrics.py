"""Prometheus metrics: ``GET /metrics`` and the counters the service keeps.

Under gunicorn (``gunicorn.conf.py``) ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker
starts, so prometheus_client runs in multiprocess mode: each worker writes its samples to files
in that directory and a scrape, whichever worker answers it, reports the sum over all workers
(those that died included, as counters must). Outside gunicorn (``flask run``, tests) each app
keeps its own registry. ``VIRALSPOT_METRICS=false`` turns all of it off (no ``/metrics``, no
counting).

Labels are bounded: ``endpoint`` is the Flask endpoint name (``content.reels``), ``unmatched``
when no route matched (404, 405), never the path; methods outside the standard ones count as
``other``; no label carries a session id or any other client value.

The instrumentation calls (``count``, ``random_page``) are no-ops outside an app
context or when metrics are off, so library code can call them unconditionally. The reset
notices a Redis store hears (in a thread of their own, outside any request) are counted through
the store's ``on_reset_heard``, set by ``count_reset_notices`` when the app is made.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time

from flask import Flask, Response, current_app, has_app_context, request

from .api import Blueprint
from .store import SessionStoreBackend

log = logging.getLogger(__name__)

EXTENSION_KEY = "viralspot.metrics"
#: Environment variables that put prometheus_client in multiprocess mode (it reads them at import).
MULTIPROC_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
#: Request latency buckets, seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: ``endpoint`` label of a request no route matched.
UNMATCHED = "unmatched"
_KIND = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_STARTED = "viralspot.request_started"  # in the request's environ
#: The text exposition format every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_shared: "Metrics | None" = None  # the process's metrics in multiprocess mode (one set of files)
_shared_lock = threading.Lock()

bp = Blueprint("metrics", __name__, description="Prometheus metrics of the service.")


class Metrics:
    """The service's metrics; ``registry`` None in multiprocess mode (the files are the registry)."""

    def __init__(self, registry) -> None:
        from prometheus_client import Counter, Histogram

        self.registry = registry
        self.requests = Counter(
            "viralspot_http_requests", "HTTP requests answered, by endpoint, method and status.",
            ["endpoint", "method", "status"], registry=registry)
        self.latency = Histogram(
            "viralspot_http_request_duration_seconds", "Seconds from routing to the response, by endpoint.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry)
        self.feed_pages = Counter(
            "viralspot_random_feed_pages",
            "Random pages answered, by how: claimed (new items taken) or replayed (already served).",
            ["how"], registry=registry)
        self.feed_round_trips = Counter(
            "viralspot_random_feed_round_trips", "Session store calls made by random pages.", registry=registry)
        self.sessions_started = Counter(
            "viralspot_random_feed_sessions_started",
            "Sessions started by random pages: at offset 0 (first), or past it (later: the client's session "
            "was lost since its last page: expired, evicted, reset elsewhere or lost in a failover).",
            ["page"], registry=registry)
        self.session_conflicts = Counter(
            "viralspot_session_conflict_responses", "503 SESSION_CONFLICT answers (claims kept conflicting).",
            registry=registry)
        self.store_errors = Counter(
            "viralspot_store_errors", "Session store failures answered 503, by kind (the underlying error).",
            ["kind"], registry=registry)
        self.rate_limit_storage_errors = Counter(
            "viralspot_rate_limit_storage_errors",
            "Rate-limit storage failures (each process then counts in its own memory until it answers).",
            registry=registry)
        self.database_errors = Counter(
            "viralspot_database_errors", "Database outages answered 503 DATABASE_UNAVAILABLE.", registry=registry)
        self.reset_notices = Counter(
            "viralspot_session_reset_notices",
            "Session resets heard on the store's reset channel, summed over processes: every subscribed "
            "process hears each reset, its own included (Redis store only).", registry=registry)
        self.snapshot_lookups = Counter(
            "viralspot_item_snapshot_lookups",
            "Item-snapshot look-ups of random pages: hit (items read from the snapshot) or miss (from the database).",
            ["result"], registry=registry)
        # Series that exist from the start (at 0), so rates and ratios are defined before the first
        # event; kept, as a random page counts in up to four of them (``labels`` takes a lock each time).
        self.page_series = {replayed: self.feed_pages.labels("replay" if replayed else "claim")
                            for replayed in (True, False)}
        self.snapshot_series = {hit: self.snapshot_lookups.labels("hit" if hit else "miss") for hit in (True, False)}
        self.started_series = {later: self.sessions_started.labels("later" if later else "first")
                               for later in (True, False)}

    def exposition(self) -> bytes:
        """The text exposition of every metric: of all workers' files in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self.registry is None:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _build_metrics() -> Metrics:
    global _shared
    from prometheus_client import CollectorRegistry, disable_created_metrics, values

    disable_created_metrics()  # no *_created series: half the series, nothing a dashboard reads
    if any(os.environ.get(name) for name in MULTIPROC_ENV):
        if values.ValueClass is not values.MutexValue:
            with _shared_lock:
                if _shared is None:
                    _shared = Metrics(registry=None)
                return _shared
        log.warning("PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported: "
                    "/metrics reports this process only")
    return Metrics(CollectorRegistry(auto_describe=True))


def init_app(app: Flask) -> None:
    """Count every request (unless ``METRICS`` is off; ``create_app`` then leaves ``bp`` out too)."""
    if not app.config["METRICS"]:
        return
    metrics = app.extensions[EXTENSION_KEY] = _build_metrics()

    logging.getLogger("flask-limiter").addHandler(_LIMITER_STORAGE_ERRORS)

    @app.before_request
    def start_timer():
        request.environ[_STARTED] = time.perf_counter()

    @app.after_request
    def count_request(response):
        rule = request.url_rule
        endpoint = rule.endpoint if rule is not None else UNMATCHED
        method = request.method if request.method in METHODS else "other"
        metrics.requests.labels(endpoint, method, str(response.status_code)).inc()
        started = request.environ.get(_STARTED)
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response


def count_reset_notices(app: Flask, store: SessionStoreBackend) -> None:
    """Count the reset notices ``store`` (the app's session store backend) hears, before its first use."""
    if (metrics := app.extensions.get(EXTENSION_KEY)) is not None:
        store.on_reset_heard = metrics.reset_notices.inc


@bp.get("/metrics")
@bp.response(200, {"type": "string"}, content_type="text/plain", description="Prometheus text format 0.0.4.")
@bp.errors("UNAUTHORIZED")
def scrape():
    """Prometheus metrics (text exposition format)

    Every worker's counters summed (prometheus_client multiprocess mode under gunicorn). Absent
    when VIRALSPOT_METRICS is false.
    """
    body = current_app.extensions[EXTENSION_KEY].exposition()
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


# --- instrumentation, called from the code paths it counts ------------------------------------

def current() -> Metrics | None:
    """The current app's metrics, or None (no app context, metrics off)."""
    return current_app.extensions.get(EXTENSION_KEY) if has_app_context() else None


def random_page(page, offset: int) -> None:
    """Count a random page (``feed.service.ServedPage``) at ``offset``: how it was answered, its
    store calls, whether its items came from an item snapshot, and a session it started."""
    if (metrics := current()) is not None:
        metrics.page_series[page.replayed].inc()
        metrics.feed_round_trips.inc(page.round_trips)
        if page.snapshot_hit is not None:
            metrics.snapshot_series[page.snapshot_hit].inc()
        if page.started_session:
            metrics.started_series[offset > 0].inc()


def count(counter: str, *labels: str) -> None:
    """Add one to ``counter``, a ``Metrics`` attribute (to its series of ``labels`` when it has labels)."""
    if (metrics := current()) is not None:
        series = getattr(metrics, counter)
        (series.labels(*labels) if labels else series).inc()


def store_error_kind(error: BaseException) -> str:
    """The error under a store failure (``TimeoutError``, ``ConnectionError``, ...) or the failure's own class."""
    cause = error.__cause__ or error.__context__
    name = type(cause if cause is not None else error).__name__
    return name if _KIND.fullmatch(name) else "other"


class _LimiterStorageErrors(logging.Handler):
    """Counts the rate-limit storage failures flask-limiter logs on its logger: each switch to its
    in-memory fallback, and each failure it swallows."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(("Rate limit storage unreachable", "Failed to")):
            count("rate_limit_storage_errors")


_LIMITER_STORAGE_ERRORS = _LimiterStorageErrors()
