"""The Redis session store beyond the shared contract: URLs, the key layout (``vs2:``, one hash per
session), container encodings, partial sessions, the reset record, the active-session index and
its bounded trim, lost scripts, outages, fork and the connection pool.

Runs against real redis-servers (tests/redis_fixtures.py); the backend-neutral behaviour is in
test_store_contract.py.
"""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import redis

from config import Config
from redis_fixtures import in_forked_child
from viralspot import create_app
from viralspot.store import SessionStoreConfigError, StoreUnavailable, backend_from_url
from viralspot.store.base import FeedView, PageResult, PageStatus
from viralspot.store.redis_errors import is_unavailable
from viralspot.store.redis_store import (INDEX_KEY, LAYOUT, RESET_RECORD_MS, ClientOptions,
                                         RedisSessionStore, _Connection, session_key)
from viralspot.store.redis_url import parse_store_url

pytestmark = pytest.mark.redis

#: The settings backend_from_url reads: config.py's defaults, a few of them changed.
CONFIG = {**{name: getattr(Config, name) for name in dir(Config) if name.isupper()},
          "SESSION_TTL": 3600, "SESSION_MAX": 10, "SESSION_MAX_FEEDS": 64, "SESSION_MAX_ITEMS": 1000}
SEED = b"\x01" * 8
OTHER_SEED = b"\x02" * 8
REELS = b"r" + bytes(range(8))
POSTS = b"p" + bytes(range(8))
BOUNDS = (10**6,)
BLOCK = 65_536


def take(store, session_id, positions, feed=REELS, *, seed=SEED, limit=None, scanned_to=None) -> PageResult:
    """The next page of a feed taking ``positions`` (ascending, from the feed's cursor on); a new
    session when there is none."""
    current = store.serve_page(session_id, feed, FeedView(seed, BOUNDS), offset=0, limit=0, max_ahead=10**6)
    absent = current.status is PageStatus.ABSENT
    view = FeedView(seed, BOUNDS) if absent else current.view
    result = store.serve_page(session_id, feed, view, offset=view.served,
                              limit=len(positions) if limit is None else limit, max_ahead=10**6,
                              candidates=list(positions),
                              scanned_to=(positions[-1] + 1 if positions else view.cursor) if scanned_to is None
                              else scanned_to, create=absent)
    assert result.status is PageStatus.SERVED, result
    return result


def first_page(store, session_id, positions, feed=REELS) -> PageResult:
    """A creating page of a new session, in one call (no read first)."""
    result = store.serve_page(session_id, feed, FeedView(SEED, BOUNDS), offset=0, limit=len(positions),
                              max_ahead=10**6, candidates=list(positions), scanned_to=positions[-1] + 1, create=True)
    assert result.status is PageStatus.SERVED, result
    return result


def read(store, session_id, feed=REELS, offset=0, limit=10**6, seed=SEED) -> PageResult:
    return store.serve_page(session_id, feed, FeedView(seed, BOUNDS), offset=offset, limit=limit, max_ahead=10**6)


@pytest.fixture
def store(redis_clean):
    backend = RedisSessionStore(redis_clean.url, ttl=3600, max_feeds=8)
    yield backend
    backend.close()


@pytest.fixture
def client(redis_clean):
    with redis_clean.client() as connection:
        yield connection


def _command_calls(client, name: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{name}")
    return int(stats["calls"]) if stats else 0


# --- URLs and configuration ----------------------------------------------------------------------


def test_the_four_url_forms():
    from redis.connection import SSLConnection, UnixDomainSocketConnection

    plain = parse_store_url("redis://:s3cret@cache.internal:6380/2")
    assert plain.pool_kwargs == {"host": "cache.internal", "port": 6380, "db": 2, "password": "s3cret"}
    tls = parse_store_url("rediss://user:pw@cache.internal/1?ssl_cert_reqs=none")
    assert tls.pool_kwargs["connection_class"] is SSLConnection and tls.pool_kwargs["db"] == 1
    assert tls.pool_kwargs["username"] == "user"
    unix = parse_store_url("unix:///run/redis/redis.sock?db=3")
    assert unix.pool_kwargs["connection_class"] is UnixDomainSocketConnection
    assert (unix.pool_kwargs["path"], unix.pool_kwargs["db"]) == ("/run/redis/redis.sock", 3)
    sentinel = parse_store_url("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster/4"
                               "?sentinel_password=spw")
    assert sentinel.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert sentinel.service_name == "mymaster"
    assert sentinel.pool_kwargs == {"db": 4, "password": "pw", "sentinel_password": "spw"}
    assert parse_store_url("redis+sentinel://s1:26379/mymaster").pool_kwargs["db"] == 0
    cluster = parse_store_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001")
    assert cluster.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)] and cluster.pool_kwargs["password"] == "pw"


