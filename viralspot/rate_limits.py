"""Per-client rate limits on every ``/api/`` route (flask-limiter), and the client address behind
trusted proxies (``VIRALSPOT_TRUSTED_PROXIES``: Werkzeug's ``ProxyFix`` for that many hops).

``RATE_LIMIT`` is one budget per client shared by all ``/api/`` routes, ``RESET_RATE_LIMIT`` the reset
endpoint's besides (empty: off); each a sliding window counter, a client an address (an IPv6 one by
its /64). The counts live in the session store's Redis (keys starting ``vs2:rl:``), or in the
process with ``memory://``. Over a limit: 429 ``RATE_LIMITED`` with
``Retry-After`` and the ``RateLimit-*`` headers. CORS preflights (``OPTIONS``) and paths outside
``/api/`` (probes, ``/metrics``) are outside every limit and never touch the storage. While
the storage fails, each process counts in its own memory (flask-limiter's in-memory fallback), asking
the storage again after 1, 2, 4 ... 32 s and going back to it once it answers; ``metrics.py`` counts
the failures.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import time
from urllib.parse import quote, urlsplit

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.middleware.proxy_fix import ProxyFix

from .store.redis_url import parse_store_url

log = logging.getLogger(__name__)

KEY_PREFIX = "vs2:rl"
EXTENSION_NAME = "viralspot.rate_limits"
RESET_ENDPOINT = "session.reset"


def limits_storage(session_store_url: str) -> tuple[str, dict]:
    """The limits storage URL and options for the session store's server, in limits' URL forms:
    ``unix://`` as ``redis+unix://``; a Sentinel service without the database in its path (limits
    would read ``/name/0`` as the name ``name0``), the database, the master's and the sentinels'
    passwords as options, and counts read from the master only."""
    scheme = urlsplit(session_store_url).scheme.lower()
    if scheme == "memory":
        return "memory://", {}
    if scheme == "unix":
        return "redis+unix" + session_store_url[len("unix"):], {}
    if scheme == "redis+sentinel":
        parsed = parse_store_url(session_store_url)
        sentinels = ",".join(f"{host}:{port}" for host, port in parsed.sentinels)
        return f"redis+sentinel://{sentinels}/{quote(parsed.service_name, safe='')}", {
            "db": parsed.pool_kwargs["db"], "password": parsed.pool_kwargs["password"], "use_replicas": False,
            "sentinel_kwargs": {"password": parsed.pool_kwargs.get("sentinel_password")}}
    return session_store_url, {}  # redis, rediss, redis+cluster: the same forms


def client_key() -> str:
    """Whom a budget belongs to: the client's address (``ProxyFix`` resolved it behind trusted
    proxies), an IPv6 one by its /64, the block one host is usually given (each address of it would
    otherwise have a budget of its own)."""
    address = get_remote_address()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ip.ipv4_mapped or ipaddress.ip_network((ip, 64), strict=False))
    return str(ip)


def _preflight() -> bool:
    """A browser's CORS preflight (answered by flask-cors) is not a call the client's budget pays for."""
    return request.method == "OPTIONS"


class RateLimits:
    """The Flask extension: one flask-limiter ``Limiter`` per app, kept in ``app.extensions``."""

    def init_app(self, app: Flask) -> None:
        config = app.config
        proxies = config["TRUSTED_PROXIES"]
        if proxies:
            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)
        if not config["RATE_LIMIT"] and not config["RESET_RATE_LIMIT"]:
            return  # no limits: no counts, no storage
        uri, options = limits_storage(config["SESSION_STORE_URL"])
        if not uri.startswith("memory"):
            options.update({
                "key_prefix": KEY_PREFIX,  # limits' own prefix: every key starts with it (vs2:rl:LIMITER/...)
                "socket_timeout": config["SESSION_STORE_SOCKET_TIMEOUT"],
                "socket_connect_timeout": config["SESSION_STORE_CONNECT_TIMEOUT"],
                # One attempt: a hung server costs a request one socket timeout, then the counts
                # move into the process (redis-py's cluster client would otherwise retry, seconds).
                "retry": Retry(NoBackoff(), 0)})
            if "sentinel_kwargs" in options:  # the sentinels are asked with the same bounds
                options["sentinel_kwargs"].update({name: options[name] for name in ("socket_timeout",
                                                                                     "socket_connect_timeout")})
        try:
            limiter = self._limiter(app, uri, options)
        except Exception as error:  # noqa: BLE001 - a storage unreachable at start-up: count in this process
            log.error("rate-limit storage unreachable at start-up (%s); counting in this process", type(error).__name__)
            limiter = self._limiter(app, "memory://", {})

        @app.after_request
        def refusal_headers(response):
            if response.status_code == 429 and limiter.current_limit is not None:
                current = limiter.current_limit
                seconds = str(max(0, math.ceil(current.reset_at - time.time())))
                response.headers.update({"Retry-After": seconds, "RateLimit-Limit": str(current.limit.amount),
                                         "RateLimit-Remaining": str(max(0, current.remaining)),
                                         "RateLimit-Reset": seconds})
            return response

    @staticmethod
    def _limiter(app: Flask, uri: str, options: dict) -> Limiter:
        config = app.config
        limiter = Limiter(
            # A sliding window counter (two counts a limit): a fixed window let twice the budget
            # through across a window's edge (1,992 requests in 6.5 s under 1200/minute).
            client_key, strategy="sliding-window-counter", storage_uri=uri, storage_options=options,
            swallow_errors=True, headers_enabled=False, in_memory_fallback_enabled=True,
            application_limits=[config["RATE_LIMIT"]] if config["RATE_LIMIT"] else [],
            default_limits=[config["RESET_RATE_LIMIT"]] if config["RESET_RATE_LIMIT"] else [],
            default_limits_exempt_when=lambda: request.endpoint != RESET_ENDPOINT)
        # Probes, /metrics, the root and preflights are outside every limit: a request filter, which
        # flask-limiter reads before anything else, so they never wait on the storage either (an
        # exemption per limit still let them ask a failed storage whether it is back).
        limiter.request_filter(lambda: not request.path.startswith("/api/") or _preflight())
        limiter.init_app(app)
        app.extensions[EXTENSION_NAME] = limiter
        return limiter
