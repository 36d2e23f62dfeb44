"""``VIRALSPOT_ADMIN_TOKEN``: when set, session inspection and ``/metrics`` need ``Authorization:
Bearer <token>``, else answer 401 ``UNAUTHORIZED``. Production refuses to start without a token
unless ``VIRALSPOT_PUBLIC_INSPECTION=true`` (``check_settings`` in ``viralspot/__init__.py``)."""
from __future__ import annotations

import hmac

from flask import Flask, request

from .error_codes import ApiError

#: The endpoints behind the token.
PROTECTED = frozenset({"session.inspect_session", "metrics.scrape"})


def configured_token(config) -> str:
    """The admin token of ``config``, "" when none: a secret file's trailing newline is not the token's."""
    return (config["ADMIN_TOKEN"] or "").strip()


def init_app(app: Flask) -> None:
    token = configured_token(app.config)
    if not token:
        return
    expected = token.encode()

    @app.before_request
    def require_token():
        # A browser's CORS preflight (OPTIONS) never carries credentials: flask-cors answers it.
        if request.endpoint in PROTECTED and request.method != "OPTIONS":
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            # The scheme is case-insensitive (RFC 9110, section 11.1); the token is compared in constant time.
            # WSGI gives header bytes as latin-1 text: back to those bytes, as the token's UTF-8 is compared.
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1", "replace"),
                                                                     expected):
                raise ApiError("This endpoint needs the admin token", "UNAUTHORIZED")