def test_backend_from_url_builds_the_redis_store_without_connecting():
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock?db=0",
                "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0", "redis+cluster://127.0.0.1:1"):
        backend = backend_from_url(url, {**CONFIG, "SESSION_STORE_SOCKET_TIMEOUT": 0.2})
        assert isinstance(backend, RedisSessionStore) and backend.storage_type == "redis"
        assert (backend.ttl, backend.max_feeds, backend.max_items) == (3600, 64, 1000)
        assert backend.options.socket_timeout == 0.2 and backend.options.connect_timeout == 0.5
        assert backend._connection is None  # nothing connects before the first use


@pytest.mark.parametrize("url", [
    "redis://",                              # no host
    "redis://localhost:port/0",              # port not a number
    "redis://localhost:6379/zero",           # db not a number
    "redis://localhost:6379/0?db=x",
    "unix://",                               # no socket path
    "redis+sentinel://10.0.0.1:26379",       # no service name
    "redis+sentinel://10.0.0.1/mymaster",    # sentinel without a port
    "redis+sentinel://10.0.0.1:26379/mymaster/db",
    "redis+sentinel://10.0.0.1:26379/mymaster/0?ssl=yes",
    "redis+cluster://",                       # no node
    "redis+cluster://10.0.0.1",               # no port
    "redis+cluster://10.0.0.1:7000,10.0.0.2",
    "redis+cluster://10.0.0.1:port",
    "redis+cluster://10.0.0.1:7000/1",        # a cluster has database 0 only
    "redis+cluster://10.0.0.1:7000?db=2",
    "redis+cluster://10.0.0.1:7000?service=x",  # not a redis-py connection option
    "memcached://10.0.0.1:11211",             # no such backend
])
def test_bad_urls_stop_start_up_with_a_clear_message(url):
    with pytest.raises(SessionStoreConfigError, match="VIRALSPOT_SESSION_STORE_URL"):
        backend_from_url(url, CONFIG)


@pytest.mark.parametrize("bad, good", [("redis://:hunter2@localhost:port/0", "redis://:hunter2@h:6379/0"),
                                       ("redis+cluster://:hunter2@h:7000/3", "redis+cluster://:hunter2@h:7000")])
def test_url_messages_never_show_the_password(bad, good):
    with pytest.raises(SessionStoreConfigError) as info:
        backend_from_url(bad, CONFIG)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(RedisSessionStore(good))


def test_missing_redis_package_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # "import redis" now raises ImportError
    monkeypatch.delitem(sys.modules, "viralspot.store.redis_store")
    with pytest.raises(SessionStoreConfigError, match=r"VIRALSPOT_SESSION_STORE_URL.*redis\[hiredis\]"):
        backend_from_url("redis://localhost:6379/0", CONFIG)


def test_the_store_is_shared_and_reports_the_servers_figures(store, client):
    client.config_set("maxmemory-policy", "volatile-lru")
    try:
        take(store, "s", [1, 2])
        stats = store.stats()
        assert store.shared and stats["storage_type"] == "redis" and stats["active_sessions"] == 1
        assert stats["used_memory"] > 0 and stats["redis_version"] == client.info("server")["redis_version"]
        assert stats["maxmemory_policy"] == "volatile-lru" and store.ping() is True
    finally:
        client.config_set("maxmemory-policy", "noeviction")


def test_app_uses_the_redis_store_from_the_url(redis_clean):
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": redis_clean.url,
                      "SESSION_STORE_RETRIES": 1, "SESSION_STORE_MAX_CONNECTIONS": 4, "SESSION_MAX_ITEMS": 77})
    backend = app.extensions["viralspot.session_store"]
    try:
        assert isinstance(backend, RedisSessionStore)
        assert (backend.options.retries, backend.options.max_connections, backend.max_items) == (1, 4, 77)
        response = app.test_client().get("/health")
        assert response.status_code == 200
        assert response.get_json()["data"]["session_storage_type"] == "redis"
    finally:
        backend.close()
        app.extensions["viralspot.catalog"].dispose()


def test_url_options_override_the_settings(redis_clean, client):
    store = RedisSessionStore(redis_clean.url + "?client_name=from-the-url&socket_timeout=2")
    try:
        assert store.ping()
        assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 2
        assert any(entry.get("name") == "from-the-url" for entry in client.client_list())
    finally:
        store.close()


