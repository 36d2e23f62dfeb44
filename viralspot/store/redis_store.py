"""Redis session store: a session is one hash, every operation one Lua script on the server.

Key layout (layout version 2 in every name; ``S`` is the session id, whose ``{S}`` hash tag keeps
a session in one Redis Cluster slot):

``vs2:{S}``  HASH, the whole session, so TTL expiry and eviction keep or drop it whole:
             ``s`` seed (8 bytes), ``b`` bounds (uint32 LE), ``k`` feed ids (9 bytes each; feed
             number i is the i-th), ``n`` items served, ``c`` created (server ms); per feed
             ``f<i>`` its cursor and served count (uint32 LE) and block index (uint16 block,
             uint32 served up to its end), and per feed and 64 Ki-position block ``<i>.<block>``
             the feed's served positions there: ``a`` and 2-byte lows, or ``b`` and a bitmap of
             the lows, whichever is smaller (at most 8 KiB); ``w.<block>`` the canonical positions
             weighted feeds served (``store/base.py``): ``u`` and 2-byte lows appended page by
             page, a bitmap past 8 KiB. ``r`` is the record of the last reset
             (``<id>:<cleared>:<found>``), alone in the hash for the TTL after a reset and kept by
             the next session, so a reset resent after a lost reply answers what it did.
``vs2:active`` ZSET, session id -> last-seen server ms, to count and list active sessions
             (on a cluster 16 shards ``vs2:active:{i}``). Each touch (``_touch.lua``) forgets at
             most 100 entries idle past the TTL.
``vs2:resets:<db>`` the channel a reset announces itself on (the session's seed, then its id), heard
             by every process on the database (``reset_notices.py``).

A session not whole (``_session.lua``; damaged, or of another layout) is gone, never served from;
a page that finds what it reads damaged removes its ``s`` and answers ABSENT (docs/architecture.md).

The session's hash carries the sliding TTL, restarted by every page. A page is one script, one round
trip, which also touches the index when the page created the session or the process has not touched
it for a second (on a cluster ``touch.lua``, a second round trip: the index is in another slot). On
a connection error, a timeout, ``READONLY`` or ``MASTERDOWN`` (a failover) redis-py's pool drops its
idle connections and the operation is tried again on fresh ones: a failover behind a ``redis://``
address that moves recovers by itself.
"""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import struct
import threading
import time
import weakref
import zlib
from dataclasses import dataclass
from importlib import resources
from types import MethodType
from typing import Callable, Sequence

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ReadOnlyError, RedisClusterException, RedisError
from redis.retry import Retry

from cachetools import TTLCache

from .base import (FeedSummary, FeedView, PageResult, PageStatus, ResetResult, SessionStoreBackend,
                   SessionSummary, StoreUnavailable)
from .master_switches import MasterSwitches
from .redis_errors import is_unavailable, worth_retrying
from .redis_url import parse_store_url, redact
from .reset_notices import ResetNotices

_log = logging.getLogger(__name__)
#: The layout version in every key name: a next layout's keys can live beside these.
LAYOUT = "vs2"
INDEX_KEY = f"{LAYOUT}:active"
#: The channel ``reset.lua`` announces each reset on (``reset_notices.py``), by database: Pub/Sub
#: is server-wide, and a deployment on another database of the server must not hear these.
RESETS_CHANNEL = LAYOUT + ":resets:{db}"
#: Redis Cluster: the active-session index is this many ZSETs, ``vs2:active:{<i>}`` (see index_keys).
CLUSTER_INDEX_SHARDS = 16
#: Backoff between attempts of one operation (``RedisSessionStore._attempts``); stateless.
_BACKOFF = ExponentialWithJitterBackoff(cap=0.25, base=0.05)
#: Most sessions whose last index touch a process remembers (``_touch_if_due``).
TOUCHED_REMEMBERED = 100_000
#: How long the record of a reset stays when no session follows it (ms).
RESET_RECORD_MS = 60_000

_SCRIPTS = ("page", "reset", "unindex", "summary", "touch", "count", "ids")


def session_key(session_id: str) -> str:
    """The hash holding a session."""
    return f"{LAYOUT}:{{{session_id}}}"


