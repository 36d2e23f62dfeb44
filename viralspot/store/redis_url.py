"""The Redis store's URL: the forms it accepts, what each names, and how it is shown in logs.

``redis://``, ``rediss://`` and ``unix://`` name one server (their query parameters are redis-py
connection options); ``redis+sentinel://`` a service that Sentinel monitors; ``redis+cluster://``
startup nodes of a Redis Cluster. Nothing here connects; redis-py is imported only to parse.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


class RedisUrlError(ValueError):
    """The store URL cannot be used; the message names the problem, never the password."""


@dataclass
class ParsedUrl:
    """What a store URL names: a server (pool keyword arguments) or a Sentinel-monitored service."""

    scheme: str
    pool_kwargs: dict[str, Any] = field(default_factory=dict)
    sentinels: list[tuple[str, int]] = field(default_factory=list)
    service_name: str | None = None
    #: redis+cluster: the startup nodes
    nodes: list[tuple[str, int]] = field(default_factory=list)


def parse_store_url(url: str) -> ParsedUrl:
    """Check and parse ``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://`` and
    ``redis+cluster://`` URLs.

    ``redis+sentinel://[:password@]host:port[,host:port...]/service_name[/db]``; the password is
    the master's; ``?sentinel_password=`` authenticates to the sentinels.
    ``redis+cluster://[[user]:password@]host:port[,host:port...][/0]``: startup nodes of a Redis
    Cluster (any reachable one is enough; the client discovers the others), database 0 only.
    Query parameters of the other forms are redis-py connection options (``?socket_timeout=1``)
    and override the settings.
    """
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise RedisUrlError(f"unknown scheme {scheme!r}")
        if scheme == "redis+sentinel":
            return _parse_sentinel(parts)
        if scheme == "redis+cluster":
            return _parse_cluster(parts)
        if scheme == "unix":
            if not parts.path or parts.path == "/":
                raise RedisUrlError("unix:// needs a socket path, as in unix:///run/redis.sock?db=0")
        else:
            if not parts.hostname:
                raise RedisUrlError(f"{scheme}:// needs a host, as in {scheme}://127.0.0.1:6379/0")
            parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
            path = parts.path.strip("/")
            if path and not path.isdigit():
                raise RedisUrlError(f"the database must be a number, not {path!r}")
        query = parse_qs(parts.query)
        if "db" in query and not query["db"][0].isdigit():
            raise RedisUrlError(f"the database must be a number, not {query['db'][0]!r}")
        from redis.connection import parse_url

        return ParsedUrl(scheme, parse_url(url))
    except RedisUrlError:
        raise
    except ValueError as error:
        raise RedisUrlError(str(error)) from None


def _addresses(netloc: str, what: str) -> list[tuple[str, int]]:
    addresses = []
    for address in netloc.split(","):
        host, _, port = address.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisUrlError(f"{what} address {address!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def _parse_sentinel(parts) -> ParsedUrl:
    netloc = parts.netloc
    password = None
    if "@" in netloc:
        credentials, netloc = netloc.rsplit("@", 1)
        password = unquote(credentials.split(":", 1)[1]) if ":" in credentials else None
    sentinels = _addresses(netloc, "sentinel")
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise RedisUrlError("redis+sentinel:// needs /service_name[/db], as in "
                            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/0")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise RedisUrlError(f"the database must be a number, not {path[1]!r}")
        db = int(path[1])
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    kwargs: dict[str, Any] = {"db": db, "password": password}
    if "sentinel_password" in query:
        kwargs["sentinel_password"] = query.pop("sentinel_password")
    if query:
        raise RedisUrlError(f"unsupported redis+sentinel:// options: {', '.join(sorted(query))}")
    return ParsedUrl("redis+sentinel", kwargs, sentinels, unquote(path[0]))


def _parse_cluster(parts) -> ParsedUrl:
    from redis.cluster import KWARGS_DISABLED_KEYS, REDIS_ALLOWED_KEYS
    from redis.connection import parse_url

    credentials, _, netloc = parts.netloc.rpartition("@")
    if not netloc:
        raise RedisUrlError("redis+cluster:// needs host:port[,host:port...], as in "
                            "redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
    nodes = _addresses(netloc, "cluster node")
    path = parts.path.strip("/")
    query = parse_qs(parts.query)
    for db in [path] + query.get("db", []):
        if db not in ("", "0"):
            raise RedisUrlError(f"Redis Cluster has only database 0, not {db!r}")
    # Credentials and options parsed as redis-py parses them in a redis:// URL.
    kwargs = parse_url(f"redis://{credentials + '@' if credentials else ''}cluster/0"
                       f"{'?' + parts.query if parts.query else ''}")
    for name in ("host", "port", "db"):
        kwargs.pop(name, None)
    unsupported = sorted(name for name in kwargs
                         if name not in REDIS_ALLOWED_KEYS or name in KWARGS_DISABLED_KEYS)
    if unsupported:
        raise RedisUrlError(f"unsupported redis+cluster:// options: {', '.join(unsupported)}")
    return ParsedUrl("redis+cluster", kwargs, nodes=nodes)


def redact(url: str) -> str:
    """The URL with its password, if any, shown as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()