# --- Key layout ----------------------------------------------------------------------------------


def test_a_session_is_one_hash_named_with_the_layout_version(store, client):
    take(store, "tag.me_1", [3, 5, BLOCK + 1], feed=REELS, limit=2)  # cursor rests on BLOCK + 1
    take(store, "tag.me_1", [4, BLOCK + 7], feed=POSTS)
    assert LAYOUT == "vs2" and session_key("x") == "vs2:{x}" and INDEX_KEY == "vs2:active"
    assert set(client.keys("*")) == {b"vs2:{tag.me_1}", b"vs2:active"}
    assert client.type("vs2:{tag.me_1}") == b"hash"
    assert client.zrange(INDEX_KEY, 0, -1) == [b"tag.me_1"]
    fields = client.hgetall("vs2:{tag.me_1}")
    assert set(fields) == {b"s", b"b", b"k", b"n", b"c", b"f1", b"f2", b"1.0", b"2.0", b"2.1"}
    assert fields[b"s"] == SEED and fields[b"b"] == struct.pack("<I", BOUNDS[0])
    assert fields[b"k"] == REELS + POSTS and fields[b"n"] == b"4"
    seconds, micros = client.time()
    assert abs(int(fields[b"c"]) - (seconds * 1000 + micros // 1000)) < 5_000
    # Feed state: cursor, served, then (block, served up to its end) per block.
    assert fields[b"f1"] == struct.pack("<II", BLOCK + 1, 2) + struct.pack("<HI", 0, 2)
    assert fields[b"f2"] == struct.pack("<II", BLOCK + 8, 2) + struct.pack("<HI", 0, 1) + struct.pack("<HI", 1, 2)
    # Containers: 'a' and the 2-byte little-endian lows, or 'b' and a bitmap of them.
    assert fields[b"1.0"] == b"b" + bytes([0b00101000])  # 3 and 5: the bitmap is the smaller
    assert fields[b"2.0"] == b"b" + bytes([0b00010000])
    assert fields[b"2.1"] == b"b" + bytes([0b10000000])


def test_containers_are_arrays_until_a_bitmap_is_smaller_and_never_turn_back(store, client):
    key = session_key("s")
    take(store, "s", [1000, 3000, 60_000])
    assert client.hget(key, "1.0") == b"a" + struct.pack("<3H", 1000, 3000, 60_000)
    dense = list(range(60_001, 60_101))
    take(store, "s", dense)  # 103 lows in the block: 2 x 103 + 1 bytes as an array, 7,514 as a bitmap
    assert client.hget(key, "1.0") == b"a" + struct.pack("<103H", 1000, 3000, 60_000, *dense)
    take(store, "s", list(range(60_101, 65_536)))  # now the bitmap is smaller
    value = client.hget(key, "1.0")
    assert value[:1] == b"b" and len(value) == 1 + BLOCK // 8
    expected = {1000, 3000, *range(60_000, BLOCK)}
    assert {low for low in range(BLOCK) if value[1 + low // 8] >> (low % 8) & 1} == expected
    take(store, "s", [BLOCK + 5000, 2 * BLOCK + 9000])
    assert client.hget(key, "1.1") == b"a" + struct.pack("<H", 5000)
    assert client.hget(key, "1.2") == b"a" + struct.pack("<H", 9000)
    assert read(store, "s").positions == sorted(expected) + [BLOCK + 5000, 2 * BLOCK + 9000]


def test_a_bitmap_grows_from_the_byte_of_its_first_new_position(store, client):
    """Appending to a bitmap keeps the bytes before the first new position and rebuilds the rest,
    carrying the bits already in that byte."""
    key = session_key("s")
    take(store, "s", list(range(0, 64, 2)))  # the cursor on 63
    assert client.hget(key, "1.0") == b"b" + bytes([0b01010101]) * 8
    take(store, "s", [63, 65, 66, 67, 80])
    value = client.hget(key, "1.0")
    assert value == b"b" + bytes([0b01010101]) * 7 + bytes([0b11010101, 0b00001110, 0, 1])
    assert read(store, "s").positions == [*range(0, 64, 2), 63, 65, 66, 67, 80]


def test_a_reset_and_the_session_after_it_get_the_compact_encoding_back(store, client):
    """A reset of a session past the listpack encoding leaves its record, and the one-page session
    after it, in a listpack: the hash is replaced whole, not rewritten field by field."""
    key = session_key("s")
    take(store, "s", list(range(0, 4000, 2)))
    assert client.object("encoding", key) == b"hashtable"
    store.reset("s")
    assert client.hkeys(key) == [b"r"] and client.object("encoding", key) == b"listpack"
    take(store, "s", list(range(0, 48, 2)))
    assert client.object("encoding", key) == b"listpack"
    assert client.memory_usage(key, samples=0) < 300


def test_a_one_page_session_hash_stays_listpack(store, client):
    take(store, "s", list(range(0, 48, 2)))  # a first page of 24 items
    key = session_key("s")
    assert client.object("encoding", key) == b"listpack"
    assert max(client.hstrlen(key, field) for field in client.hkeys(key)) <= 64
    assert client.memory_usage(key, samples=0) < 300


def test_every_key_a_script_touches_is_declared_and_in_one_slot(store, redis_clean, client):
    """What makes the scripts run on Redis Cluster: no undeclared key, no cross-slot script but the
    page that touches the index on one server."""
    from redis.crc import key_slot

    def work():
        take(store, "user-1", [1, 2, 3], feed=REELS)
        take(store, "user-1", [3, 4, 5], feed=POSTS)
        read(store, "user-1", seed=OTHER_SEED)
        store.summary("user-1")
        store.session_count()
        store.session_ids()
        store.reset("user-1")
        read(store, "user-1")

    commands = _monitor(redis_clean, work)
    spanning = {store._conn().scripts[name].sha for name in ("page", "reset")}
    scripts, checked, probes, declared = 0, 0, 0, None
    for source, args in commands:
        name = args[0].upper()
        if source != "lua":
            declared = None
            if name in ("EVALSHA", "EVAL"):
                scripts += 1
                declared = set(args[3:3 + int(args[2])])
                # Two slots only for a page or a reset that keeps the index in the same step, which
                # they do on one server only (on a cluster touch.lua and unindex.lua do it apart).
                assert declared in ({INDEX_KEY}, {"vs2:{user-1}"}, {"vs2:{user-1}", INDEX_KEY}), declared
                assert len({key_slot(key.encode()) for key in declared}) == 1 or args[1] in spanning
            continue
        assert declared is not None, f"a script command outside a script: {args}"
        keys = client.execute_command("COMMAND GETKEYS", *args) if name not in ("TIME", "PUBLISH") else []
        keys = [key.decode() if isinstance(key, bytes) else key for key in keys]
        if name == "EXISTS" and len(keys) == 1 and keys[0].endswith(":never") and keys[0][:-6] in declared:
            probes += 1  # _replace.lua's read of a key of the hash's own slot that never exists
            continue
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else key
            assert key in declared, f"{args[0]} touches undeclared key {key!r}"
            checked += 1
    assert scripts >= 10 and checked >= 15
    assert probes == 2  # the reset, and the first page after it


def _monitor(server, action):
    """Run ``action()`` and return the commands Redis executed meanwhile, as (source, args) pairs."""
    lines, ready = [], threading.Event()
    marker = f"end-{random.random()}"

    def listen():
        with server.client() as connection, connection.monitor() as monitor:
            ready.set()
            while True:
                raw = monitor.connection.read_response()
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                if marker in text:
                    return
                lines.append(text)

    thread = threading.Thread(target=listen)
    thread.start()
    assert ready.wait(5)
    action()
    with server.client() as connection:
        connection.echo(marker)
    thread.join(10)
    commands = []
    for line in lines:
        match = re.match(r"[\d.]+ \[\d+ ([^\]]*)\] (.*)$", line)
        if match:
            args = [re.sub(r"\\(.)", r"\1", arg) for arg in re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(2))]
            commands.append((match.group(1), args))
    return commands


def test_the_ttl_is_restarted_by_every_page_and_not_by_inspection(redis_clean, client):
    store = RedisSessionStore(redis_clean.url, ttl=120)
    key = session_key("s")
    take(store, "s", [1, 70_000])
    assert 119_000 < client.pttl(key) <= 120_000
    for page in (lambda: read(store, "s"), lambda: take(store, "s", [70_001]), lambda: read(store, "s", POSTS)):
        client.pexpire(key, 5_000)
        page()
        assert 119_000 < client.pttl(key) <= 120_000
    client.pexpire(key, 5_000)
    store.summary("s")
    store.session_count()
    store.session_ids()
    assert client.pttl(key) <= 5_000
    assert 0 < store.summary("s").expires_in_seconds <= 5
    store.close()


# --- Partial sessions ----------------------------------------------------------------------------


def _served_session(store, client):
    take(store, "s", [1, 2, 3], feed=REELS)
    take(store, "s", [4, BLOCK + 1], feed=POSTS)
    return session_key("s")


def _replaced_whole(store, client, key, feed=REELS):
    """A creating page (of ``feed``) over a damaged hash: a new session, nothing kept from the damaged one."""
    fresh = store.serve_page("s", feed, FeedView(OTHER_SEED, BOUNDS), offset=0, limit=5, max_ahead=100,
                             candidates=[1, 2, 3, 4, 5], scanned_to=6, create=True)
    assert fresh == PageResult(PageStatus.SERVED, FeedView(OTHER_SEED, BOUNDS, 6, 5), [1, 2, 3, 4, 5], False)
    assert set(client.hkeys(key)) == {b"s", b"b", b"k", b"n", b"c", b"f1", b"1.0"}
    assert client.hget(key, "k") == feed and client.hget(key, "n") == b"5"
    summary = store.summary("s")
    assert summary.served_items_count == 5 and list(summary.feeds) == [feed]


@pytest.mark.parametrize("field", ["s", "b", "k", "n", "c"])
def test_a_session_missing_a_field_is_gone_and_replaced_whole(store, client, field):
    key = _served_session(store, client)
    client.hdel(key, field)
    for feed in (REELS, POSTS):
        assert read(store, "s", feed) == PageResult(PageStatus.ABSENT, FeedView(b"", ()))
        assert store.serve_page("s", feed, FeedView(SEED, BOUNDS, 3), offset=3, limit=2, max_ahead=100,
                                candidates=[7, 8], scanned_to=9).status is PageStatus.ABSENT
    assert store.summary("s") is None
    assert client.hlen(key) == 10 - 1  # nothing written over it
    _replaced_whole(store, client, key)


def test_a_session_missing_a_feeds_state_is_gone_and_replaced_whole(store, client):
    key = _served_session(store, client)
    client.hdel(key, "f1")
    assert read(store, "s", REELS).status is PageStatus.ABSENT
    assert store.serve_page("s", REELS, FeedView(SEED, BOUNDS, 4), offset=3, limit=2, max_ahead=100,
                            candidates=[7, 8], scanned_to=9).status is PageStatus.ABSENT
    _replaced_whole(store, client, key)


def test_a_registry_naming_a_feed_without_state_is_gone(store, client):
    key = _served_session(store, client)
    third = b"r" + bytes(range(8, 16))
    client.hset(key, "k", REELS + POSTS + third)
    assert read(store, "s", third).status is PageStatus.ABSENT
    _replaced_whole(store, client, key, third)


def test_a_registry_cut_short_is_gone(store, client):
    key = _served_session(store, client)
    client.hset(key, "k", (REELS + POSTS)[:-1])
    assert read(store, "s", REELS).status is PageStatus.ABSENT
    assert read(store, "s", POSTS).status is PageStatus.ABSENT
    assert store.summary("s") is None
    _replaced_whole(store, client, key)


def test_keys_of_another_layout_are_not_a_session(store, client):
    client.hset("vs:{s}:m", mapping={"g": 0, "f": "x"})
    client.hset("vs3:{s}", mapping={"s": OTHER_SEED, "n": 9})
    assert read(store, "s").status is PageStatus.ABSENT and store.summary("s") is None
    take(store, "s", [1])
    assert client.hgetall("vs3:{s}") == {b"s": OTHER_SEED, b"n": b"9"} and client.exists("vs:{s}:m")


# --- Reset ---------------------------------------------------------------------------------------


def test_a_reset_leaves_only_its_record_which_the_next_session_keeps(store, client, monkeypatch):
    import viralspot.store.redis_store as module

    key = _served_session(store, client)
    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "first-reset")
    result = store.reset("s")
    assert (result.found, result.cleared_items_count, result.total_active_sessions) == (True, 5, 0)
    assert client.hgetall(key) == {b"r": b"first-reset:5:1"}
    assert 0 < client.pttl(key) <= RESET_RECORD_MS
    assert client.zscore(INDEX_KEY, "s") is None
    assert read(store, "s").status is PageStatus.ABSENT and store.summary("s") is None
    take(store, "s", [9])  # a new session keeps the record, for the session's TTL
    assert client.hget(key, "r") == b"first-reset:5:1" and client.pttl(key) > RESET_RECORD_MS
    assert store.summary("s").served_items_count == 1


def test_a_resent_reset_answers_the_first_outcome_and_spares_the_next_session(store, client, monkeypatch):
    """The reset ran but its reply was lost; before the resend, a page made a new session. The resend
    (the same reset id) answers what the first did, and the new session keeps its items."""
    import viralspot.store.redis_store as module

    take(store, "s", [1, 2, 3])
    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "same-reset-id")
    first = store.reset("s")
    take(store, "s", [4, 5])
    resent = store.reset("s")
    assert (first.found, first.cleared_items_count, first.total_active_sessions) == (True, 3, 0)
    assert (resent.found, resent.cleared_items_count) == (True, 3)
    assert store.summary("s").served_items_count == 2 and read(store, "s").positions == [4, 5]
    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "another-reset")
    assert store.reset("s").cleared_items_count == 2  # a new reset does reset it


