"""Redis session store: every operation is one Lua script on the server, shared by all workers.

Key layout (``S`` is the session id; the ``{S}`` hash tag puts all of a session's keys in one
Redis Cluster slot, so no script crosses slots):

``vs:{S}:m``  HASH, the session: ``g`` generation, ``c``/``l`` created/last-seen (server ms),
              ``n`` seen-set size, ``o`` msgpack list of feed keys (least recently used first),
              and per feed ``f:<feed>`` (msgpack: cursor, exhausted, plan, last claim) and
              ``s:<feed>`` (the served sequence, little-endian uint32 keys, 4 bytes each).
``vs:{S}:k``  HASH, the seen set: up to 1,024 keys the one field ``a``, the keys as little-endian
              uint32 in the order they were served; past that roaring style: field ``key >> 16``,
              value the uint16 low halves in the order they were served (2 bytes each), or an
              8 KiB bitmap once a bucket holds over 4,095 keys (``_common.lua``).
``vs:{S}:r``  STRING, the freshness record a reset leaves: ``<generation>:<cleared>:<reset id>``;
              the next session keeps it, so a resent reset recognises itself.
``vs:active`` ZSET, session id -> last-seen server ms, for counting and listing active sessions
              (``{vs:active}:trim`` is its once-a-second trim guard; ``{vs:active}:gen`` and
              ``{vs:active}:floor`` hold the generations that order touches and resets, see
              ``touch.lua``).

The session keys carry a sliding TTL that the scripts restart. The index is updated by a
separate script on the index's keys, pipelined with the session script, so an operation costs
one round trip (a random page: one claim; a failed claim answers the feed, so a page that claims
again costs two and never a separate read), and at most once a second per session
and process (``ClientOptions.index_touch_interval``), so most pages run one script. A reset
takes three: the reset, then the session's removal from the index by generation, then the
counts. The Redis client is created lazily in the process that uses it (after a gunicorn fork,
the worker makes its own connection pool), and each thread keeps its own connection.

Redis Cluster (``redis+cluster://host:port,host:port``): the same scripts, each on one slot (a
session's keys share its hash tag). One global index would put every request on one master, so
the index is sharded: ``vs:active:{<i>}`` for i in 0..15 (with ``vs:active:{<i>}:trim``,
``:gen`` and ``:floor``), the shard of a session being ``crc32(session id) % 16``. A session script and the touch of its
shard go in one non-transactional pipeline that redis-py splits by node (written to every node,
then read: still one round trip); counting sums ZCOUNT over the 16 shards and listing merges
their ZREVRANGEBYSCORE results, one pipeline each.
"""
from __future__ import annotations

