"""Cross-origin requests (CORS), so the ViralSpot web frontend can call the API from its own origin.

``VIRALSPOT_CORS_ORIGINS``: ``*`` (the default) or empty allows any origin; a comma-separated list
allows exactly those. Credentials are never allowed (session ids travel in the query). Every
response of ``/api/*`` and ``/health``, errors included, carries the headers; a browser's script may
read the request id, a random page's ``X-Session-Order``, ``Retry-After`` (of a 429 or a 503) and a
429's ``RateLimit-*``. With a list of origins every such response says ``Vary: Origin``, so a cache
does not give one origin's answer to another. ``OPTIONS`` on a route (a preflight or not) answers
204 with no body, its ``Allow`` and a preflight's ``Access-Control-Allow-Methods`` naming the route's
own methods.
"""
from __future__ import annotations

import re
from typing import Iterable

from flask import Flask, request
from flask_cors import CORS

from .schemas.responses import SESSION_ORDER_HEADER

#: Paths (regular expressions, matched from the start of the path) that answer cross-origin requests.
CORS_RESOURCES = (r"/api/.*", r"/health$")
CORS_METHODS = ("GET", "POST", "OPTIONS")
#: Response headers beyond the CORS-safelisted ones a browser's script may read.
EXPOSED_HEADERS = ("X-Request-ID", SESSION_ORDER_HEADER, "Retry-After", "RateLimit-Limit", "RateLimit-Remaining",
                   "RateLimit-Reset")
#: Seconds a browser may cache a preflight's answer.
PREFLIGHT_MAX_AGE = 600


def parse_origins(value: str | Iterable[str] | None) -> list[str]:
    """``"*"`` / ``"a, b"`` / ``["a", "b"]`` -> ``["*"]`` / ``["a", "b"]``; empty means ``["*"]``."""
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value or ()]
    origins = [item.strip().rstrip("/") for item in items if item.strip()]
    if not origins or "*" in origins:
        return ["*"]
    return list(dict.fromkeys(origins))


def init_cors(app: Flask) -> None:
    origins = parse_origins(app.config["CORS_ORIGINS"])
    allow_all = origins == ["*"]

    @app.after_request
    def route_methods_only(response):
        # Flask's automatic answer to OPTIONS is an empty 200 typed text/html, and flask-cors lists
        # CORS_METHODS on every path: answer 204 and name the route's methods. Registered before
        # flask-cors's hook, so it runs after it.
        rule = request.url_rule
        if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
            response.status_code = 204
            response.headers.pop("Content-Type", None)
            if "Access-Control-Allow-Methods" in response.headers:
                response.headers["Access-Control-Allow-Methods"] = ", ".join(sorted(rule.methods))
        return response
    if not allow_all:
        resources = re.compile("|".join(f"(?:{pattern})" for pattern in CORS_RESOURCES))

        @app.after_request
        def vary_by_origin(response):
            # flask-cors says it only when it allows the origin: the answer to no origin, or to one
            # not listed, would otherwise be cached for a listed one (and lack its allow header).
            # Registered before flask-cors's hook, so it runs after it and adds no second Origin.
            if resources.match(request.path):
                response.vary.add("Origin")
            return response

    CORS(app, resources={pattern: {} for pattern in CORS_RESOURCES}, origins="*" if allow_all else origins,
         methods=list(CORS_METHODS), allow_headers="*", expose_headers=list(EXPOSED_HEADERS),
         supports_credentials=False, send_wildcard=allow_all, always_send=False, vary_header=True,
         max_age=PREFLIGHT_MAX_AGE)
    app.extensions["viralspot.cors_origins"] = origins
