"""Cross-origin requests (CORS), so the ViralSpot web frontend can call the API from its own origin.

``VIRALSPOT_CORS_ORIGINS`` (setting ``CORS_ORIGINS``): ``*`` (the default) allows any origin;
a comma-separated list (``https://app.example.com,http://localhost:3000``), or a JSON list,
allows exactly those. Credentials are never allowed: session ids travel in the query, not in
cookies. ``/api/*`` and ``/health`` answer preflights for GET and POST, and every response of
theirs, errors included (a 400's envelope), carries the headers, so a browser can read it.
"""
from __future__ import annotations

from typing import Iterable

from flask import Flask
from flask_cors import CORS

#: Paths (regular expressions, matched from the start of the path) that answer cross-origin requests.
CORS_RESOURCES = (r"/api/.*", r"/health$")
CORS_METHODS = ("GET", "POST", "OPTIONS")
#: Seconds a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = 600


def parse_origins(value: str | Iterable[str] | None) -> list[str]:
    """``"*"`` / ``"a, b"`` / ``["a", "b"]`` -> ``["*"]`` / ``["a", "b"]``; empty means ``["*"]``."""
    if value is None:
        items: list[str] = []
    elif isinstance(value, str):
        items = value.split(",")
    else:
        items = [str(item) for item in value]
    origins = [item.strip().rstrip("/") for item in items if item.strip()]
    if not origins or "*" in origins:
        return ["*"]
    return list(dict.fromkeys(origins))


def init_cors(app: Flask) -> None:
    origins = parse_origins(app.config["CORS_ORIGINS"])
    allow_all = origins == ["*"]
    CORS(
        app,
        resources={pattern: {} for pattern in CORS_RESOURCES},
        origins="*" if allow_all else origins,
        methods=list(CORS_METHODS),
        allow_headers="*",
        expose_headers=["X-Request-ID"],
        supports_credentials=False,
        send_wildcard=allow_all,
        always_send=False,
        vary_header=True,
        max_age=PREFLIGHT_MAX_AGE,
    )
    app.extensions["viralspot.cors_origins"] = origins