def index_keys(shards: int) -> tuple[str, ...]:
    """The active-session index: the one ``vs2:active`` on one server, or ``shards`` ZSETs
    ``vs2:active:{<i>}`` on Redis Cluster, each in its own slot."""
    if shards == 1:
        return (INDEX_KEY,)
    return tuple(f"{INDEX_KEY}:{{{shard}}}" for shard in range(shards))


def index_shard(session_id: str, shards: int) -> int:
    """The index shard of a session: a hash that every process and host computes alike."""
    return zlib.crc32(session_id.encode("utf-8", "surrogatepass")) % shards if shards > 1 else 0


#: The shared functions a script begins with: the index touch, a hash replaced whole, a session read.
_PRELUDES = {"page": ("_touch", "_replace", "_session"), "touch": ("_touch",), "reset": ("_replace", "_session"),
             "summary": ("_session",)}


def _script_source(name: str) -> str:
    """A script's text. Each begins with a Redis 7 shebang that declares what it does: ``#!lua``
    (it writes, so a server past ``maxmemory`` that cannot evict refuses it whole, before it runs:
    a script without one is checked only at its first write, and page.lua's first write may be a
    ``DEL`` or ``PEXPIRE``, which Redis lets through, and with it every write after), ``flags=no-writes``
    (it reads, also on a full server), ``flags=allow-oom`` (it only removes)."""
    folder = resources.files(__package__).joinpath("lua")
    shebang, _, body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8").partition("\n")
    preludes = [folder.joinpath(f"{prelude}.lua").read_text(encoding="utf-8") for prelude in _PRELUDES.get(name, ())]
    return "\n".join((shebang, *preludes, body))


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


class _Connection:
    """One process's client, its registered scripts, and the resets it hears of. ``make_client`` is
    the store's bound method: ``ResetNotices`` keeps it as a ``WeakMethod``."""

    __slots__ = ("pid", "client", "scripts", "cluster", "resets", "switches", "__weakref__")

    def __init__(self, make_client: MethodType, cluster: bool, ttl: float, channel: str,
                 on_reset_heard: Callable[[], object] | None,
                 watch_switches: Callable[["_Connection"], MasterSwitches | None]) -> None:
        self.pid = os.getpid()
        self.client = client = make_client()
        self.cluster = cluster
        self.scripts = {name: client.register_script(_script_source(name)) for name in _SCRIPTS}
        self.resets = ResetNotices(make_client, channel, ttl, on_heard=on_reset_heard)
        self.switches = watch_switches(self)

    def run(self, calls) -> list:
        """The scripts ``calls`` ((name, keys, args)), one after the other (a script the server lost,
        NOSCRIPT after a restart, failover or SCRIPT FLUSH, is loaded and run again by redis-py)."""
        return [self.scripts[name](keys=keys, args=args) for name, keys, args in calls]

    def drop_connections(self) -> None:
        """Disconnect every idle pooled connection (on a cluster, every node's), so the next command
        connects afresh: to wherever the address now leads after a failover. Connections other
        threads hold are theirs to drop (disconnecting one under a thread breaks redis-py); each
        comes back to the pool after its own failure, and that thread's retry drops it then."""
        client = self.client
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect(inuse_connections=False)
        else:  # RedisCluster: a pool per node
            for node in client.get_nodes():
                if node.redis_connection is not None:
                    node.redis_connection.connection_pool.disconnect(inuse_connections=False)

    def _stop_listeners(self) -> None:
        self.resets.stop()
        if self.switches is not None:
            self.switches.stop()

    def retire(self) -> None:
        """Stop using this client (the sentinels named a new master): its listeners stop and its idle
        connections close; commands in flight finish on theirs, which go with the client."""
        self._stop_listeners()
        self.drop_connections()

    def close(self) -> None:
        self._stop_listeners()
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()
        self.client.close()


def _pack_positions(positions: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(positions)}I", *positions)