def test_the_reset_script_run_twice_with_one_id_does_one_reset(store, client):
    take(store, "s", [1, 2, 3])
    reset = store._conn().scripts["reset"]
    key = session_key("s")
    assert reset(keys=[key], args=["id-1", RESET_RECORD_MS, "s", store.resets_channel])[:2] == [1, 3]
    assert reset(keys=[key], args=["id-1", RESET_RECORD_MS, "s", store.resets_channel])[:2] == [1, 3]
    assert reset(keys=[key], args=["id-2", RESET_RECORD_MS, "s", store.resets_channel])[:2] == [0, 0]
    assert reset(keys=[session_key("ghost")], args=["id-3", RESET_RECORD_MS, "ghost", store.resets_channel])[:2] == [0, 0]
    assert client.hgetall(key) == {b"r": b"id-2:0:0"}


# --- The active-session index --------------------------------------------------------------------


def test_the_index_uses_server_time_and_a_touch_trims_at_most_100_idle_entries(store, client):
    first_page(store, "s", [1])
    score = client.zscore(INDEX_KEY, "s")
    seconds, micros = client.time()
    assert abs(score - (seconds * 1000 + micros / 1000)) < 5_000
    idle = score - 3_600_001  # idle past the TTL
    client.zadd(INDEX_KEY, {f"idle-{i}": idle - i for i in range(250)})
    client.zadd(INDEX_KEY, {"recent": score - 3_500_000})
    assert store.session_count() == 2 and store.session_ids() == ["s", "recent"]
    sizes = [client.zcard(INDEX_KEY)]
    for name in ("t1", "t2", "t3", "t4"):
        first_page(store, name, [1])
        sizes.append(client.zcard(INDEX_KEY))
    assert sizes == [252, 153, 54, 5, 6]  # 100 trimmed and one added per touch, the oldest first
    assert client.zscore(INDEX_KEY, "recent") is not None
    assert store.session_count() == 6


