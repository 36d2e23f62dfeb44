"""The ``SessionStore`` Flask extension: picks a backend from a URL, keeps it in ``app.extensions``.

``VIRALSPOT_SESSION_STORE_URL`` chooses the backend by its scheme: ``memory://`` (the default, one
process, ``memory.py``) or Redis (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
``redis+cluster://``, read by ``redis_url.py``; ``redis_store.py``, every operation one Lua
script), shared by every worker and host. A backend's module (and redis-py) is imported only when
its scheme is chosen; an unknown scheme, a malformed URL or a missing package stops the app at
start-up with a clear message.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, current_app

from .base import (FeedSummary, FeedView, PageResult, PageStatus, ResetResult, SessionStoreBackend,
                   SessionSummary, StoreError, StoreUnavailable)
from .redis_url import SCHEMES as REDIS_SCHEMES
from .redis_url import RedisUrlError, parse_store_url

EXTENSION_NAME = "viralspot.session_store"
SCHEMES = ("memory", *REDIS_SCHEMES)


class SessionStoreConfigError(RuntimeError):
    """The configured store URL names no known backend."""


def store_scheme(url: str) -> str:
    """The scheme of a store URL (``memory`` or one of ``REDIS_SCHEMES``), once the URL is checked:
    ``SessionStoreConfigError`` names what is wrong. Nothing is imported or connected: gunicorn's
    master asks it too, to choose its workers and refuse a bad URL once."""
    if not url.strip():
        raise SessionStoreConfigError("VIRALSPOT_SESSION_STORE_URL is empty; use memory:// (one process) or a "
                                      "Redis URL such as redis://127.0.0.1:6379/0")
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as error:  # e.g. an unclosed [ of an IPv6 host; the message holds no password
        raise SessionStoreConfigError(f"VIRALSPOT_SESSION_STORE_URL is not a URL ({error})") from None
    if scheme == "memory":
        return scheme
    if scheme in REDIS_SCHEMES:
        try:
            parse_store_url(url)
        except RedisUrlError as error:
            raise SessionStoreConfigError(f"VIRALSPOT_SESSION_STORE_URL is not a usable Redis URL: {error}") from None
        return scheme
    raise SessionStoreConfigError(
        f"VIRALSPOT_SESSION_STORE_URL has unknown scheme {scheme or '(none)'!r}; "
        f"use one of: {', '.join(s + '://' for s in SCHEMES)}"
    )


def backend_from_url(url: str, config) -> SessionStoreBackend:
    """Build the backend the URL names (checked by ``store_scheme``), with the TTL and size limits
    from ``config``."""
    if store_scheme(url) == "memory":
        from .memory import MemorySessionStore

        return MemorySessionStore(
            ttl=float(config["SESSION_TTL"]),
            max_sessions=int(config["SESSION_MAX"]),
            max_feeds=int(config["SESSION_MAX_FEEDS"]),
            max_items=int(config["SESSION_MAX_ITEMS"]), max_total_items=int(config["SESSION_MAX_TOTAL_ITEMS"]),
        )
    return _redis_backend(url, config)


def _redis_backend(url: str, config) -> SessionStoreBackend:
    """The Redis backend; redis-py is imported only here, when a Redis URL is configured."""
    try:
        from .redis_store import ClientOptions, RedisSessionStore
    except ImportError as error:
        if not (error.name or "").startswith(("redis", "hiredis")):
            raise
        raise SessionStoreConfigError(
            f"VIRALSPOT_SESSION_STORE_URL names a Redis store but the redis package is not installed "
            f"({error}); install it with: pip install 'redis[hiredis]'") from None
    options = ClientOptions(
        connect_timeout=float(config["SESSION_STORE_CONNECT_TIMEOUT"]),
        socket_timeout=float(config["SESSION_STORE_SOCKET_TIMEOUT"]),
        retries=int(config["SESSION_STORE_RETRIES"]),
        max_connections=int(config["SESSION_STORE_MAX_CONNECTIONS"]),
    )
    return RedisSessionStore(url, ttl=float(config["SESSION_TTL"]), max_feeds=int(config["SESSION_MAX_FEEDS"]),
                             max_items=int(config["SESSION_MAX_ITEMS"]), options=options)


class SessionStore:
    """Flask extension holding the app's session store backend.

    ``session_store.backend`` is the backend of the current app; tests may pass
    a ready backend to ``init_app``.
    """

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, backend: SessionStoreBackend | None = None) -> None:
        if backend is None:
            backend = backend_from_url(app.config["SESSION_STORE_URL"], app.config)
        app.extensions[EXTENSION_NAME] = backend

    @staticmethod
    def backend_for(app: Flask) -> SessionStoreBackend:
        return app.extensions[EXTENSION_NAME]

    @property
    def backend(self) -> SessionStoreBackend:
        return self.backend_for(current_app)


__all__ = [
    "FeedSummary", "FeedView", "PageResult", "PageStatus", "ResetResult", "SessionStore", "SessionStoreBackend",
    "SessionSummary",
    "StoreError", "StoreUnavailable", "SessionStoreConfigError", "backend_from_url", "store_scheme",
]