def _unpack_positions(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def _page_result(reply) -> PageResult:
    status, seed, bounds, cursor, served, has_more, page, _created = reply
    view = FeedView(bytes(seed), tuple(_unpack_positions(bounds)), int(cursor), int(served))
    return PageResult(PageStatus(int(status)), view, _unpack_positions(page), bool(has_more))


class RedisSessionStore(SessionStoreBackend):
    """Session store on Redis (standalone, TLS, unix socket, Sentinel or Cluster)."""

    storage_type = "redis"
    shared = True

    def __init__(self, url: str, ttl: float = 86400, max_feeds: int = 64, max_items: int = 1_000_000,
                 options: ClientOptions | None = None) -> None:
        super().__init__(ttl, max_feeds, max_items)
        self.url = url
        self.parsed = parse_store_url(url)
        self.ttl_ms = max(1, int(round(ttl * 1000)))
        self.options = options or ClientOptions()
        self.cluster = self.parsed.scheme == "redis+cluster"
        self.index_keys = index_keys(CLUSTER_INDEX_SHARDS if self.cluster else 1)
        self.resets_channel = RESETS_CHANNEL.format(db=self.parsed.pool_kwargs.get("db", 0))
        self._connection: _Connection | None = None
        self._connecting = threading.Lock()
        #: Sessions this process touched in the index within ``index_touch_interval``.
        self._touched: TTLCache = TTLCache(TOUCHED_REMEMBERED, self.options.index_touch_interval)
        self._touched_lock = threading.Lock()  # cachetools caches are not thread-safe

    def __repr__(self) -> str:
        return f"RedisSessionStore({redact(self.url)!r}, ttl={self.ttl})"

    # -- connection ---------------------------------------------------------------

    def _make_client(self):
        opts = self.options
        # No retries inside redis-py: it nests them (a connect retried inside a retried command).
        # The store retries whole operations itself, a bounded number of times (``_attempts``).
        common = dict(socket_timeout=opts.socket_timeout, socket_connect_timeout=opts.connect_timeout,
                      retry=Retry(NoBackoff(), 0), health_check_interval=opts.health_check_interval)
        parsed = self.parsed
        if parsed.scheme == "redis+cluster":
            from redis.cluster import ClusterNode

            from .cluster_client import RedirectedRedisCluster

            # MOVED/ASK/TRYAGAIN are followed inside one attempt, ASK also to a master not met yet.
            # Slots not covered at start-up fail only the requests that need them (a 503).
            kwargs = {"socket_timeout": opts.socket_timeout, "socket_connect_timeout": opts.connect_timeout,
                      "max_connections": opts.max_connections, **parsed.pool_kwargs}
            return RedirectedRedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
                                          retry=Retry(NoBackoff(), 0), require_full_coverage=False, **kwargs)
        if parsed.scheme == "redis+sentinel":
            from redis.sentinel import Sentinel

            kwargs = dict(parsed.pool_kwargs)
            kwargs.pop("sentinel_password", None)
            sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=self._sentinel_kwargs(), **common)
            return sentinel.master_for(parsed.service_name, max_connections=opts.max_connections,
                                       **common, **kwargs)
        kwargs = {**common, "max_connections": opts.max_connections, "timeout": opts.connect_timeout,
                  **parsed.pool_kwargs}
        return redis.Redis(connection_pool=redis.BlockingConnectionPool(**kwargs))

    def _sentinel_kwargs(self) -> dict:
        """redis-py options of a connection to a sentinel."""
        opts = self.options
        return {"socket_timeout": opts.socket_timeout, "socket_connect_timeout": opts.connect_timeout,
                "retry": Retry(NoBackoff(), 0), "health_check_interval": opts.health_check_interval,
                "password": self.parsed.pool_kwargs.get("sentinel_password")}

    def _watch_switches(self, connection: _Connection) -> MasterSwitches | None:
        """Under Sentinel, threads (one per sentinel) that retire ``connection`` once a sentinel names a new
        master."""
        if self.parsed.scheme != "redis+sentinel":
            return None
        store, retiring = weakref.ref(self), weakref.ref(connection)

        def on_switch() -> None:
            current, old = store(), retiring()
            if current is not None and old is not None:
                current._retire(old)

        return MasterSwitches(self.parsed.sentinels, self.parsed.service_name, self._sentinel_kwargs(), on_switch)

    def _retire(self, connection: _Connection) -> None:
        """New commands go to a fresh client, which asks the sentinels for the master."""
        with self._connecting:
            if self._connection is connection:
                self._connection = None
        connection.retire()

    def _conn(self) -> _Connection:
        """This process's connection; made on first use (by one thread), and again in a forked child."""
        connection = self._connection
        if connection is None or connection.pid != os.getpid():
            with self._connecting:
                connection = self._connection
                if connection is None or connection.pid != os.getpid():
                    connection = self._connection = _Connection(self._make_client, self.cluster, self.ttl,
                                                                 self.resets_channel, self.on_reset_heard,
                                                                 self._watch_switches)
        return connection

    def _attempts(self, operation):
        """``operation(connection)``, tried again up to ``options.retries`` times with jittered
        exponential backoff when ``worth_retrying``, each time on fresh connections; then
        ``StoreUnavailable``. Resending is safe: a page that ran replays itself, a reset carries
        an id its script recognises, the rest are reads or idempotent. Against a server that never
        answers: (retries + 1) x (connect or socket timeout) + backoff, about 1.7 s by default."""
        for failures in range(self.options.retries + 1):
            connection = None
            try:
                connection = self._conn()  # a cluster client connects to its startup nodes here
                return operation(connection)
            except (RedisError, RedisClusterException) as error:
                transient = worth_retrying(error, self.cluster)
                if transient and connection is not None:
                    connection.drop_connections()
                if failures >= self.options.retries or not transient:
                    if is_unavailable(error):
                        raise StoreUnavailable(f"redis: {type(error).__name__}: {error}") from error
                    raise
            time.sleep(_BACKOFF.compute(failures + 1))

    def _run(self, calls: list[tuple[str, list[str], list]]) -> list:
        return self._attempts(lambda connection: connection.run(calls))

    def _index(self, session_id: str) -> str:
        return self.index_keys[index_shard(session_id, len(self.index_keys))]

    def _keys_with_index(self, session_id: str) -> list[str]:
        """A session script's keys: its hash, and on one server the index too (the script keeps it
        in the same step); on a cluster the index is in another slot, kept by a script of its own."""
        return [session_key(session_id)] if self.cluster else [session_key(session_id), self._index(session_id)]

    # -- SessionStoreBackend ---------------------------------------------------------

    def serve_page(self, session_id, feed_id, view, *, offset, limit, max_ahead, candidates=None,
                   scanned_to=0, create=False, canonical=None) -> PageResult:
        args = [feed_id, view.seed, _pack_positions(view.bounds), "1" if create else "0",
                "" if candidates is None else int(view.cursor), int(scanned_to),
                _pack_positions(candidates or ()), int(offset), int(limit), int(max_ahead), self.ttl_ms,
                self.max_feeds, self.max_items]
        # The index (counting, listing) is touched at most once a second a session: by the page
        # script on one server, on a cluster by touch.lua after it.
        with self._touched_lock:
            touch = session_id not in self._touched
        args += [session_id, "1" if touch else "0", _pack_positions(canonical or ())]
        (reply,) = self._run([("page", self._keys_with_index(session_id), args)])
        result = _page_result(reply)
        if result.status is PageStatus.SERVED and (touch or int(reply[7])):
            if self.cluster:
                try:
                    self._run([("touch", [self._index(session_id)], [session_id, self.ttl_ms])])
                except StoreUnavailable as error:
                    # The page is served; the index (for counting and listing) lives on another
                    # master, which may be down: the next page touches it again.
                    _log.warning("active-session index not touched: %s", error)
                    return result
            with self._touched_lock:
                self._touched[session_id] = True
        return result

    def reset(self, session_id: str) -> ResetResult:
        with self._touched_lock:
            self._touched.pop(session_id, None)
        reset_id = secrets.token_hex(8)
        keys = self._keys_with_index(session_id)
        arguments = [reset_id, RESET_RECORD_MS, session_id, self.resets_channel]
        (found, cleared, at), = self._run([("reset", keys, arguments)])
        # The reset is done: a master down elsewhere (a cluster's index shards) must not make it a 503.
        try:
            if self.cluster:
                self._run([("unindex", [self._index(session_id)], [session_id, int(at)])])
            count = self.session_count()
        except StoreUnavailable as error:
            _log.warning("session reset; the active-session index could not be kept or counted: %s", error)
            count = None
        return ResetResult(bool(found), int(cleared), count)

    def was_reset(self, session_id: str, seed: bytes) -> bool:
        connection = self._connection
        return connection is not None and connection.pid == os.getpid() and connection.resets.heard(session_id, seed)

    def session_count(self) -> int:
        counts = self._run([("count", [shard], [self.ttl_ms]) for shard in self.index_keys])
        return sum(int(count) for count in counts)

    def summary(self, session_id: str) -> SessionSummary | None:
        (reply,) = self._run([("summary", [session_key(session_id)], [])])
        if reply is None:
            return None
        served, created_ms, now_ms, pttl = (int(value) for value in reply[:4])
        registry, states = bytes(reply[4]), reply[5:]
        feeds = {}
        for number, state in enumerate(states):
            cursor, feed_served = struct.unpack_from("<II", state)
            feeds[registry[number * 9:(number + 1) * 9]] = FeedSummary(feed_served, cursor)
        # Every page restarts the TTL: the time since is what it has run down (to the ms PTTL
        # rounds to, so never before the creation).
        last_seen_ms = max(created_ms, now_ms - (self.ttl_ms - max(0, pttl)))
        return SessionSummary(session_id, served, created_ms / 1000, last_seen_ms / 1000, max(0, pttl) / 1000, feeds)

    def session_ids(self, limit: int = 100) -> list[str]:
        if limit <= 0:
            return []
        replies = self._run([("ids", [shard], [self.ttl_ms, int(limit)]) for shard in self.index_keys])
        scored = [(float(reply[index + 1]), reply[index]) for reply in replies for index in range(0, len(reply), 2)]
        scored.sort(reverse=True)
        return [_text(session_id) for _score, session_id in scored[:limit]]

    def stats(self) -> dict:
        """Active sessions plus the server's memory figures (``flask sessions stats``); on a cluster,
        memory summed over the masters."""
        def figures(connection: _Connection) -> dict:
            client = connection.client
            nodes = [client.get_redis_connection(node) for node in client.get_primaries()] if self.cluster else [client]
            infos = [node.info() for node in nodes]
            figures = {"redis_version": min((info.get("redis_version") for info in infos), default=None),
                       "used_memory": sum(info.get("used_memory", 0) for info in infos),
                       "maxmemory": sum(info.get("maxmemory", 0) for info in infos),
                       "maxmemory_policy": ",".join(sorted({str(info.get("maxmemory_policy")) for info in infos}))}
            if self.cluster:
                figures["cluster_masters"] = len(infos)
            return figures

        return {**super().stats(), **self._attempts(figures)}

    def ping(self) -> bool:
        """True when Redis answers (on a cluster: the first master answering says it is ok); else False."""
        def ping(connection: _Connection) -> bool:
            if self.cluster:  # one master down: the others serve on with cluster-require-full-coverage no
                for node in map(connection.client.get_redis_connection, connection.client.get_primaries()):
                    with contextlib.suppress(RedisError):
                        return node.execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                raise redis.ConnectionError("no master answers")
            if _text(connection.client.execute_command("ROLE")[0]) != "master":
                # A demoted server behind an address that moved: fresh connections find the master.
                raise ReadOnlyError("the server is a replica")
            return True

        try:
            return bool(self._attempts(ping))
        except StoreUnavailable:
            return False

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.pid == os.getpid():
            connection.close()

    @property
    def client(self):
        """This process's redis-py client (tests, benchmarks)."""
        return self._conn().client

    @property
    def reset_notices(self) -> ResetNotices:
        """This process's subscription to resets made elsewhere (``reset_notices.py``), connecting
        first if need be: its ``subscribed`` event is set while it is in place (tests, benchmarks)."""
        return self._conn().resets


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