def test_touch_lua_trims_at_most_100_idle_entries_a_call(store, client):
    """The index touch a cluster runs after a served page (on one server the page script does it)."""
    touch = store._conn().scripts["touch"]
    seconds, _micros = client.time()
    client.zadd(INDEX_KEY, {f"idle-{i}": seconds * 1000 - 3_600_001 - i for i in range(230)})
    sizes = []
    for name in ("a", "b", "c", "a"):
        now = touch(keys=[INDEX_KEY], args=[name, 3_600_000])
        assert abs(now - seconds * 1000) < 5_000 and client.zscore(INDEX_KEY, name) == now
        sizes.append(client.zcard(INDEX_KEY))
    assert sizes == [131, 32, 3, 3]
    assert sorted(client.zrange(INDEX_KEY, 0, -1)) == [b"a", b"b", b"c"]


def test_a_process_touches_a_sessions_index_entry_at_most_once_an_interval(redis_clean, client):
    store = RedisSessionStore(redis_clean.url, ttl=3600, options=ClientOptions(index_touch_interval=3600))
    take(store, "s", [1])
    first = client.zscore(INDEX_KEY, "s")
    scripts = _command_calls(client, "evalsha")
    time.sleep(0.005)  # a server millisecond later
    take(store, "s", [2])
    assert _command_calls(client, "evalsha") - scripts == 2  # a read and a page: one script each
    assert client.zscore(INDEX_KEY, "s") == first
    often = RedisSessionStore(redis_clean.url, ttl=3600, options=ClientOptions(index_touch_interval=0.001))
    time.sleep(0.005)
    read(often, "s")
    assert client.zscore(INDEX_KEY, "s") > first
    store.close()
    often.close()


