"""The ``SessionStore`` Flask extension: picks a backend from a URL, keeps it in ``app.extensions``.

``VIRALSPOT_SESSION_STORE_URL`` chooses the backend by its scheme. Today that is
``memory://`` (the default, one process); the backend interface in ``base.py``
is shaped so that a Redis backend can run every operation as one atomic script.
A backend's module is imported only when its scheme is chosen; any other
scheme stops the app at start-up with a clear message.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app

from .base import (ClaimResult, FeedView, ResetResult, SessionStore as StoreBackend, SessionSummary,
                   StoreError, StoreUnavailable)

EXTENSION_NAME = "viralspot.session_store"
SCHEMES = ("memory",)


class SessionStoreConfigError(RuntimeError):
    """The configured store URL names no known backend."""


def backend_from_url(url: str, config) -> StoreBackend:
    """Build the backend the URL names, with the TTL and size limits from ``config``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemorySessionStore

        return MemorySessionStore(
            ttl=float(config["SESSION_TTL"]),
            max_sessions=int(config["SESSION_MAX"]),
            max_feeds=int(config["SESSION_MAX_FEEDS"]),
        )
    if scheme in ("redis", "rediss"):
        raise SessionStoreConfigError(
            "VIRALSPOT_SESSION_STORE_URL: the redis:// session backend is not part of this release; "
            "use memory:// (one gunicorn worker)")
    raise SessionStoreConfigError(
        f"VIRALSPOT_SESSION_STORE_URL has unknown scheme {scheme or '(none)'!r}; "
        f"use one of: {', '.join(s + '://' for s in SCHEMES)}"
    )


class SessionStore:
    """Flask extension holding the app's session store backend.

    ``session_store.backend`` is the backend of the current app; tests may pass
    a ready backend to ``init_app``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, backend: StoreBackend | None = None) -> None:
        if backend is None:
            backend = backend_from_url(app.config["SESSION_STORE_URL"], app.config)
        app.extensions[EXTENSION_NAME] = backend

    @staticmethod
    def backend_for(app: Flask) -> StoreBackend:
        return app.extensions[EXTENSION_NAME]

    @property
    def backend(self) -> StoreBackend:
        return self.backend_for(current_app)


__all__ = [
    "ClaimResult", "FeedView", "ResetResult", "SessionStore", "SessionSummary", "StoreBackend",
    "StoreError", "StoreUnavailable", "SessionStoreConfigError", "backend_from_url",
]