import os
import secrets
import struct
import sys
import threading
import time
import weakref
import zlib
from array import array
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import (ClusterDownError, ClusterError, InvalidResponse, NoScriptError,
                              OutOfMemoryError, ReadOnlyError, RedisClusterException, RedisError, ResponseError,
                              SlotNotCoveredError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

try:
    from hiredis import pack_command as _pack_command
except ImportError:  # redis-py packs commands itself
    _pack_command = None

from .base import (ClaimResult, FeedSummary, FeedView, ResetResult, SessionStoreBackend, SessionSummary,
                   StoreUnavailable)

SETTING = "VIRALSPOT_SESSION_STORE_URL"
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
INDEX_KEY = "vs:active"
TRIM_GUARD_KEY = "{vs:active}:trim"
#: Redis Cluster: the active-session index is this many ZSETs, ``vs:active:{<i>}`` (see index_keys).
CLUSTER_INDEX_SHARDS = 16
KEY_LIMIT = 2**32
#: Backoff between attempts of one operation (``RedisSessionStore._attempts``); stateless.
_BACKOFF = ExponentialWithJitterBackoff(cap=0.25, base=0.05)
#: Most sessions whose last index touch a process remembers (``_touch_if_due``).
TOUCHED_REMEMBERED = 100_000

_SESSION_SCRIPTS = ("read_feed", "claim", "seen_among", "reset", "summary")
_INDEX_SCRIPTS = ("touch", "untouch", "unindex", "count", "ids")
#: ResponseError prefixes that mean "the server cannot serve now", not "the request is wrong".
_UNAVAILABLE_PREFIXES = ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM")


class RedisUrlError(ValueError):
    """The store URL cannot be used; the message names the problem, never the password."""


def session_keys(session_id: str) -> tuple[str, str, str]:
    """(meta, seen, freshness) keys of a session, all under its hash tag."""
    return f"vs:{{{session_id}}}:m", f"vs:{{{session_id}}}:k", f"vs:{{{session_id}}}:r"


def index_keys(shards: int) -> tuple[tuple[str, str], ...]:
    """(index, trim guard) key pairs of the active-session index, each pair in one slot: the single
    ``vs:active`` on one server, or ``shards`` ZSETs ``vs:active:{<i>}`` on Redis Cluster."""
    if shards == 1:
        return ((INDEX_KEY, TRIM_GUARD_KEY),)
    return tuple((f"vs:active:{{{shard}}}", f"vs:active:{{{shard}}}:trim") for shard in range(shards))


def index_companions(index_key: str) -> tuple[str, str]:
    """(generations hash, reset floors sorted set) that go with an index shard, in its slot
    (``touch.lua`` says what they hold)."""
    if index_key == INDEX_KEY:
        return "{vs:active}:gen", "{vs:active}:floor"
    return f"{index_key}:gen", f"{index_key}:floor"


def index_shard(session_id: str, shards: int) -> int:
    """The index shard of a session: a hash that every process and host computes alike."""
    return zlib.crc32(session_id.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


def _script_source(name: str) -> str:
    folder = resources.files(__package__).joinpath("lua")
    text = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    prelude = "_common.lua" if name in _SESSION_SCRIPTS else "_index_common.lua"
    return folder.joinpath(prelude).read_text(encoding="utf-8") + "\n" + text


#: RedisClusterException messages (not a RedisError) that mean no node or slot can serve now.
_CLUSTER_UNREACHABLE = ("Redis Cluster cannot be connected", "All slots are not covered")


def _cluster_transient(error: BaseException) -> bool:
    """A Redis Cluster error that a later attempt may not meet: the cluster is down or failing
    over, a slot is moving (TRYAGAIN; MOVED/ASK redirections exhausted: ``ClusterError("TTL
    exhausted.")``), a slot is not covered, or no startup node answered. The command did not run.
    (A bare MOVED/ASK never reaches the store from the cluster client, which follows them; from a
    plain client it means a ``redis://`` URL names a cluster node: a configuration error, a 500.)"""
    if isinstance(error, (ClusterError, TryAgainError, SlotNotCoveredError)):
        return True
    return isinstance(error, RedisClusterException) and str(error).startswith(_CLUSTER_UNREACHABLE)


def is_unavailable(error: BaseException) -> bool:
    """Whether a redis-py error means the server cannot be reached or cannot serve now (503)."""
    if isinstance(error, (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ClusterDownError,
                          TryAgainError, OutOfMemoryError, InvalidResponse)) or _cluster_transient(error):
        return True
    return isinstance(error, ResponseError) and str(error).startswith(_UNAVAILABLE_PREFIXES)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


@dataclass(frozen=True)
class ClientOptions:
    connect_timeout: float = 0.5
    socket_timeout: float = 0.5
    retries: int = 2
    max_connections: int = 32
    health_check_interval: int = 30
    #: Seconds within which a process does not touch a session's entry in the active-session index
    #: again (``RedisSessionStore._touch_if_due``).
    index_touch_interval: float = 1.0


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


def _pack_keys(keys: Sequence[int]) -> bytes:
    try:
        return struct.pack(f"<{len(keys)}I", *keys)
    except struct.error:
        raise ValueError(f"content keys must be integers in [0, {KEY_LIMIT})") from None


if sys.byteorder == "little" and array("I").itemsize == 4:
    def _unpack_keys(data: bytes) -> list[int]:
        return array("I", data).tolist()
else:  # pragma: no cover - big-endian or unusual platforms
    def _unpack_keys(data: bytes) -> list[int]:
        return list(struct.unpack(f"<{len(data) // 4}I", data))


def _feed_view(reply) -> FeedView:
    """A feed as the scripts answer it (``feed_read`` in _common.lua)."""
    generation, has_plan, plan, cursor, served, exhausted, keys = reply
    return FeedView(int(generation), _text(plan) if has_plan else None, int(cursor), int(served),
                    bool(exhausted), _unpack_keys(keys))


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _script_policies():
    """A redis-py policy resolver that routes EVALSHA in a cluster pipeline by its KEYS.

    redis-py's ClusterPipeline asks a server ``COMMAND GETKEYS`` for each command whose keys it
    cannot find itself (EVALSHA: "movable keys"), a round trip per script; with this resolver it
    hashes the declared KEYS as RedisCluster.determine_slot does outside pipelines.
    """
    from redis._parsers.commands import CommandPolicies, RequestPolicy, ResponsePolicy
    from redis.commands.policies import BasePolicyResolver, StaticPolicyResolver

    keyed = CommandPolicies(request_policy=RequestPolicy.DEFAULT_KEYED, response_policy=ResponsePolicy.DEFAULT_KEYED)

    class ScriptPolicies(BasePolicyResolver):
        def __init__(self, fallback=None) -> None:
            super().__init__({"core": {"evalsha": keyed}}, fallback if fallback is not None else StaticPolicyResolver())

        def with_fallback(self, fallback):
            return ScriptPolicies(fallback)

    return ScriptPolicies()


class _Connection:
    """One process's client and registered scripts, and each thread's own connection for the
    direct round trips (``link``)."""

    __slots__ = ("pid", "client", "scripts", "policies", "max_links", "_thread", "_links", "_links_lock")

    def __init__(self, client, cluster: bool = False, max_links: int = 32) -> None:
        self.pid = os.getpid()
        self.client = client
        self.scripts = {name: client.register_script(_script_source(name))
                        for name in _SESSION_SCRIPTS + _INDEX_SCRIPTS}
        self.policies = _script_policies() if cluster else None
        self.max_links = max_links
        self._thread = threading.local()
        self._links = weakref.WeakSet()
        self._links_lock = threading.Lock()

    def link(self):
        """This thread's connection to a standalone, unix-socket or Sentinel server, made on first
        use with the pool's settings (timeouts, TLS, Sentinel's master look-up); None when the
        process already has ``max_links`` of them (the thread then borrows from the pool).

        Owned by one thread, it needs none of the pool's locking and none of its checks for unread
        data before each use (a poll system call per round trip): a round trip that fails midway
        disconnects it, and it connects again on its next round trip. A thread that ends drops its
        connection; the garbage collector closes its socket (redis-py's connection objects hold
        reference cycles), and until then it still counts towards ``max_links``.
        """
        link = getattr(self._thread, "link", None)
        if link is None:
            pool = self.client.connection_pool
            with self._links_lock:
                if len(self._links) >= self.max_links:
                    return None
                link = self._thread.link = pool.connection_class(**pool.connection_kwargs)
                self._links.add(link)
        if not link.is_connected:
            # Through ``connect``, which Sentinel's connection overrides to ask for the master (a
            # command on a closed connection would connect to its default address instead).
            link.connect()
        return link

    def close(self) -> None:
        """Disconnect the threads' connections and the pool's."""
        with self._links_lock:
            links = list(self._links)
        for link in links:
            link.disconnect()
        self.client.close()
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    def pipeline(self):
        """A non-transactional pipeline (on Redis Cluster: split by node, one round trip)."""
        pipe = self.client.pipeline(transaction=False)
        if self.policies is not None:
            # redis-py 8.1 blocks ``ClusterPipeline.evalsha`` (redis-py issue #2914) although it
            # routes EVALSHA by its keys; ``evalsha`` below queues the command directly.
            pipe._policy_resolver = self.policies
        return pipe

    def evalsha(self, pipe, name: str, keys: Sequence[str], *args) -> None:
        pipe.execute_command("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args)


def _direct_round_trip(connection: _Connection, calls) -> list:
    """The scripts ``calls`` as EVALSHA commands written together on the thread's connection, then
    their replies read in order: one round trip, without redis-py's pipeline, script objects and
    (but for threads beyond ``max_links``) pool: together a third of a random page's client time
    on the store. A standalone, unix-socket or Sentinel server only; a cluster client routes by
    slot through its own pipeline.

    An error reply (NOSCRIPT included) is read in its turn so the connection stays in step; a
    connection that failed midway is disconnected.
    """
    scripts = connection.scripts
    link = connection.link()
    pool = None
    if link is None:
        pool = connection.client.connection_pool
        link = pool.get_connection()
    try:
        commands = [("EVALSHA", scripts[name].sha, len(keys), *keys, *args) for name, keys, args in calls]
        if _pack_command is not None:  # hiredis packs a command in 2.0 µs, redis-py's packer in 5.6
            link.send_packed_command([b"".join(map(_pack_command, commands))])
        else:
            link.send_packed_command(link.pack_commands(commands))
        results = []
        for _call in calls:
            try:
                results.append(link.read_response())
            except ResponseError as error:
                results.append(error)
    except BaseException:
        link.disconnect()
        raise
    finally:
        if pool is not None:
            pool.release(link)
    return _settled(connection, calls, results)


def _settled(connection: _Connection, calls, results: list) -> list:
    """``results`` of ``calls`` sent together, with each script that got NOSCRIPT (it did not run)
    loaded and run again on its own; any other error reply raised."""
    for index, result in enumerate(results):
        if isinstance(result, NoScriptError):
            name, keys, args = calls[index]
            results[index] = connection.scripts[name](keys=keys, args=args)
        elif isinstance(result, Exception):
            raise result
    return results


class RedisSessionStore(SessionStoreBackend):
    """Session store on Redis (standalone, TLS, unix socket, Sentinel or Cluster)."""

    storage_type = "redis"
    #: The claim script skips seen keys itself; a separate check would cost a round trip.
    prefilter_seen = False
    shared = True
    #: A read is a round trip; a presumed view that is wrong costs no more (the failed claim answers it).
    presume_views = True

    def __init__(self, url: str, ttl: float = 86400, max_feeds: int = 64,
                 options: ClientOptions | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or max_feeds <= 0:
            raise ValueError("ttl and max_feeds must be positive")
        self.url = url
        self.parsed = parse_store_url(url)
        self.ttl = ttl
        self.ttl_ms = max(1, int(round(ttl * 1000)))
        self.max_feeds = max_feeds
        self.options = options or ClientOptions()
        self.cluster = self.parsed.scheme == "redis+cluster"
        #: (index, trim guard) pairs: one on a single server, CLUSTER_INDEX_SHARDS on a cluster
        self.index_keys = index_keys(CLUSTER_INDEX_SHARDS if self.cluster else 1)
        self._connection: _Connection | None = None
        #: Session id -> when this process last touched its index entry (monotonic seconds).
        self._touched: dict[str, float] = {}
        self._clock = clock

    def __repr__(self) -> str:
        return f"RedisSessionStore({_redact(self.url)!r}, ttl={self.ttl})"

    # -- connection ---------------------------------------------------------------

    def _make_client(self):
        opts = self.options
        # No retries inside redis-py: it nests them (a connect retried inside a retried command, so
        # 2 retries became up to 9 attempts, 4.8 s against a server that never answers). The store
        # retries whole operations itself, a bounded number of times (``_attempts``).
        retry = Retry(NoBackoff(), 0)
        common = dict(socket_timeout=opts.socket_timeout, socket_connect_timeout=opts.connect_timeout,
                      retry=retry, health_check_interval=opts.health_check_interval)
        parsed = self.parsed
        if parsed.scheme == "redis+cluster":
            from redis.cluster import ClusterNode, RedisCluster

            # The cluster client's own retries (topology refresh on a connection error, CLUSTERDOWN)
            # are off too; MOVED/ASK/TRYAGAIN are followed inside one attempt. Slots not covered
            # at start-up fail only the requests that need them (SlotNotCoveredError, a 503).
            kwargs = {"socket_timeout": opts.socket_timeout, "socket_connect_timeout": opts.connect_timeout,
                      "max_connections": opts.max_connections, **parsed.pool_kwargs}
            return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
                                retry=Retry(NoBackoff(), 0), require_full_coverage=False, **kwargs)
        if parsed.scheme == "redis+sentinel":
            from redis.sentinel import Sentinel

            kwargs = dict(parsed.pool_kwargs)
            sentinel_kwargs = dict(common)
            if "sentinel_password" in kwargs:
                sentinel_kwargs["password"] = kwargs.pop("sentinel_password")
            sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs, **common)
            return sentinel.master_for(parsed.service_name, max_connections=opts.max_connections,
                                       **common, **kwargs)
        kwargs = {**common, "max_connections": opts.max_connections, "timeout": opts.connect_timeout,
                  **parsed.pool_kwargs}
        pool = redis.BlockingConnectionPool(**kwargs)
        return redis.Redis(connection_pool=pool)

    def _conn(self) -> _Connection:
        """This process's connection; made on first use, and again in a forked child."""
        connection = self._connection
        if connection is None or connection.pid != os.getpid():
            # A pool inherited across fork is dropped unused (redis-py never shuts down a socket
            # from a process other than the one that opened it).
            connection = self._connection = _Connection(self._make_client(), self.cluster,
                                                        max_links=self.options.max_connections)
        return connection

    def _transient(self, error: BaseException) -> bool:
        """Worth another attempt: a connection failure or timeout; on a cluster also a failover,
        a moving slot, or no node reachable yet (the command did not run)."""
        return isinstance(error, (RedisConnectionError, RedisTimeoutError)) or (
            self.cluster and _cluster_transient(error))

    def _attempts(self, operation):
        """``operation()``, tried again up to ``options.retries`` times, with jittered exponential
        backoff, when the connection fails or times out (on a cluster also on CLUSTERDOWN, TRYAGAIN,
        exhausted redirections, an uncovered slot or no reachable node); then ``StoreUnavailable``.

        A resent operation is safe: claims and resets carry an id that the scripts recognise, and
        the other scripts are reads or idempotent writes. Worst case against a server that never
        answers: (retries + 1) x (connect or socket timeout) + backoff, about 1.7 s by default.
        """
        for failures in range(self.options.retries + 1):
            try:
                return operation(self._conn())
            except (RedisError, RedisClusterException) as error:
                if failures >= self.options.retries or not self._transient(error):
                    if is_unavailable(error):
                        raise StoreUnavailable(f"redis: {type(error).__name__}: {error}") from error
                    raise
            time.sleep(_BACKOFF.compute(failures + 1))

    def _run(self, calls: list[tuple[str, list[str], list]]) -> list:
        """Run scripts ``(name, keys, args)`` in one round trip (a non-transactional pipeline).

        EVALSHA is sent directly; a script the server lost (NOSCRIPT after a restart, failover or
        SCRIPT FLUSH) is loaded and run again on its own. A script that got NOSCRIPT did not run,
        so running it again is safe.
        """
        return self._attempts(lambda connection: self._pipeline(connection, calls))

    @staticmethod
    def _pipeline(connection: _Connection, calls) -> list:
        if connection.policies is None:
            return _direct_round_trip(connection, calls)
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [connection.scripts[name](keys=keys, args=args)]
        pipe = connection.pipeline()
        for name, keys, args in calls:
            connection.evalsha(pipe, name, keys, *args)
        return _settled(connection, calls, pipe.execute(raise_on_error=False))

    def _index(self, session_id: str) -> tuple[str, str]:
        """(index, trim guard) keys of the index shard that holds the session."""
        return self.index_keys[index_shard(session_id, len(self.index_keys))]

    def _touch(self, session_id: str, only_if_indexed: bool, generation: int = -1) -> tuple[str, list[str], list]:
        """The index touch of a session: of its ``generation`` (a claim's), or -1 (unknown: a read's,
        which only refreshes an entry, ``only_if_indexed``)."""
        index_key, guard = self._index(session_id)
        return "touch", [index_key, guard, *index_companions(index_key)], [
            session_id, self.ttl_ms, "1" if only_if_indexed else "0", int(generation)]

    def _touch_if_due(self, session_id: str, only_if_indexed: bool,
                      generation: int = -1) -> list[tuple[str, list[str], list]]:
        """The index touch to pipeline with a session script, unless this process touched the
        session within ``index_touch_interval`` (then none: a page is one script, not two).

        The index's scores are last-seen times for counting and listing; one second of lag is
        nothing against the TTL they are trimmed by. A session that a claim creates is always
        indexed (``claim_unseen`` touches it when it skipped the touch), and a reset forgets the
        time here, so a reset session's next claim is indexed at once.
        """
        last = self._touched.get(session_id)
        if last is not None and self._clock() - last < self.options.index_touch_interval:
            return []
        return [self._touch(session_id, only_if_indexed, generation)]

    def _touched_now(self, session_id: str) -> None:
        if len(self._touched) >= TOUCHED_REMEMBERED:
            self._touched.clear()  # forgetting costs one touch per session, never a missing entry
        self._touched[session_id] = self._clock()

    # -- SessionStoreBackend ---------------------------------------------------------

    def read_feed(self, session_id: str, feed_key: str, start: int, stop: int) -> FeedView:
        touch = self._touch_if_due(session_id, only_if_indexed=True)
        reply, *_score = self._run([
            ("read_feed", list(session_keys(session_id)), [feed_key, int(start), max(int(start), int(stop)),
                                                          self.ttl_ms]),
            *touch,
        ])
        return _feed_view(reply)

    def seen_among(self, session_id: str, keys: Sequence[int]) -> list[int]:
        if not len(keys):
            return []
        (reply,) = self._run([("seen_among", [session_keys(session_id)[1]], [_pack_keys(keys)])])
        return _unpack_keys(reply)

    def claim_unseen(self, session_id, feed_key, *, generation, expect_cursor, expect_plan,
                     plan, domain, candidates, scanned_to, want, page, expect_served=None) -> ClaimResult:
        try:
            packed = struct.pack("<" + "dI" * len(candidates),
                                 *[number for position, key in candidates for number in (position, key)])
        except struct.error:
            raise ValueError(f"candidate keys must be integers in [0, {KEY_LIMIT})") from None
        claim_id = secrets.token_hex(8)
        args = [feed_key, int(generation), int(expect_cursor), "0" if expect_plan is None else "1",
                expect_plan or "", plan, int(domain), packed, int(scanned_to), max(0, int(want)),
                int(page[0]), max(int(page[0]), int(page[1])), self.ttl_ms, self.max_feeds, claim_id,
                "" if expect_served is None else int(expect_served)]
        touch = self._touch_if_due(session_id, only_if_indexed=False, generation=generation)
        reply, *score = self._run([("claim", list(session_keys(session_id)), args), *touch])
        if not reply[0]:
            if not reply[1] and touch and score[0]:
                # No active session: the touch indexed an id that is not a session; undo it unless
                # a concurrent request has touched it since.
                index_key = self._index(session_id)[0]
                self._run([("untouch", [index_key, index_companions(index_key)[1]], [session_id, score[0]])])
            return ClaimResult(ok=False, view=_feed_view(reply[2:]))
        _ok, served, exhausted, has_more, claimed, keys, cursor, created = reply
        if touch:
            self._touched_now(session_id)
        elif int(created):  # a session this claim made (reset elsewhere meanwhile): index it now
            self._run([self._touch(session_id, only_if_indexed=False, generation=generation)])
            self._touched_now(session_id)
        return ClaimResult(ok=True, claimed=_unpack_keys(claimed), served_count=int(served),
                           exhausted=bool(exhausted), has_more=bool(has_more), keys=_unpack_keys(keys),
                           cursor=int(cursor))

    def reset(self, session_id: str) -> ResetResult:
        self._touched.pop(session_id, None)  # its next claim makes a new session: index it then
        reset_id = secrets.token_hex(8)
        (found, cleared, generation), = self._run([("reset", list(session_keys(session_id)),
                                                     [self.ttl_ms, reset_id])])
        # Then out of the index, by the generation the reset started (a claim of the next session
        # may have indexed it already: that entry stays); then every shard counted. Two round trips:
        # in one, an unindex that got NOSCRIPT would run again after the counts.
        index_key = self._index(session_id)[0]
        self._run([("unindex", [index_key, *index_companions(index_key)], [session_id, int(generation)])])
        totals = self._run([("count", [shard_key], [self.ttl_ms]) for shard_key, _guard in self.index_keys])
        return ResetResult(bool(found), int(cleared), int(generation), sum(int(total) for total in totals))

    def session_count(self) -> int:
        counts = self._run([("count", [shard_key], [self.ttl_ms]) for shard_key, _guard in self.index_keys])
        return sum(int(count) for count in counts)

    def summary(self, session_id: str) -> SessionSummary | None:
        (reply,) = self._run([("summary", [session_keys(session_id)[0]], [])])
        if reply is None:
            return None
        generation, served_items, created_ms, last_ms, pttl = (int(value) for value in reply[:5])
        feeds = {}
        rest = reply[5:]
        for index in range(0, len(rest), 5):
            feed, cursor, exhausted, plan, served = rest[index:index + 5]
            feeds[_text(feed)] = FeedSummary(int(served), bool(exhausted), int(cursor), _text(plan))
        return SessionSummary(session_id, generation, served_items, created_ms / 1000, last_ms / 1000,
                              max(0, pttl) / 1000, feeds)

    def session_ids(self, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        if len(self.index_keys) == 1:
            (ids,) = self._run([("ids", [self.index_keys[0][0]], [self.ttl_ms, int(limit)])])
            return [_text(session_id) for session_id in ids]
        # Each shard's most recent ``limit``, merged in the order ZREVRANGEBYSCORE gives ties.
        replies = self._run([("ids", [shard_key], [self.ttl_ms, int(limit), "1"])
                             for shard_key, _guard in self.index_keys])
        scored = [(float(reply[index + 1]), reply[index]) for reply in replies for index in range(0, len(reply), 2)]
        scored.sort(reverse=True)
        return [_text(session_id) for _score, session_id in scored[:limit]]

    def stats(self) -> dict:
        """Active sessions plus the server's memory figures (``flask sessions stats``); on a cluster,
        memory summed over the masters."""
        def figures(connection: _Connection) -> dict:
            if self.cluster:
                return cluster_figures(connection)
            pipe = connection.client.pipeline(transaction=False)
            pipe.info("server")
            pipe.info("memory")
            pipe.zcard(INDEX_KEY)
            server, memory, indexed = pipe.execute()
            return {"redis_version": server.get("redis_version"), "used_memory": memory.get("used_memory"),
                    "maxmemory": memory.get("maxmemory"), "maxmemory_policy": memory.get("maxmemory_policy"),
                    "indexed_sessions": indexed}

        def cluster_figures(connection: _Connection) -> dict:
            client = connection.client
            servers, memories = [], []
            for node in client.get_primaries():
                pipe = client.get_redis_connection(node).pipeline(transaction=False)
                pipe.info("server")
                pipe.info("memory")
                server, memory = pipe.execute()
                servers.append(server)
                memories.append(memory)
            pipe = connection.pipeline()
            for shard_key, _guard in self.index_keys:
                pipe.zcard(shard_key)
            indexed = sum(pipe.execute())
            return {"redis_version": min((server.get("redis_version") for server in servers), default=None),
                    "used_memory": sum(memory.get("used_memory", 0) for memory in memories),
                    "maxmemory": sum(memory.get("maxmemory", 0) for memory in memories),
                    "maxmemory_policy": ",".join(sorted({str(memory.get("maxmemory_policy")) for memory in memories})),
                    "indexed_sessions": indexed, "cluster_masters": len(servers)}

        return {**super().stats(), **self._attempts(figures)}

    def ping(self) -> bool:
        """True when Redis answers (on a cluster: every master); False when it cannot be reached."""
        def ping(connection: _Connection) -> bool:
            if self.cluster:
                return connection.client.ping(target_nodes=connection.client.PRIMARIES)
            return connection.client.ping()

        try:
            return bool(self._attempts(ping))
        except StoreUnavailable:
            return False

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.pid == os.getpid():
            connection.close()

    # -- inspection helpers (tests, benchmarks) ----------------------------------

    @property
    def client(self):
        """This process's redis-py client."""
        return self._conn().client
