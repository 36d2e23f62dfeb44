"""``VIRALSPOT_ADMIN_TOKEN``: when set, session inspection and ``/metrics`` need ``Authorization:
Bearer <token>``, else answer 401 ``UNAUTHORIZED``. Production refuses to start without a token
unless ``VIRALSPOT_PUBLIC_INSPECTION=true``."""
from __future__ import annotations

import hmac

from flask import Flask, request

from .error_codes import ApiError

#: The endpoints behind the token.
PROTECTED = frozenset({"session.inspect_session", "metrics.scrape"})


def check_production(app: Flask) -> str | None:
    """Why production must refuse these settings, or None."""
    if app.config.get("PRODUCTION") and not app.config["ADMIN_TOKEN"] and not app.config["PUBLIC_INSPECTION"]:
        return ("VIRALSPOT_ADMIN_TOKEN is not set: session inspection and /metrics would be public "
                "(set VIRALSPOT_PUBLIC_INSPECTION=true if that is meant)")
    return None


def init_app(app: Flask) -> None:
    token = app.config["ADMIN_TOKEN"]
    if not token:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    def require_token():
        if request.endpoint in PROTECTED:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                raise ApiError("This endpoint needs the admin token", "UNAUTHORIZED")
