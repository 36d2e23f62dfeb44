"""The Redis session store beyond the shared contract: URLs, key layout, TTLs, memory, outages, fork.

Runs against real redis-servers (tests/redis_fixtures.py); the backend-neutral behaviour is in
test_store_contract.py.
"""
from __future__ import annotations

import contextlib
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

from viralspot import create_app
from viralspot.store import SessionStoreConfigError, StoreUnavailable, backend_from_url
from redis_fixtures import ManualClock, in_forked_child
from viralspot.store.redis_store import (ClientOptions, INDEX_KEY, TRIM_GUARD_KEY, index_companions,
                                         RedisSessionStore, is_unavailable, parse_store_url, session_keys)

pytestmark = pytest.mark.redis

CONFIG = {"SESSION_TTL": 3600, "SESSION_MAX": 10, "SESSION_MAX_FEEDS": 64}


def claim(store, session_id, keys, feed="f", want=None):
    view = store.read_feed(session_id, feed, 0, 0)
    result = store.claim_unseen(
        session_id, feed, generation=view.generation, expect_cursor=view.cursor, expect_plan=view.plan,
        plan="p", domain=10**9, candidates=list(enumerate(keys, start=view.cursor)),
        scanned_to=view.cursor + len(keys), want=len(keys) if want is None else want,
        page=(view.served_count, view.served_count + len(keys)))
    assert result.ok
    return result


@pytest.fixture
def store(redis_clean):
    backend = RedisSessionStore(redis_clean.url, ttl=3600, max_feeds=8)
    yield backend
    backend.close()


@pytest.fixture
def client(redis_clean):
    with redis_clean.client() as connection:
        yield connection


# --- URLs and configuration --------------------------------------------------------------


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


def test_backend_from_url_builds_the_redis_store_without_connecting():
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock?db=0",
                "redis+sentinel://127.0.0.1:1,127.0.0.1:2/mymaster/0"):
        backend = backend_from_url(url, {**CONFIG, "SESSION_STORE_SOCKET_TIMEOUT": 0.2})
        assert isinstance(backend, RedisSessionStore) and backend.storage_type == "redis"
        assert backend.ttl == 3600 and backend.max_feeds == 64
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


def test_store_is_shared_claims_skip_seen_keys_and_reports_stats(store):
    assert store.shared and not store.prefilter_seen
    claim(store, "s", [1, 2])
    stats = store.stats()
    assert stats["storage_type"] == "redis" and stats["active_sessions"] == 1 and stats["indexed_sessions"] == 1
    assert stats["used_memory"] > 0 and stats["redis_version"]


def test_app_uses_the_redis_store_from_the_url(redis_clean):
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": redis_clean.url,
                      "SESSION_STORE_RETRIES": 1, "SESSION_STORE_MAX_CONNECTIONS": 4})
    backend = app.extensions["viralspot.session_store"]
    try:
        assert isinstance(backend, RedisSessionStore)
        assert (backend.options.retries, backend.options.max_connections) == (1, 4)
        response = app.test_client().get("/health")
        assert response.status_code == 200
        assert response.get_json()["data"]["session_storage_type"] == "redis"
    finally:
        backend.close()


# --- Key layout, TTL, reset ---------------------------------------------------------------


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
    assert ready.wait(5)  # set once MONITOR's OK was read: from then on every command is reported
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


def test_every_key_a_script_touches_is_declared_and_in_one_slot(store, redis_clean, client):
    """What makes the scripts run on Redis Cluster: no undeclared key, no cross-slot script."""
    from redis.crc import key_slot

    def work():
        claim(store, "user-1", [1, 2, 3], feed="a")
        claim(store, "user-1", [3, 4, 5], feed="b")
        store.seen_among("user-1", [1, 9])
        store.summary("user-1")
        store.session_count()
        store.session_ids()
        store.reset("user-1")
        store.read_feed("user-1", "a", 0, 5)
        store.claim_unseen("user-1", "a", generation=0, expect_cursor=0, expect_plan=None, plan="p",
                           domain=10, candidates=[(0, 1)], scanned_to=1, want=1, page=(0, 1))  # fails

    commands = _monitor(redis_clean, work)
    scripts, checked, declared = 0, 0, None
    for source, args in commands:
        name = args[0].upper()
        if source != "lua":
            declared = None
            if name in ("EVALSHA", "EVAL"):
                scripts += 1
                declared = set(args[3:3 + int(args[2])])
                assert len({key_slot(key.encode()) for key in declared}) == 1, args[:3 + int(args[2])]
                assert declared <= {INDEX_KEY, TRIM_GUARD_KEY, *index_companions(INDEX_KEY)} or all("{user-1}" in key for key in declared)
            continue
        assert declared is not None, f"a script command outside a script: {args}"
        keys = client.execute_command("COMMAND GETKEYS", *args) if name not in ("TIME",) else []
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else key
            assert key in declared, f"{args[0]} touches undeclared key {key!r}"
            checked += 1
    assert scripts >= 12 and checked >= 30


