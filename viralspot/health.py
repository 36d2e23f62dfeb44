"""Health: ``GET /livez`` (liveness), ``GET /readyz`` (readiness), and ``GET /health`` / ``GET /``.

``/livez`` asks no dependency. ``/readyz`` pings the session store and reads the catalog's state,
concurrently, each waited for at most ``READINESS_TIMEOUT`` seconds: 200 with each check's result,
or the 503 envelope plus ``checks``. ``/health`` (and ``/``) runs the same checks and answers in its
older shape. Each check runs in its own thread, and one still running from an earlier probe is
joined rather than started again: a hung dependency holds at most one thread per check per process.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

from flask import Flask, current_app

from .api import DATABASE_ERRORS, STORE_ERRORS, Blueprint
from .error_codes import ApiError
from .catalog.queries import catalog_state
from .clock import utc_timestamp
from .extensions import catalog, session_store
from .request_ids import bound, request_id
from .schemas.envelope import api_response, error_response
from .schemas.probes import LivenessResponseSchema, ReadinessErrorSchema, ReadinessResponseSchema
from .schemas.responses import HealthResponseSchema

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__, description="Liveness and readiness.")

_CHECKS_KEY = "viralspot.health_checks"
_NO_STORE = {"Cache-Control": "no-store"}


def _database_ok() -> bool:
    # The catalog's state, not SELECT 1: it reads the catalog's pages, so a corrupt file fails it.
    with catalog.connect() as connection:
        catalog_state(connection)
        return True


#: name -> probe (run in an app context; True when the dependency answers).
PROBES: dict[str, Callable[[], bool]] = {"session_store": lambda: session_store.backend.ping(),
                                         "database": _database_ok}


def _run_probe(app: Flask, name: str, probe: Callable[[], bool], future: Future, rid: str | None) -> None:
    started = time.perf_counter()
    ok = False
    with bound(rid):
        try:
            with app.app_context():
                ok = bool(probe())
        except Exception as error:  # noqa: BLE001 - a health check reports, it never raises
            log.warning("%s check failed: %s", name, type(error).__name__)
        future.set_result((ok, time.perf_counter() - started))


def run_checks() -> dict[str, dict]:
    """{name: {"status": "ok" | "unavailable" | "timeout", "seconds": float}}, within ``READINESS_TIMEOUT``."""
    app = current_app._get_current_object()
    timeout = float(app.config["READINESS_TIMEOUT"])
    # The check of each dependency currently running in this app (at most one each).
    lock, running = app.extensions.setdefault(_CHECKS_KEY, (threading.Lock(), {}))
    started = time.perf_counter()
    deadline = started + max(0.0, timeout)
    futures: dict[str, Future] = {}
    rid = request_id()
    with lock:
        for name, probe in PROBES.items():
            future = running.get(name)
            if future is None or future.done():
                future = running[name] = Future()
                threading.Thread(target=_run_probe, args=(app, name, probe, future, rid), daemon=True,
                                 name=f"health-check-{name}").start()
            futures[name] = future
    results = {}
    for name, future in futures.items():
        try:
            ok, seconds = future.result(timeout=max(0.0, deadline - time.perf_counter()))
            results[name] = {"status": "ok" if ok else "unavailable", "seconds": round(seconds, 6)}
        except FutureTimeout:
            log.warning("%s check did not answer within %.2f s", name, timeout)
            results[name] = {"status": "timeout", "seconds": round(time.perf_counter() - started, 6)}
    return results


def _failure(failed: list[str], what: str) -> ApiError:
    code = "DATABASE_UNAVAILABLE" if "database" in failed else "SESSION_STORE_UNAVAILABLE"
    return ApiError(f"{what}: {', '.join(failed)} unavailable", code)


@bp.get("/livez")
@bp.response(200, LivenessResponseSchema, description="The process serves requests")
@bp.errors()
def livez():
    """Liveness: the process serves requests (no dependency is asked)

    For an orchestrator's liveness probe: restart the instance when this fails. A database or
    session store outage does not fail it (see /readyz).
    """
    data = {"status": "alive", "service": "viralspot", "timestamp": utc_timestamp()}
    return api_response(data, "Service is alive", headers=_NO_STORE)


@bp.get("/readyz")
@bp.response(200, ReadinessResponseSchema, description="Every check passed")
@bp.errors(*DATABASE_ERRORS, *STORE_ERRORS, bodies={503: ReadinessErrorSchema})
def readyz():
    """Readiness: the session store and the database answer, within a short timeout

    For an orchestrator's readiness probe: send no traffic while this answers 503. Both checks run
    concurrently, each waited for at most VIRALSPOT_READINESS_TIMEOUT seconds (default 1); a 503
    carries the result of each check.
    """
    checks = run_checks()
    failed = [name for name, result in checks.items() if result["status"] != "ok"]
    if failed:
        response = error_response(_failure(failed, "Not ready"), checks=checks)
        response.headers.update(_NO_STORE)
        return response
    data = {"status": "ready", "service": "viralspot", "checks": checks, "timestamp": utc_timestamp()}
    return api_response(data, "Service is ready", headers=_NO_STORE)


@bp.get("/health")
@bp.response(200, HealthResponseSchema, description="Both dependencies answer")
@bp.errors(*DATABASE_ERRORS, *STORE_ERRORS)
def health():
    """Health: the session store and the database (orchestrators: see /livez and /readyz)"""
    checks = {name: "ok" if result["status"] == "ok" else "unavailable" for name, result in run_checks().items()}
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        raise _failure(failed, "Service degraded")
    data = {"status": "ok", "service": "viralspot", "checks": checks,
            "session_storage_type": session_store.backend.storage_type, "timestamp": utc_timestamp()}
    return api_response(data, "Service is healthy")


@bp.get("/")
@bp.response(200, HealthResponseSchema, description="Both dependencies answer")
@bp.errors(*DATABASE_ERRORS, *STORE_ERRORS)
def root():
    """Health, as /health"""
    return health()