def test_a_session_recreated_after_a_reset_elsewhere_is_indexed(redis_clean, client):
    store = RedisSessionStore(redis_clean.url, ttl=3600, options=ClientOptions(index_touch_interval=3600))
    elsewhere = RedisSessionStore(redis_clean.url, ttl=3600)
    try:
        take(store, "s", [1])
        assert elsewhere.reset("s").found and client.zscore(INDEX_KEY, "s") is None
        take(store, "s", [1])  # within the touch interval: a new session
        assert store.summary("s") is not None
        assert client.zscore(INDEX_KEY, "s") is not None and store.session_count() == 1
    finally:
        store.close()
        elsewhere.close()


def test_a_session_made_between_a_reset_and_its_unindexing_stays_indexed(redis_clean, client, monkeypatch):
    store = RedisSessionStore(redis_clean.url, ttl=3600)
    elsewhere = RedisSessionStore(redis_clean.url, ttl=3600)
    take(store, "s", [1])
    real = RedisSessionStore._attempts
    calls = []

    def page_elsewhere_before_unindexing(self, operation):
        if self is store:
            calls.append(operation)
            if len(calls) == 2:  # the reset script ran; now the index removal
                take(elsewhere, "s", [7])
        return real(self, operation)

    monkeypatch.setattr(RedisSessionStore, "_attempts", page_elsewhere_before_unindexing)
    try:
        assert store.reset("s").found
        assert store.summary("s").served_items_count == 1
        assert client.zscore(INDEX_KEY, "s") is not None and store.session_count() == 1
    finally:
        store.close()
        elsewhere.close()


