"""Configuration classes for the viralspot service, and the loading of their settings.

Every setting below can be overridden from the environment with the ``VIRALSPOT_`` prefix
(``VIRALSPOT_SESSION_TTL=3600``). ``load_settings`` reads each value as the type of its default
(a boolean: ``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off`` in any usual case; a
whole number or a number in ASCII decimals, as the API's arguments are (``DecimalInteger``,
``DecimalNumber``: not ``+7`` or ``1_000``); else text, kept as given; spaces around a number or
flag are dropped, and an empty one keeps its default) and
checks it against ``RULES``: a bad value stops the start-up with an error naming the variable. The
class is chosen by ``VIRALSPOT_CONFIG`` (``default``, ``development``, ``testing``, ``production``).
"""
from __future__ import annotations

import os
import re
from functools import cache
from typing import Any, Mapping

from limits import parse_many
from marshmallow import Schema, ValidationError, fields, validate

#: Used only when no VIRALSPOT_SECRET_KEY is set outside production; the app logs a warning.
INSECURE_DEFAULT_SECRET = "viralspot-insecure-development-secret"


class Config:
    """Embedded defaults: SQLite catalog in the instance folder, in-memory sessions."""

    DEBUG = False
    TESTING = False
    #: True in ``ProductionConfig``: start-up then refuses unsafe settings (debug, a pinned clock,
    #: the built-in secret).
    PRODUCTION = False
    SECRET_KEY = INSECURE_DEFAULT_SECRET
    #: SQLAlchemy URL of the catalog. None means SQLite at <instance>/viralspot.db.
    DATABASE_URL: str | None = None
    #: Seconds a SQLite catalog connection waits on another connection's lock before the request
    #: answers 503 DATABASE_UNAVAILABLE.
    DATABASE_BUSY_TIMEOUT = 5.0
    #: Seconds each statement of a request has to answer (SQLite or PostgreSQL; a hung server, a
    #: statement too costly for the catalog) before the request answers 503 DATABASE_UNAVAILABLE; 0:
    #: no limit. The ``flask content`` and ``flask sessions`` commands have none.
    DATABASE_TIMEOUT = 15.0
    #: Session store backend: memory:// (one process) or redis://host:port/db.
    SESSION_STORE_URL = "memory://"
    #: Seconds an idle session is kept.
    SESSION_TTL = 86400
    #: Most sessions the memory backend keeps, and most items they hold together (4-6 bytes each:
    #: 4.2 measured for the served positions, 0.1-2 for the seen set's roaring bitmap, by density);
    #: the least recently used go first.
    SESSION_MAX = 100_000
    SESSION_MAX_TOTAL_ITEMS = 20_000_000
    #: Most random feeds (endpoint + filter set) one session holds; a page of one more answers
    #: 400 SESSION_LIMIT (reset the session to start again).
    SESSION_MAX_FEEDS = 64
    #: Most items one session is served; a page that would pass it answers 400 SESSION_LIMIT.
    SESSION_MAX_ITEMS = 1_000_000
    #: Redis session store: seconds to wait for a connection, and for each reply; after the
    #: retries (with backoff) an unreachable store answers 503 SESSION_STORE_UNAVAILABLE.
    SESSION_STORE_CONNECT_TIMEOUT = 0.5
    SESSION_STORE_SOCKET_TIMEOUT = 0.5
    SESSION_STORE_RETRIES = 2
    #: Redis connections one process keeps (a request waits up to the connect timeout for one).
    SESSION_STORE_MAX_CONNECTIONS = 32
    LOG_LEVEL = "INFO"
    #: "text" (a line per record) or "json" (one JSON object per line). Both carry the request id.
    LOG_FORMAT = "text"
    #: Per-client limits (flask-limiter strings): one budget for all /api/ routes, and the reset
    #: endpoint's besides; "" turns one off. Counted in the session store's Redis (or in memory).
    RATE_LIMIT = "1200/minute"
    RESET_RATE_LIMIT = "60/minute"
    #: Proxy hops in front of the service whose X-Forwarded-For is trusted (Werkzeug's ProxyFix).
    TRUSTED_PROXIES = 0
    #: When set, GET /api/sessions/<id> and /metrics need "Authorization: Bearer <token>".
    ADMIN_TOKEN: str | None = None
    #: Production refuses to start without ADMIN_TOKEN unless this says inspection may be public.
    PUBLIC_INSPECTION = False
    #: Prometheus metrics at GET /metrics (all gunicorn workers summed); false: no endpoint, no counting.
    METRICS = True
    #: gunicorn (``gunicorn.conf.py``): threads per worker, seconds an idle keep-alive connection
    #: stays open, the longest request line (at most 8190; longer answers 414 in the envelope), and
    #: seconds a request's line and headers have to arrive, from when the connection is accepted or
    #: sends its next request (a client that stalls mid-request is closed rather than holding a
    #: thread, answered 408; ``gunicorn_worker.py``).
    GUNICORN_THREADS = 8
    GUNICORN_KEEPALIVE = 2
    GUNICORN_LIMIT_REQUEST_LINE = 8190
    GUNICORN_HEADER_TIMEOUT = 10.0
    #: Seconds GET /readyz (and GET /health) waits for each dependency check (they run concurrently).
    READINESS_TIMEOUT = 1.0
    #: Origins allowed to call the API from a browser (CORS): "*" (any), or a comma-separated list.
    CORS_ORIGINS = "*"
    #: Pins the service's clock at this ISO 8601 instant (tests, demos); None: the system clock.
    #: Refused in production.
    FIXED_NOW: str | None = None
    #: Items `make run` seeds into an empty catalog.
    SEED_ITEMS = 5000
    #: Keys the matching sets of filters cached per process hold together (4 bytes each: 64 MB);
    #: a random page's filter is checked against its set, read once per catalog version.
    RANDOM_MATCH_CACHE_KEYS = 16_000_000
    #: How far past what a session has been served in a feed one random page may start (offset).
    RANDOM_MAX_AHEAD = 1000
    #: Largest offset a random page accepts; past it the answer is 400 INVALID_PARAMETER.
    RANDOM_MAX_OFFSET = 1_000_000
    #: Positions of the session's order one random page may examine (a feed whose items the session
    #: has mostly been served in other feeds then answers a short page, not the last one).
    RANDOM_MAX_SCAN = 1_000_000
    #: random_order=weighted: an item's weight is its outlier score to this power, rounded to 1-8
    #: tickets (docs/architecture.md); 0 weighs every item alike; a negative value refuses to start.
    WEIGHT_EXPONENT = 1.0
    #: Seconds a process reuses the catalog's (version, largest id) for random feeds; 0: every page asks.
    CATALOG_STATE_TTL = 1.0
    #: Where item snapshots (every rendered item of one catalog version in a memory-mapped file, from
    #: which random pages read their items) are kept; None: <instance>/item-snapshots; "": none.
    ITEM_SNAPSHOT_DIR: str | None = None
    #: Whether the server writes a missing snapshot itself, in a background thread (false: only
    #: ``flask content snapshot`` writes them).
    ITEM_SNAPSHOT_WRITE = True
    #: Seconds a catalog state must stay current before the server writes its snapshot (an import
    #: commits a new state every 500 lines; each would otherwise start a full rewrite).
    ITEM_SNAPSHOT_SETTLE = 5.0


