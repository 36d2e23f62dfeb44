"""Liveness and readiness: ``GET /health`` and ``GET /``, cheap JSON."""
from flask import Blueprint, current_app
from sqlalchemy import text

from .errors import ApiError
from .extensions import catalog, session_store
from .openapi import DATABASE_ERRORS, STORE_ERRORS, documented
from .schemas.envelope import api_response
from .schemas.responses import HealthResponseSchema
from .timeutil import utc_timestamp

bp = Blueprint("health", __name__)


def _check(probe) -> str:
    try:
        return "ok" if probe() else "unavailable"
    except Exception:  # a health probe reports, it never raises
        current_app.logger.warning("health probe failed", exc_info=True)
        return "unavailable"


def _database_ok() -> bool:
    with catalog.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


@bp.get("/")
@bp.get("/health")
@documented("Liveness and readiness: the session store and the database", response=HealthResponseSchema,
            errors=DATABASE_ERRORS + STORE_ERRORS)
def health():
    checks = {
        "session_store": _check(session_store.backend.ping),
        "database": _check(_database_ok),
    }
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        code = "DATABASE_UNAVAILABLE" if "database" in failed else "SESSION_STORE_UNAVAILABLE"
        raise ApiError(f"Service degraded: {', '.join(failed)} unavailable", code)
    data = {
        "status": "ok",
        "service": "viralspot",
        "checks": checks,
        "session_storage_type": session_store.backend.storage_type,
        "timestamp": utc_timestamp(),
    }
    return api_response(data, "Service is healthy")