def test_session_keys_carry_the_hash_tag(store, client):
    claim(store, "tag.me_1", [1, 2])
    session_keys_present = {key.decode() for key in client.keys("vs:{*")}
    assert session_keys_present == {"vs:{tag.me_1}:m", "vs:{tag.me_1}:k"}
    assert set(session_keys("x")) == {"vs:{x}:m", "vs:{x}:k", "vs:{x}:r"}


def test_ttl_is_set_and_refreshed_on_every_key_of_the_session(redis_clean, client):
    store = RedisSessionStore(redis_clean.url, ttl=120)
    keys = session_keys("s")[:2]
    claim(store, "s", [1, 70_000])
    for key in keys:
        assert 119_000 < client.pttl(key) <= 120_000
    for refresh in (lambda: store.read_feed("s", "f", 0, 1), lambda: claim(store, "s", [5])):
        for key in keys:
            client.pexpire(key, 5_000)
        refresh()
        for key in keys:
            assert 119_000 < client.pttl(key) <= 120_000, key
    for key in keys:  # inspection does not keep a session alive
        client.pexpire(key, 5_000)
    store.summary("s")
    store.seen_among("s", [1])
    assert all(client.pttl(key) <= 5_000 for key in keys)
    summary = store.summary("s")
    assert 0 < summary.expires_in_seconds <= 5
    store.close()


def test_reset_unlinks_the_session_and_leaves_only_the_freshness_key(store, client):
    claim(store, "s", list(range(1, 500)))
    unlinks = _command_calls(client, "unlink")
    result = store.reset("s")
    assert result.found and result.cleared_items_count == 499
    assert _command_calls(client, "unlink") == unlinks + 1
    assert [key.decode() for key in client.keys("vs:{s}*")] == ["vs:{s}:r"]
    assert 3_590_000 < client.pttl("vs:{s}:r") <= 3_600_000
    assert client.memory_usage("vs:{s}:r") < 100
    assert client.zscore(INDEX_KEY, "s") is None
    claim(store, "s", [1])  # the next session starts at the record's generation; the record stays
    assert store.summary("s").generation == 1 and 3_500_000 < client.pttl("vs:{s}:r") <= 3_600_000


def test_a_resent_reset_does_not_reset_the_session_a_claim_made_since(store, monkeypatch):
    """The reset ran but its reply was lost; before the resend, a claim made a new session. The
    resend answers the first reset's outcome and the new session keeps its items."""
    import viralspot.store.redis_store as module

    claim(store, "s", [1, 2, 3])
    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "same-reset-id")
    first = store.reset("s")
    claim(store, "s", [4, 5])
    resent = store.reset("s")  # the same id, as the store's retry sends it
    assert (first.found, first.cleared_items_count, first.generation, first.total_active_sessions) == (True, 3, 1, 0)
    assert (resent.found, resent.cleared_items_count, resent.generation) == (True, 3, 1)
    assert store.summary("s").served_items_count == 2 and store.summary("s").generation == 1
    assert resent.total_active_sessions == store.session_count() == 1  # and it stays indexed


