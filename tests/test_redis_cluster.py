"""The Redis session store on Redis Cluster (``redis+cluster://``): URLs, error mapping, the sharded
active-session index, round trips, an outage, and the random-feed properties end to end.

A real 3-master cluster on loopback ports (``redis_cluster`` in tests/redis_fixtures.py, started
once per test session; the backend contract of test_store_contract.py also runs on it as the
"redis-cluster" variant of ``store_backend``). Skips without redis-server/redis-cli, except
under CI (env CI set), where that is a failure.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import zlib
from collections import Counter

import pytest
import redis
from redis.crc import key_slot

from redis_fixtures import ManualClock, in_forked_child
from session_helpers import drain, page
from viralspot import create_app
from viralspot.store import StoreUnavailable, backend_from_url
from viralspot.store.redis_store import (CLUSTER_INDEX_SHARDS, INDEX_KEY, RedisSessionStore,
                                         index_keys, index_shard, is_unavailable, parse_store_url, session_keys)

pytestmark = pytest.mark.redis

CONFIG = {"SESSION_TTL": 3600, "SESSION_MAX": 10, "SESSION_MAX_FEEDS": 64}
CATALOG_ITEMS = 800


def claim(store, session_id, keys, feed="f"):
    view = store.read_feed(session_id, feed, 0, 0)
    result = store.claim_unseen(
        session_id, feed, generation=view.generation, expect_cursor=view.cursor, expect_plan=view.plan,
        plan="p", domain=10**9, candidates=list(enumerate(keys, start=view.cursor)),
        scanned_to=view.cursor + len(keys), want=len(keys), page=(view.served_count, view.served_count + len(keys)))
    assert result.ok
    return result


def node_of(cluster, key: str) -> int:
    """Index (in ``cluster.nodes``) of the master that serves ``key``: the others answer MOVED."""
    owners = []
    for index, node in enumerate(cluster.nodes):
        with node.client() as client:
            try:
                client.exists(key)
            except redis.exceptions.MovedError:
                continue
        owners.append(index)
    assert len(owners) == 1, (key, owners)
    return owners[0]


def node_stat(cluster, name: str) -> int:
    """Calls of command ``name`` (commandstats name, e.g. "evalsha", "command|getkeys") on all nodes."""
    total = 0
    for node in cluster.nodes:
        with node.client() as client:
            total += int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))
    return total


@pytest.fixture
def store(redis_cluster_clean):
    clock = ManualClock()  # of the once-a-second index touch
    backend = RedisSessionStore(redis_cluster_clean.url(2), ttl=3600, max_feeds=8, clock=clock)
    backend.touch_clock = clock
    yield backend
    backend.close()


# --- URLs, configuration, error mapping (no server) ------------------------------------------


def test_cluster_urls_name_startup_nodes_and_database_0_only():
    parsed = parse_store_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7001")
    assert parsed.scheme == "redis+cluster" and parsed.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert parsed.pool_kwargs == {}
    assert parse_store_url("redis+cluster://h:7000/0").nodes == [("h", 7000)]
    full = parse_store_url("redis+cluster://app:s%40cret@[::1]:7000,h2:7001/?socket_timeout=2")
    assert full.nodes == [("::1", 7000), ("h2", 7001)]
    assert full.pool_kwargs == {"username": "app", "password": "s@cret", "socket_timeout": 2.0}


def test_url_options_override_the_settings(redis_cluster_clean):
    store = RedisSessionStore(redis_cluster_clean.url(1) + "?socket_timeout=2&max_connections=3", ttl=60)
    try:
        node = store.client.get_primaries()[0].redis_connection.connection_pool
        assert node.connection_kwargs["socket_timeout"] == 2.0 and node.max_connections == 3
        assert node.connection_kwargs["socket_connect_timeout"] == 0.5
        assert claim(store, "s", [1]).claimed == [1]
    finally:
        store.close()


def test_backend_from_url_builds_the_cluster_store_without_connecting():
    backend = backend_from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2",
                               {**CONFIG, "SESSION_STORE_SOCKET_TIMEOUT": 0.2})
    assert isinstance(backend, RedisSessionStore) and backend.cluster and backend.storage_type == "redis"
    assert backend.options.socket_timeout == 0.2 and backend._connection is None
    assert len(backend.index_keys) == CLUSTER_INDEX_SHARDS
    assert not backend_from_url("redis://127.0.0.1:1/0", CONFIG).cluster


def test_cluster_errors_that_mean_cannot_serve_now_are_unavailable():
    from redis import exceptions

    assert is_unavailable(exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"))
    assert is_unavailable(exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"))
    assert is_unavailable(exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"))
    assert is_unavailable(exceptions.ClusterError("TTL exhausted."))  # MOVED/ASK redirections exhausted
    assert is_unavailable(exceptions.SlotNotCoveredError('Slot "3999" is not covered by the cluster.'))
    assert is_unavailable(exceptions.RedisClusterException(
        "Redis Cluster cannot be connected. Please provide at least one reachable node: refused"))
    assert is_unavailable(exceptions.MaxConnectionsError("Too many connections"))
    # Bugs, not outages: a 500. (The cluster client follows MOVED/ASK itself; from a plain client
    # they mean a redis:// URL names a cluster node.)
    assert not is_unavailable(exceptions.MovedError("3999 127.0.0.1:6381"))
    assert not is_unavailable(exceptions.RedisClusterException("EVALSHA - all keys must map to the same key slot"))
    assert not is_unavailable(exceptions.ClusterCrossSlotError("CROSSSLOT Keys in request don't hash to the same slot"))


def test_index_shards_are_single_slot_pairs_and_a_stable_hash_of_the_session():
    shards = index_keys(CLUSTER_INDEX_SHARDS)
    assert len(shards) == CLUSTER_INDEX_SHARDS == len({key for key, _ in shards})
    for key, guard in shards:
        assert key_slot(key.encode()) == key_slot(guard.encode())
    assert index_keys(1) == ((INDEX_KEY, "{vs:active}:trim"),)
    assert index_shard("user-1", 16) == zlib.crc32(b"user-1") % 16 and index_shard("x", 1) == 0
    spread = Counter(index_shard(f"session-{n}", 16) for n in range(1600))
    assert len(spread) == 16 and min(spread.values()) > 50


def test_unreachable_cluster_is_a_503_envelope_not_a_hang():
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)
    store = RedisSessionStore(url, ttl=60)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.read_feed("s", "f", 0, 1)
    assert time.monotonic() - started < 5
    assert store.ping() is False
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": url})
    response = app.test_client().post("/api/reset-session?session_id=abc")
    assert response.status_code == 503
    assert response.get_json()["error_code"] == "SESSION_STORE_UNAVAILABLE"
    assert app.test_client().get("/health").status_code == 503
    app.extensions["viralspot.session_store"].close()


# --- The store on a real cluster -------------------------------------------------------------


def test_the_client_discovers_every_master_from_two_startup_nodes(store, redis_cluster_clean):
    assert store.ping()
    masters = {node.name for node in store.client.get_primaries()}
    assert masters == {f"127.0.0.1:{port}" for port in redis_cluster_clean.ports}
    stats = store.stats()
    assert stats["cluster_masters"] == 3 and stats["used_memory"] > 0 and stats["redis_version"]


def test_sessions_and_index_shards_spread_over_the_masters(store, redis_cluster_clean):
    sessions = [f"spread-{n}" for n in range(48)]
    for session_id in sessions:
        claim(store, session_id, [1, 2, 3])
    per_node = Counter()
    for session_id in sessions:
        homes = {node_of(redis_cluster_clean, key) for key in session_keys(session_id)}
        assert len(homes) == 1  # all of a session's keys in its slot
        per_node[homes.pop()] += 1
    assert len(per_node) == 3, per_node
    clients = redis_cluster_clean.clients()
    try:
        stored = Counter()
        for index, client in enumerate(clients):
            stored[index] = sum(1 for _ in client.scan_iter(match="vs:{spread-*}:m"))
        assert stored == per_node  # each session's data is on the master that owns its slot
        indexed = Counter()
        for key, _guard in store.index_keys:
            owner = node_of(redis_cluster_clean, key)
            indexed[owner] += clients[owner].zcard(key)
        assert sum(indexed.values()) == len(sessions) and len([n for n in indexed.values() if n]) >= 2
        assert clients[node_of(redis_cluster_clean, INDEX_KEY)].exists(INDEX_KEY) == 0  # no global index
    finally:
        for client in clients:
            client.close()
    assert store.session_count() == len(sessions) == store.stats()["indexed_sessions"]


def test_session_ids_merge_the_shards_most_recent_first(store):
    names = [f"recent-{n}" for n in range(20)]
    assert len({index_shard(name, CLUSTER_INDEX_SHARDS) for name in names}) > 5
    for name in names:
        claim(store, name, [1])
    store.touch_clock.now += 1.0  # a process touches a session's index entry at most once a second
    store.read_feed("recent-3", "f", 0, 1)
    expected = ["recent-3"] + [name for name in reversed(names) if name != "recent-3"]
    assert store.session_ids() == expected
    assert store.session_ids(limit=4) == expected[:4]
    assert store.reset("recent-7").total_active_sessions == 19
    assert store.session_count() == 19 and "recent-7" not in store.session_ids()


def test_a_page_is_two_round_trips_and_asks_no_node_for_keys(store, redis_cluster_clean, monkeypatch):
    """Per operation one pipeline, split by node (written to every node, then read); EVALSHA routed
    by its KEYS on the client, not by a ``COMMAND GETKEYS`` round trip per script."""
    claim(store, "warm", [1])  # loads the scripts on the nodes it reaches
    store.session_count()
    pipelines = []
    real = RedisSessionStore._pipeline

    def counted(connection, calls):
        pipelines.append([name for name, _keys, _args in calls])
        return real(connection, calls)

    monkeypatch.setattr(RedisSessionStore, "_pipeline", staticmethod(counted))
    getkeys, evalsha = node_stat(redis_cluster_clean, "command|getkeys"), node_stat(redis_cluster_clean, "evalsha")
    for n in range(8):
        claim(store, f"page-{n}", [1, 2, 3])  # a page: read the feed, then claim
    assert pipelines == [["read_feed", "touch"], ["claim", "touch"]] * 8
    assert node_stat(redis_cluster_clean, "evalsha") - evalsha == 4 * 8
    assert store.session_count() == 9
    assert len(pipelines[-1]) == CLUSTER_INDEX_SHARDS  # one pipeline: the count of every shard
    assert node_stat(redis_cluster_clean, "command|getkeys") == getkeys


def test_scripts_lost_on_every_master_are_reloaded(store, redis_cluster_clean):
    claim(store, "s", [1])
    for operation in (lambda: claim(store, "s", [2]), lambda: store.seen_among("s", [1, 2]),
                      lambda: store.summary("s"), lambda: store.reset("s"), lambda: claim(store, "s", [1]),
                      store.session_count, store.session_ids):
        store.client.script_flush()  # on every master
        operation()
    assert store.summary("s").generation == 1
    assert store.read_feed("s", "f", 0, 5).keys == [1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_cluster_client(store):
    claim(store, "s", [1])
    parent = store.client

    def child():
        ok = store.client is not parent and store.ping() and claim(store, "s", [2]).claimed == [2]
        return ok, b"ok" if ok else b"no"

    assert in_forked_child(child) == (0, b"ok")
    assert store.client is parent  # the parent's client and its connections survived the child
    assert store.read_feed("s", "f", 0, 5).keys == [1, 2]


def test_a_stopped_master_is_unavailable_quickly_then_served_again():
    """A dedicated cluster (the shared one stays up): one master stops; the sessions it holds get
    StoreUnavailable within the retry budget; once it is back, the same store object serves them."""
    from redis_fixtures import RedisClusterServers, _require_redis_cli, _require_redis_server

    cluster = RedisClusterServers(_require_redis_server("redis-cluster"), _require_redis_cli())
    try:
        cluster.start()
        store = RedisSessionStore(cluster.url(), ttl=60)
        victim = next(f"v-{n}" for n in range(1000) if node_of(cluster, f"vs:{{v-{n}}}:m") == 2)
        claim(store, victim, [1])
        cluster.nodes[2].stop()
        for operation in (lambda: store.read_feed(victim, "f", 0, 1), lambda: claim(store, victim, [2]),
                          lambda: store.summary(victim)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                operation()
            assert time.monotonic() - started < 5
        assert store.ping() is False
        cluster.nodes[2].start()  # same port and nodes.conf: it rejoins (empty, no persistence)
        deadline = time.monotonic() + 30
        while True:
            try:
                if store.ping() and claim(store, victim, [1]).claimed == [1]:
                    break
            except StoreUnavailable:
                pass
            assert time.monotonic() < deadline, "the cluster did not serve again"
            time.sleep(0.2)
        store.close()
    finally:
        cluster.remove()


# --- The random-feed properties end to end (Flask test client, cluster store) ----------------


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('cluster-catalog')}/catalog.db"
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(CATALOG_ITEMS), "--seed", "7"])
    assert result.exit_code == 0, result.output
    app.extensions["viralspot.catalog"].dispose()
    return url


@pytest.fixture
def cluster_app(catalog_url, redis_cluster_clean):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": catalog_url,
                      "SESSION_STORE_URL": redis_cluster_clean.url(2)})
    assert app.extensions["viralspot.session_store"].cluster
    yield app
    app.extensions["viralspot.session_store"].close()
    app.extensions["viralspot.catalog"].dispose()


@pytest.fixture
def client(cluster_app):
    return cluster_app.test_client()


def all_ids(client, path="/api/reels", **filters):
    ids, offset = [], 0
    while True:
        data = client.get(path, query_string={"limit": 100, "offset": offset, **filters}).get_json()["data"]
        ids.extend(item["id"] for item in data["reels"])
        offset += 100
        if data["isLastPage"]:
            return ids


def test_draining_serves_every_item_exactly_once(client):
    served = drain(client, "drain")[0]
    assert len(served) == len(set(served))
    assert set(served) == set(all_ids(client)) and len(served) > 100
    assert page(client, "drain", offset=len(served) + 50) == ([], True)


def test_no_item_twice_across_reels_and_posts(client):
    first, _ = page(client, "mixed", limit=100)
    rest = drain(client, "mixed", limit=100)[0][100:]
    reels = first + rest
    assert len(reels) == len(set(reels)) and set(reels) == set(all_ids(client))
    posts = drain(client, "mixed", path="/api/posts", content_types="reel,post")[0]
    assert not set(posts) & set(reels)
    assert set(posts) == set(all_ids(client, path="/api/posts"))


def test_replaying_a_page_gives_the_same_items(client, cluster_app):
    third, _ = page(client, "seq", offset=48)
    first, _ = page(client, "seq", offset=0)
    assert page(client, "seq", offset=48)[0] == third and page(client, "seq", offset=0)[0] == first
    second, _ = page(client, "seq", offset=24)
    sequence = first + second + third
    assert len(set(sequence)) == 72
    assert page(client, "seq", offset=40, limit=16)[0] == sequence[40:56]
    assert cluster_app.extensions["viralspot.session_store"].summary("seq").served_items_count == 72


def test_reset_clears_the_exact_count_and_ends_the_session(client):
    page(client, "bystander", limit=10)
    before = page(client, "again", limit=40)[0] + page(client, "again", offset=40, limit=40)[0]
    assert client.get("/api/sessions/again").get_json()["data"]["session"]["served_items_count"] == 80
    body = client.post("/api/reset-session?session_id=again").get_json()
    assert body["data"]["session_reset"]["cleared_items_count"] == 80
    assert body["data"]["session_reset"]["session_found"] is True
    assert body["data"]["server_info"] == {"total_active_sessions": 1, "session_storage_type": "redis"}
    response = client.get("/api/sessions/again")
    assert response.status_code == 404 and response.get_json()["error_code"] == "SESSION_NOT_FOUND"
    served = drain(client, "again")[0]  # a fresh order: previously seen items come back
    assert served[:80] != before and set(served) == set(all_ids(client))


def test_many_sessions_spread_over_the_masters_and_are_counted(client, cluster_app, redis_cluster_clean):
    sessions = [f"crowd-{n}" for n in range(40)]
    for session_id in sessions:
        assert len(page(client, session_id, limit=5)[0]) == 5
    clients = redis_cluster_clean.clients()
    try:
        holding = [sum(1 for _ in c.scan_iter(match="vs:{crowd-*}:m")) for c in clients]
    finally:
        for c in clients:
            c.close()
    assert sum(holding) == len(sessions) and sum(1 for n in holding if n) >= 2, holding
    store = cluster_app.extensions["viralspot.session_store"]
    assert store.session_count() == len(sessions)
    assert sorted(store.session_ids(limit=100)) == sorted(sessions)
    for session_id in sessions[:10]:
        client.post(f"/api/reset-session?session_id={session_id}")
    body = client.post("/api/reset-session?session_id=crowd-10").get_json()
    assert body["data"]["server_info"]["total_active_sessions"] == len(sessions) - 11
    assert store.session_count() == len(sessions) - 11 == store.stats()["indexed_sessions"]


def test_concurrent_pages_of_one_session_share_no_item(cluster_app):
    page(cluster_app.test_client(), "warm-up")
    results, barrier = {}, threading.Barrier(6)

    def fetch(offset):
        client = cluster_app.test_client()
        barrier.wait()
        results[offset] = page(client, "tabs", offset=offset)[0]

    threads = [threading.Thread(target=fetch, args=(i * 24,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = [item for offset in sorted(results) for item in results[offset]]
    assert len(served) == 6 * 24 == len(set(served))


def test_a_random_page_costs_one_round_trip_on_both_kinds_of_redis(catalog_url, redis_clean, redis_cluster_clean,
                                                                    monkeypatch):
    """Standalone: a session's first page is 1 round trip (a claim on the presumed new feed,
    pipelined on one connection with the index touch); its next page in order is 1 (a claim on the
    feed as this process left it), with no touch within the second after the last; a replay is 1
    (the claim on the presumed view fails and answers the page). Cluster: the same pipelines, each
    split by node and sent to the nodes before any reply is read."""
    pipelines = []
    real = RedisSessionStore._pipeline

    def counted(connection, calls):
        pipelines.append(len(calls))
        return real(connection, calls)

    for url in (redis_clean.url, redis_cluster_clean.url(2)):
        app = create_app({"CONFIG": "testing", "DATABASE_URL": catalog_url, "SESSION_STORE_URL": url})
        client = app.test_client()
        try:
            page(client, "warm-up")
            app.extensions["viralspot.session_store"]._clock = ManualClock()  # the touch's second never ends
            monkeypatch.setattr(RedisSessionStore, "_pipeline", staticmethod(counted))
            for n in range(5):
                for offset in (0, 24):
                    pipelines.clear()
                    assert len(page(client, f"trips-{n}", offset=offset)[0]) == 24
                    # claim + touch; then the next page: the claim alone
                    assert pipelines == ([2] if offset == 0 else [1]), (url, offset, pipelines)
                pipelines.clear()
                page(client, f"trips-{n}", offset=0)  # a replayed page (not the last): the failed claim
                assert pipelines == [1], (url, pipelines)
            monkeypatch.undo()
        finally:
            app.extensions["viralspot.session_store"].close()
            app.extensions["viralspot.catalog"].dispose()