# --- Lost scripts, lost replies, outages ---------------------------------------------------------


def test_scripts_are_reloaded_after_script_flush(store, client):
    take(store, "s", [1])
    operations = [
        lambda: take(store, "s", [2]).positions == [2],          # one script (touched this second)
        lambda: take(store, "new", [5]).positions == [5],        # a page that touches the index
        lambda: store.summary("s").served_items_count == 2,
        lambda: store.session_count() == 2,
        lambda: sorted(store.session_ids()) == ["new", "s"],
        lambda: store.reset("s").cleared_items_count == 2,
        lambda: read(store, "s").status is PageStatus.ABSENT,
    ]
    for operation in operations:
        client.script_flush()
        assert operation()
    assert client.zscore(INDEX_KEY, "new") is not None


def test_a_page_whose_reply_was_lost_is_resent_and_answers_the_same_page(store, monkeypatch):
    """The connection drops after the server ran the page: the store sends it again, which serves
    nothing twice and answers what the first run did."""
    real = _Connection.run
    lost = []

    def lose_first_page_reply(self, calls):
        results = real(self, calls)
        if calls[0][0] == "page" and calls[0][1][0] == session_key("s") and len(calls[0][2][6]) and not lost:
            lost.append(results[0])
            raise redis.ConnectionError("connection reset after the script ran")
        return results

    take(store, "s", [1, 2])
    monkeypatch.setattr(_Connection, "run", lose_first_page_reply)
    result = take(store, "s", [3, 4, 5], limit=2, scanned_to=10)
    assert lost and result == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 5, 4), [3, 4], True)
    assert read(store, "s").positions == [1, 2, 3, 4] and store.summary("s").served_items_count == 4


def _timed(call):
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    return time.monotonic() - started


def test_an_outage_raises_store_unavailable_quickly_and_the_store_recovers(redis_server_factory):
    server = redis_server_factory()
    store = RedisSessionStore(server.url, ttl=60)
    take(store, "s", [1])
    assert store.ping()
    server.stop()
    for operation in (lambda: read(store, "s"), lambda: take(store, "s", [2]), lambda: store.reset("s"),
                      store.session_count, lambda: store.summary("s"), store.session_ids, store.stats):
        assert _timed(operation) < 3
    assert store.ping() is False
    server.start()  # same port, empty (no persistence): the same store object serves again
    assert store.ping()
    assert take(store, "s", [1]).positions == [1]
    store.close()