def _command_calls(client, name: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{name}")
    return int(stats["calls"]) if stats else 0


def test_active_index_uses_server_time_and_is_trimmed(store, client):
    claim(store, "s", [1])
    score = client.zscore(INDEX_KEY, "s")
    seconds, micros = client.time()
    assert abs(score - (seconds * 1000 + micros / 1000)) < 5_000
    client.zadd(INDEX_KEY, {"stale": score - 3_600_001})  # idle past the TTL
    assert store.session_count() == 1 and store.session_ids() == ["s"]
    client.delete(TRIM_GUARD_KEY)
    claim(store, "t", [2])
    assert client.zscore(INDEX_KEY, "stale") is None  # trimmed by the next touch
    assert 0 < client.pttl(TRIM_GUARD_KEY) <= 1000


def test_a_process_touches_a_sessions_index_entry_at_most_once_a_second(redis_clean, client):
    """Pages of a session in quick succession run one script each, not a script and a touch; the
    index still holds every session, also one a claim re-creates after a reset elsewhere."""
    clock = ManualClock()
    store = RedisSessionStore(redis_clean.url, ttl=3600, clock=clock)
    elsewhere = RedisSessionStore(redis_clean.url, ttl=3600)
    claim(store, "s", [1])
    first = client.zscore(INDEX_KEY, "s")
    scripts = _command_calls(client, "evalsha")
    clock.now += 0.5
    claim(store, "s", [2])
    assert _command_calls(client, "evalsha") - scripts == 2  # a read and a claim, no touch
    assert client.zscore(INDEX_KEY, "s") == first
    clock.now += 0.6  # a second after the last touch
    claim(store, "s", [3])
    assert client.zscore(INDEX_KEY, "s") > first
    assert elsewhere.reset("s").found and client.zscore(INDEX_KEY, "s") is None
    claim(store, "s", [4])  # within the second: the session this claim makes is indexed anyway
    assert client.zscore(INDEX_KEY, "s") is not None and store.session_count() == 1
    assert store.reset("s").found and store.session_count() == 0
    claim(store, "s", [5])
    assert store.session_count() == elsewhere.session_count() == 1
    assert store.summary("s").generation == 2
    store.close()
    elsewhere.close()


def test_a_reset_keeps_the_index_entry_of_the_next_session_touched_before_its_unindex(redis_clean, client,
                                                                                      monkeypatch):
    """On a cluster the reset and its index removal run on two nodes: a claim of the next session,
    with its touch, can land between them. The removal must then keep that session indexed."""
    store = RedisSessionStore(redis_clean.url, ttl=3600)
    elsewhere = RedisSessionStore(redis_clean.url, ttl=3600)
    claim(store, "s", [1])
    real = RedisSessionStore._run

    def claim_before_unindex(self, calls):
        if calls[0][0] == "unindex":
            assert claim(elsewhere, "s", [2]).claimed == [2]  # generation 1: a new session, touched
        return real(self, calls)

    monkeypatch.setattr(RedisSessionStore, "_run", claim_before_unindex)
    result = store.reset("s")
    assert (result.found, result.generation, result.total_active_sessions) == (True, 1, 1)
    assert client.zscore(INDEX_KEY, "s") is not None and store.summary("s").generation == 1
    store.close()
    elsewhere.close()


def test_a_touch_of_a_reset_generation_arriving_late_does_not_index_the_session(store, client):
    """A claim that ran before a reset can have its touch land on the index's node after the reset's
    removal (a cluster); that touch is of the ended generation, and is ignored."""
    claim(store, "s", [1])
    assert store.reset("s").found and client.zscore(INDEX_KEY, "s") is None
    (score,) = store._run([store._touch("s", only_if_indexed=False, generation=0)])
    assert score == b"" and client.zscore(INDEX_KEY, "s") is None and store.session_count() == 0
    (score,) = store._run([store._touch("s", only_if_indexed=False, generation=1)])  # the next session's
    assert score and client.zscore(INDEX_KEY, "s") is not None


def test_index_generations_of_reset_and_idle_sessions_are_forgotten(store, client):
    claim(store, "gone", [1])
    claim(store, "idle", [1])
    assert store.reset("gone").found
    generations = index_companions(INDEX_KEY)[0]
    assert client.hgetall(generations) == {b"gone": b"1", b"idle": b"0"}
    old = client.zscore(INDEX_KEY, "idle") - 3_600_001
    client.zadd(INDEX_KEY, {"idle": old})  # idle past the TTL
    client.zadd(index_companions(INDEX_KEY)[1], {"gone": old})  # reset long ago
    client.delete(TRIM_GUARD_KEY)
    claim(store, "other", [1])  # its touch trims
    assert client.hgetall(generations) == {b"other": b"0"}
    assert client.zcard(index_companions(INDEX_KEY)[1]) == 0


# --- Idempotence, memory, containers ------------------------------------------------------


def test_a_resent_claim_returns_the_stored_outcome(store, monkeypatch):
    """redis-py resends a script after a timeout: the resend carries the same claim id."""
    import viralspot.store.redis_store as module

    monkeypatch.setattr(module.secrets, "token_hex", lambda _n: "same-claim-id")
    kwargs = dict(generation=0, expect_cursor=0, expect_plan=None, plan="p", domain=100,
                  candidates=[(0, 7), (1, 8), (2, 9)], scanned_to=3, want=2, page=(0, 10))
    first = store.claim_unseen("s", "f", **kwargs)
    resent = store.claim_unseen("s", "f", **kwargs)
    assert first.ok and first.claimed == [7, 8] and first.has_more
    assert resent == first
    assert store.read_feed("s", "f", 0, 10).keys == [7, 8]
    assert store.summary("s").served_items_count == 2
    reset = store.reset("s")
    assert store.reset("s") == reset and reset.found  # a resent reset reports the same reset


def _lose_the_next_claim_reply(monkeypatch) -> list:
    """From now on, the first claim's connection drops after the server ran it (its replies are
    appended to the list returned); the store then resends it with the same claim id."""
    real = RedisSessionStore._pipeline
    lost = []

    def drop_first_claim_reply(connection, calls):
        results = real(connection, calls)
        if calls[0][0] == "claim" and not lost:
            lost.append(results)
            raise redis.ConnectionError("connection reset after the script ran")
        return results

    monkeypatch.setattr(RedisSessionStore, "_pipeline", staticmethod(drop_first_claim_reply))
    return lost


def test_a_claim_whose_reply_was_lost_is_resent_without_serving_twice(store, monkeypatch):
    """The connection drops after the server ran the claim: the store resends it (same claim id)."""
    lost = _lose_the_next_claim_reply(monkeypatch)
    claim(store, "s", [1, 2])
    result = claim(store, "s", [2, 3, 4, 5], want=2)
    assert lost and result.claimed == [3, 4] and result.has_more
    assert store.read_feed("s", "f", 0, 10).keys == [1, 2, 3, 4]
    assert store.summary("s").served_items_count == 4


def test_a_session_made_by_a_claim_whose_reply_was_lost_is_still_indexed(redis_clean, client, monkeypatch):
    """Within the touch interval a claim skips the index touch; when that claim re-creates a session
    reset elsewhere and its reply is lost, the resend must still report that it made the session."""
    clock = ManualClock()
    store = RedisSessionStore(redis_clean.url, ttl=3600, clock=clock)
    elsewhere = RedisSessionStore(redis_clean.url, ttl=3600)
    claim(store, "s", [1])  # touched now: the next second's claims skip the touch
    assert elsewhere.reset("s").found and client.zscore(INDEX_KEY, "s") is None
    lost = _lose_the_next_claim_reply(monkeypatch)
    assert claim(store, "s", [2]).claimed == [2]
    assert lost and lost[0][0][-1] == 1  # the claim that ran made the session, and the touch was skipped
    assert client.zscore(INDEX_KEY, "s") is not None
    assert store.session_count() == elsewhere.session_count() == 1
    store.close()
    elsewhere.close()


def test_bytes_per_served_item_at_2000_items(store, client):
    rng = random.Random(2000)
    keys = rng.sample(range(1, 1_000_001), 2000)
    for start in range(0, 2000, 24):
        claim(store, "s", keys[start:start + 24])
    used = sum(client.memory_usage(key, samples=0) for key in session_keys("s")[:2])
    assert store.summary("s").served_items_count == 2000
    assert used / 2000 <= 16, f"{used / 2000:.1f} bytes per served item"


def test_dense_buckets_become_bitmaps_and_stay_correct(store, client):
    rng = random.Random(3)
    keys = rng.sample(range(65_536, 131_072), 6000)  # one bucket (key >> 16 == 1)
    for start in range(0, 6000, 1000):
        claim(store, "s", keys[start:start + 1000])
    assert client.hstrlen("vs:{s}:k", "1") == 8192  # a bitmap container
    assert store.summary("s").served_items_count == 6000
    taken = set(keys)
    outside = [key for key in range(65_536, 131_072) if key not in taken][:300]
    assert sorted(store.seen_among("s", keys[:300] + outside)) == sorted(keys[:300])
    assert claim(store, "s", keys[:50] + outside[:5] + [1]).claimed == outside[:5] + [1]


def test_a_claim_may_touch_thousands_of_buckets(store):
    keys = random.Random(9).sample(range(1, 2**32), 20_000)  # sparse: about one key per bucket
    assert claim(store, "s", keys).claimed == keys
    assert sorted(store.seen_among("s", keys[::7] + [0])) == sorted(keys[::7])
    assert claim(store, "s", keys[:10_000] + [5]).claimed == [5]


def test_small_seen_sets_are_flat_little_endian_keys_in_claim_order(store, client):
    claim(store, "s", [0x01020304, 0x05060708, 7])
    claim(store, "s", [0x05060708, 9])
    assert client.hkeys("vs:{s}:k") == [b"a"]
    assert client.hget("vs:{s}:k", "a") == struct.pack("<4I", 0x01020304, 0x05060708, 7, 9)
    # 0x07080102's bytes (02 01 08 07) occur in the set across two keys: not a member.
    assert store.seen_among("s", [0x07080102, 9, 0x05060708, 8]) == [9, 0x05060708]
    assert claim(store, "s", [0x07080102, 7]).claimed == [0x07080102]


def test_a_flat_seen_set_past_1024_keys_moves_into_buckets_whole(store, client):
    keys = random.Random(11).sample(range(1, 300_000), 1100)
    claim(store, "s", keys[:1000])
    assert client.hkeys("vs:{s}:k") == [b"a"]
    claim(store, "s", keys[1000:1030])
    fields = client.hkeys("vs:{s}:k")
    assert b"a" not in fields and sorted(fields) == sorted({str(key >> 16).encode() for key in keys[:1030]})
    assert sorted(store.seen_among("s", keys)) == sorted(keys[:1030])
    assert claim(store, "s", keys).claimed == keys[1030:]
    assert store.summary("s").served_items_count == 1100


def test_array_containers_hold_little_endian_lows_in_claim_order(store, client):
    claim(store, "s", list(range(5 * 65_536, 5 * 65_536 + 1025)))  # past the flat form: buckets
    claim(store, "s", [3 * 65_536 + 513, 3 * 65_536 + 2, 3 * 65_536 + 300, 7])
    claim(store, "s", [3 * 65_536 + 1, 3 * 65_536 + 2, 8])
    assert client.hget("vs:{s}:k", "3") == bytes([1, 2, 2, 0, 44, 1, 1, 0])
    assert client.hget("vs:{s}:k", "0") == bytes([7, 0, 8, 0])
    assert store.seen_among("s", [3 * 65_536 + 1, 3 * 65_536 + 3, 3 * 65_536 + 256, 8, 9]) == [3 * 65_536 + 1, 8]


def test_keys_outside_32_bits_are_refused(store):
    with pytest.raises(ValueError):
        store.claim_unseen("s", "f", generation=0, expect_cursor=0, expect_plan=None, plan="p", domain=10,
                           candidates=[(0, 2**32)], scanned_to=1, want=1, page=(0, 1))
    assert store.summary("s") is None


# --- Scripts lost, outages, fork ----------------------------------------------------------


def test_scripts_are_reloaded_after_script_flush(store, client):
    claim(store, "s", [1])
    for operation in (lambda: claim(store, "s", [2]), lambda: store.seen_among("s", [1, 2]),
                      lambda: store.summary("s"), lambda: store.reset("s"), lambda: claim(store, "s", [1])):
        client.script_flush()
        operation()
    assert store.summary("s").generation == 1
    assert store.read_feed("s", "f", 0, 5).keys == [1]


def _timed(call):
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    return time.monotonic() - started


def test_outage_raises_store_unavailable_quickly_and_recovers(redis_server_factory):
    server = redis_server_factory()
    store = RedisSessionStore(server.url, ttl=60)
    claim(store, "s", [1])
    assert store.ping()
    server.stop()
    for operation in (lambda: store.read_feed("s", "f", 0, 1), lambda: claim(store, "s", [2]),
                      lambda: store.reset("s"), store.session_count, lambda: store.summary("s")):
        assert _timed(operation) < 5
    assert store.ping() is False
    server.start()  # same port, empty (no persistence): the same store object serves again
    assert store.ping()
    assert claim(store, "s", [1]).claimed == [1]
    store.close()


def test_a_server_that_never_answers_times_out_within_the_retry_budget():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections (in the kernel) and never replies
    try:
        # Default settings: 3 attempts of 0.5 s plus backoff (about 1.6 s), not redis-py's nested retries.
        store = RedisSessionStore(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", ttl=60)
        assert _timed(lambda: store.read_feed("s", "f", 0, 1)) < 5
        store.close()
    finally:
        listener.close()


def test_closed_port_is_a_503_envelope_not_a_hang():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": f"redis://127.0.0.1:{port}/0"})
    started = time.monotonic()
    response = app.test_client().post("/api/reset-session?session_id=abc")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.get_json()
    assert body["success"] is False and body["error_code"] == "SESSION_STORE_UNAVAILABLE"
    assert app.test_client().get("/health").status_code == 503
    app.extensions["viralspot.session_store"].close()


def test_busy_and_read_only_errors_mean_unavailable():
    from redis import exceptions

    assert is_unavailable(exceptions.ConnectionError("refused"))
    assert is_unavailable(exceptions.BusyLoadingError("loading"))
    assert is_unavailable(exceptions.AuthenticationError("bad password"))
    assert is_unavailable(exceptions.TimeoutError("slow"))
    assert is_unavailable(exceptions.ReadOnlyError("READONLY You can't write against a read only replica."))
    assert is_unavailable(exceptions.ResponseError("BUSY Redis is busy running a script."))
    assert is_unavailable(exceptions.ClusterDownError("CLUSTERDOWN"))
    assert is_unavailable(exceptions.TryAgainError("TRYAGAIN"))
    assert not is_unavailable(exceptions.ResponseError("ERR wrong number of arguments"))
    assert not is_unavailable(exceptions.DataError("bad value"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_its_own_connection(store):
    claim(store, "s", [1])
    parent_id = store.client.client_id()

    def child():
        child_id = store.client.client_id()
        ok = store.ping() and claim(store, "s", [2]).claimed == [2] and child_id != parent_id
        return ok, f"{child_id}".encode()

    exit_code, answer = in_forked_child(child)
    assert exit_code == 0
    assert int(answer or b"0") != parent_id
    # The parent's pooled connection survived the child's exit.
    assert store.client.client_id() == parent_id
    assert store.read_feed("s", "f", 0, 5).keys == [1, 2]


def _named_connections(client, name: str) -> int:
    """The server's connections named ``name`` (``?client_name=``): those of one store only, not
    the ones of earlier tests' stores that the garbage collector has yet to close."""
    return sum(1 for entry in client.client_list() if entry.get("name") == name)


@contextlib.contextmanager
def _threads_that_paged(store, count: int = 3):
    """``count`` threads that each claimed 3 pages of their own session and then stay alive (so
    their connections do) until the block ends; yields what their claims returned."""
    paged, release = threading.Barrier(count + 1), threading.Event()
    outcomes = []

    def page(index: int) -> None:
        for step in range(3):
            outcomes.append(claim(store, f"t{index}", [10 * index + step + 1]).claimed)
        paged.wait(timeout=30)
        release.wait(timeout=30)

    threads = [threading.Thread(target=page, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    try:
        paged.wait(timeout=30)
        assert sorted(outcomes) == sorted([[10 * index + step + 1] for index in range(count) for step in range(3)])
        yield outcomes
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)


def test_each_thread_round_trips_on_its_own_connection_until_close(redis_clean, client):
    store = RedisSessionStore(redis_clean.url + "?client_name=own-links")
    # The pool's one connection, and the scripts loaded (through it) before the threads run, or
    # each thread's first NOSCRIPT would borrow a pool connection of its own to load them.
    store.ping()
    claim(store, "main", [1])
    assert _named_connections(client, "own-links") == 2  # the pool's and this thread's
    with _threads_that_paged(store):
        assert _named_connections(client, "own-links") == 2 + 3  # one per thread, for its 6 round trips
        store.close()
        deadline = time.monotonic() + 10
        while _named_connections(client, "own-links") > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _named_connections(client, "own-links") == 0


def test_threads_beyond_max_connections_share_the_pool(redis_clean, client):
    store = RedisSessionStore(redis_clean.url + "?client_name=capped", options=ClientOptions(max_connections=1))
    store.ping()  # the pool's one connection
    claim(store, "main", [1])  # this thread's own connection: the one allowed
    try:
        with _threads_that_paged(store):
            assert _named_connections(client, "capped") == 2  # this thread's and the pool's one
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
        assert claim(store, "s", [1, 2]).claimed == [1, 2]
        with redis_clean.client() as client:
            assert client.exists("vs:{s}:m")
        store.close()
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