class DevelopmentConfig(Config):
    DEBUG = True
    LOG_LEVEL = "DEBUG"


class TestingConfig(Config):
    TESTING = True
    SECRET_KEY = "viralspot-testing-secret"
    DATABASE_URL = "sqlite://"
    SEED_ITEMS = 0
    #: Tests pin the clock (tests/moments.py), so none depends on the day it runs.
    FIXED_NOW = "2026-12-02T12:00:00Z"
    #: Tests write the catalog and read it back at once.
    CATALOG_STATE_TTL = 0
    #: One test client sends more than a real client would; the rate-limit tests set their limits.
    RATE_LIMIT = ""
    RESET_RATE_LIMIT = ""
    #: Tests that want item snapshots give them a directory.
    ITEM_SNAPSHOT_DIR = ""
    ITEM_SNAPSHOT_SETTLE = 0.0


class ProductionConfig(Config):
    PRODUCTION = True
    #: Must come from VIRALSPOT_SECRET_KEY; create_app refuses to start without it.
    SECRET_KEY = None


CONFIGS = {
    "default": Config,
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_class(name: str | None = None) -> type[Config]:
    """The class named by ``name`` or ``VIRALSPOT_CONFIG``; an unknown name is an error."""
    name = (name or os.environ.get("VIRALSPOT_CONFIG") or "default").lower()
    try:
        return CONFIGS[name]
    except KeyError:
        raise RuntimeError(
            f"unknown configuration {name!r}; choose one of {', '.join(sorted(CONFIGS))}"
        ) from None


PREFIX = "VIRALSPOT_"
#: What the configuration class is, chosen by ``VIRALSPOT_CONFIG`` only: no variable of its own
#: (``VIRALSPOT_PRODUCTION=false`` would lift production's refusals).
CHOSEN_BY_CONFIG = ("PRODUCTION", "TESTING")


def _rate_limit(value: str) -> None:
    """A flask-limiter string such as ``1200/minute`` (several joined by ``;``), or empty (off)."""
    if value.strip():
        try:
            limits = parse_many(value)
        except ValueError:
            raise ValidationError("Not a rate limit such as 1200/minute or 10/second;100/hour "
                                  "(empty turns it off).") from None
        if any(limit.amount < 1 for limit in limits):
            raise ValidationError("A rate limit allows at least 1 request (empty turns it off).")


_ORIGIN = re.compile(r"\*|https?://[^\s/,*]+")


def _origins(value: str) -> None:
    """``*``, or a comma-separated list of origins (``scheme://host[:port]``); empty allows any."""
    bad = [item.strip() for item in value.split(",") if item.strip() and not _ORIGIN.fullmatch(item.strip().rstrip("/"))]
    if bad:
        raise ValidationError(f"Not an origin: {bad[0]!r}; use * or a comma-separated list such as "
                              "https://app.example.com,http://localhost:3000.")


#: The catalog's SQLAlchemy URL schemes (drivers this package installs).
_DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


def _database_url(value: str | None) -> None:
    """A SQLite or PostgreSQL URL SQLAlchemy can read; empty means the embedded SQLite file."""
    if not value or not value.strip():
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        scheme = make_url(value.strip()).drivername
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ValidationError("Not a database URL; use sqlite:///path/catalog.db or "
                              "postgresql+psycopg://user@host:5432/db.") from None
    if scheme not in _DATABASE_SCHEMES:
        raise ValidationError(f"The scheme {scheme!r} is not one of {', '.join(_DATABASE_SCHEMES)} "
                              "(the catalog runs on SQLite or PostgreSQL through psycopg).")


class _Choice:
    """One of ``choices`` in any case, spaces around it ignored (loaded as the choice itself); empty
    keeps the default."""

    def __init__(self, choices) -> None:
        self.choices = tuple(choices)

    def __call__(self, value: str) -> None:
        if value.strip().lower() not in self.choices:
            raise ValidationError(f"Must be one of {', '.join(self.choices)} (any case).")


_AT_LEAST_0 = validate.Range(min=0)
_AT_LEAST_1 = validate.Range(min=1)
#: What each setting must be beyond its type; every value, whatever its source, is checked.
RULES = {
    "DATABASE_URL": _database_url,
    "DATABASE_BUSY_TIMEOUT": _AT_LEAST_0,
    "DATABASE_TIMEOUT": validate.Range(min=0, max=86_400),  # PostgreSQL's statement_timeout: at most 2^31 ms
    "SESSION_TTL": validate.Range(min=1, max=315_360_000),  # ten years: Redis counts a TTL in ms
    "SESSION_MAX": _AT_LEAST_1,
    "SESSION_MAX_TOTAL_ITEMS": _AT_LEAST_1,
    "SESSION_MAX_FEEDS": _AT_LEAST_1,
    "SESSION_MAX_ITEMS": _AT_LEAST_1,
    "SESSION_STORE_CONNECT_TIMEOUT": validate.Range(min=0, max=3600, min_inclusive=False),
    "SESSION_STORE_SOCKET_TIMEOUT": validate.Range(min=0, max=3600, min_inclusive=False),
    "SESSION_STORE_RETRIES": _AT_LEAST_0,
    "SESSION_STORE_MAX_CONNECTIONS": _AT_LEAST_1,
    "CORS_ORIGINS": _origins,
    "RATE_LIMIT": _rate_limit,
    "RESET_RATE_LIMIT": _rate_limit,
    "TRUSTED_PROXIES": _AT_LEAST_0,
    "GUNICORN_THREADS": _AT_LEAST_1,
    "GUNICORN_KEEPALIVE": _AT_LEAST_0,
    "GUNICORN_LIMIT_REQUEST_LINE": validate.Range(min=1, max=8190),
    "GUNICORN_HEADER_TIMEOUT": validate.Range(min=0, max=300, min_inclusive=False),
    "READINESS_TIMEOUT": validate.Range(min=0, max=60, min_inclusive=False),
    "SEED_ITEMS": _AT_LEAST_0,
    "RANDOM_MATCH_CACHE_KEYS": _AT_LEAST_1,
    "RANDOM_MAX_AHEAD": _AT_LEAST_0,
    "RANDOM_MAX_OFFSET": _AT_LEAST_0,
    "RANDOM_MAX_SCAN": _AT_LEAST_1,
    "CATALOG_STATE_TTL": _AT_LEAST_0,
    "ITEM_SNAPSHOT_SETTLE": _AT_LEAST_0,
    "LOG_LEVEL": _Choice(("debug", "info", "warning", "error", "critical")),  # the levels gunicorn knows too
    "LOG_FORMAT": _Choice(("text", "json")),
}


class _Written:
    """A number field (the API's arguments and these settings read numbers alike) that first refuses a string its pattern ``_written`` does not match whole."""

    _written: re.Pattern

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not self._written.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class DecimalInteger(_Written, fields.Integer):
    """An integer in ASCII decimal digits, ``-`` allowed: not ``+7``, ``1_000``, `` 7`` or ``٣``,
    which Python's ``int`` takes."""

    _written = re.compile(r"-?[0-9]+")


class DecimalNumber(_Written, fields.Float):
    """A number in ASCII decimal notation (``12``, ``-0.5``, ``1e3``), finite: not ``+7``,
    ``1_000``, ``inf`` or ``٣``, which Python's ``float`` takes."""

    _written = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _field(default: Any, rule) -> fields.Field:
    """The marshmallow field of a setting: the type of its default, checked by its rule."""
    options = {"validate": rule} if rule else {}
    if isinstance(default, bool):
        return fields.Boolean(**options)
    if isinstance(default, int):
        return DecimalInteger(**options)
    if isinstance(default, float):
        return DecimalNumber(allow_nan=False, **options)
    return fields.String(allow_none=True, **options)


def setting_names(config: type[Config]) -> list[str]:
    return [name for name in dir(config) if name.isupper()]


@cache
def _schema(config: type[Config]) -> Schema:
    return Schema.from_dict({name: _field(getattr(config, name), RULES.get(name))
                             for name in setting_names(config)})()


def load_settings(config: type[Config], environ: Mapping[str, str],
                  overrides: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The settings of ``config`` with the ``VIRALSPOT_*`` variables of ``environ`` and then
    ``overrides`` (a dict, e.g. a test's; keys that are not settings, such as Flask's own, pass
    as given) over them, each read as its type and checked (``RULES``); and the variables of
    ``environ`` with the prefix that name no setting. A bad value raises ``RuntimeError`` naming
    every bad variable."""
    names = setting_names(config)
    values = {name: getattr(config, name) for name in names}
    chosen = [PREFIX + name for name in CHOSEN_BY_CONFIG if PREFIX + name in environ]
    if chosen:
        raise RuntimeError(f"invalid settings: {', '.join(chosen)}: set by VIRALSPOT_CONFIG "
                           f"({', '.join(sorted(CONFIGS))}), not on its own")
    unknown = []
    for variable, raw in environ.items():
        name = variable[len(PREFIX):]
        if not variable.startswith(PREFIX) or name == "CONFIG":
            continue
        if name not in values:
            unknown.append(variable)
        elif _is_text(config, name):
            values[name] = raw  # kept as given
        elif raw.strip():  # a number or flag, spaces around it dropped; empty (``VIRALSPOT_SESSION_TTL=``): the default
            values[name] = raw.strip()
    values.update(overrides or {})
    try:
        loaded = _schema(config).load({name: values[name] for name in names})
    except ValidationError as error:
        raise RuntimeError("invalid settings: " + " ".join(
            f"{PREFIX}{name}{_shown(config, name, values[name])}: {' '.join(map(str, messages))}"
            for name, messages in sorted(error.normalized_messages().items()))) from None
    for name, rule in RULES.items():
        if isinstance(rule, _Choice):
            loaded[name] = loaded[name].strip().lower()
        elif isinstance(loaded.get(name), str):  # checked text is used as it was checked, spaces around it dropped
            loaded[name] = loaded[name].strip()
    return {**values, **loaded}, sorted(unknown)


#: Checked free text an error message does not repeat: a URL may carry a password.
_NOT_REPEATED = {"DATABASE_URL"}


def _is_text(config: type[Config], name: str) -> bool:
    """Whether a setting is free text (kept as given, empty included), not a number, flag or choice."""
    return isinstance(_schema(config).fields[name], fields.String) and not isinstance(RULES.get(name), _Choice)


def _shown(config: type[Config], name: str, value: Any) -> str:
    """`` ('value')`` for an error message; nothing for free text (a secret, a URL with a password)
    but the checked text that has no secret in it (origins, rate limits)."""
    return "" if _is_text(config, name) and (name not in RULES or name in _NOT_REPEATED) else f" ({value!r})"