def test_a_server_that_never_answers_times_out_within_the_retry_budget():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections (in the kernel) and never replies
    try:
        # Default settings: 3 attempts of 0.5 s plus backoff (about 1.7 s).
        store = RedisSessionStore(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", ttl=60)
        assert 1.0 < _timed(lambda: read(store, "s")) < 4
        store.close()
    finally:
        listener.close()


def test_a_closed_port_is_a_503_envelope_not_a_hang(caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": f"redis://127.0.0.1:{port}/0"})
    try:
        started = time.monotonic()
        response = app.test_client().post("/api/reset-session?session_id=abc")
        assert time.monotonic() - started < 3
        assert response.status_code == 503
        body = response.get_json()
        assert body["success"] is False and body["error_code"] == "SESSION_STORE_UNAVAILABLE"
        assert response.headers["Retry-After"] == "2"  # about what a failover takes
        # One log line a failed request, naming the cause (an outage logs one per request), no traceback.
        (logged,) = [record for record in caplog.records if record.getMessage().startswith("session store unavailable")]
        assert logged.exc_info is None and "StoreUnavailable: redis: ConnectionError" in logged.getMessage()
        assert app.test_client().get("/health").status_code == 503
    finally:
        app.extensions["viralspot.session_store"].close()
        app.extensions["viralspot.catalog"].dispose()


def test_busy_and_read_only_errors_mean_unavailable():
    from redis import exceptions

    assert is_unavailable(exceptions.ConnectionError("refused"))
    assert is_unavailable(exceptions.BusyLoadingError("loading"))
    assert is_unavailable(exceptions.AuthenticationError("bad password"))
    assert is_unavailable(exceptions.TimeoutError("slow"))
    assert is_unavailable(exceptions.ReadOnlyError("READONLY You can't write against a read only replica."))
    assert is_unavailable(exceptions.ResponseError("BUSY Redis is busy running a script."))
    assert is_unavailable(exceptions.ResponseError("MASTERDOWN Link with MASTER is down"))
    assert is_unavailable(exceptions.OutOfMemoryError("OOM command not allowed"))
    assert is_unavailable(exceptions.ClusterDownError("CLUSTERDOWN"))
    assert is_unavailable(exceptions.TryAgainError("TRYAGAIN"))
    assert not is_unavailable(exceptions.ResponseError("ERR wrong number of arguments"))
    assert not is_unavailable(exceptions.DataError("bad value"))


# --- Fork, threads -------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_its_own_connection(store):
    take(store, "s", [1])
    parent_id = store.client.client_id()

    def child():
        child_id = store.client.client_id()
        ok = store.ping() and take(store, "s", [2]).positions == [2] and child_id != parent_id
        return ok, f"{child_id}".encode()

    exit_code, answer = in_forked_child(child)
    assert exit_code == 0
    assert int(answer or b"0") != parent_id
    assert store.client.client_id() == parent_id  # the parent's pooled connection survived the child
    assert read(store, "s").positions == [1, 2]


def test_threads_beyond_max_connections_wait_for_the_pool(redis_clean, client):
    store = RedisSessionStore(redis_clean.url + "?client_name=capped", options=ClientOptions(max_connections=2))
    outcomes, errors = [], []

    def pages(index: int) -> None:
        try:
            for step in range(10):
                outcomes.append(take(store, f"t{index}", [step]).positions)
        except Exception as error:  # noqa: BLE001 -- reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=pages, args=(index,)) for index in range(6)]
    store.ping()  # the client made before the threads start (see the cold-start test below)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors and len(outcomes) == 60
        # The pool's connections; the reset notices' subscriber (flag P) is a client of its own.
        pooled = [entry for entry in client.client_list()
                  if entry.get("name") == "capped" and "P" not in entry.get("flags", "")]
        assert 0 < len(pooled) <= 2
        assert store.session_count() == 6
    finally:
        store.close()


def test_threads_first_using_a_store_at_once_share_one_client(redis_clean, monkeypatch):
    store = RedisSessionStore(redis_clean.url)
    made, inside = [], threading.Barrier(2)
    real = RedisSessionStore._make_client

    def make_client(self):
        if threading.current_thread().name == "viralspot-reset-notices":
            return real(self)  # the reset notices' client of their own (store/reset_notices.py)
        made.append(threading.get_ident())
        try:  # holds the first thread here until a second one makes a client too (or 0.5 s pass)
            inside.wait(timeout=0.5)
        except threading.BrokenBarrierError:
            pass
        return real(self)

    monkeypatch.setattr(RedisSessionStore, "_make_client", make_client)
    threads = [threading.Thread(target=store.ping) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        assert len(made) == 1
    finally:
        store.close()


def test_sentinel_url_reaches_the_master(redis_clean, tmp_path):
    from redis_fixtures import free_port, redis_server_binary

    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor viralspot 127.0.0.1 {redis_clean.port} 1\n")
    process = subprocess.Popen([redis_server_binary(), str(config), "--sentinel"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as probe:
                    if probe.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "viralspot"):
                        break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "redis sentinel did not start"
            time.sleep(0.05)
        store = backend_from_url(f"redis+sentinel://127.0.0.1:{port}/viralspot/0", CONFIG)
        assert store.ping()
        assert take(store, "s", [1, 2]).positions == [1, 2]
        with redis_clean.client() as client:
            assert client.exists("vs2:{s}")
        store.close()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
