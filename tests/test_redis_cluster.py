"""The Redis session store on Redis Cluster (``redis+cluster://``): URLs, error mapping, the sharded
active-session index, round trips, an outage, and the random-feed properties end to end (Flask
test client, and real gunicorn workers).

A real 3-master cluster on loopback ports (``redis_cluster`` in tests/redis_fixtures.py, started
once per test session; the backend contract of test_store_contract.py and the feed property
machine of test_feed_properties.py also run on it as the "redis-cluster" variant of
``store_backend``). Skips without redis-server/redis-cli, except under CI (env CI set), where
that is a failure.

A session is one hash ``vs2:{S}`` in its own slot; the index is 16 ZSETs ``vs2:active:{i}``, each
in its own slot. On a cluster a session's page is one script, and the index touch another (in
another slot) after a served page, at most once per ``index_touch_interval`` per session and
process. (The old layout's key pairs, read-then-claim pipelines and generations are gone.)
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

from gunicorn_servers import GunicornServer, plain_ids, run_threads, seed_catalog
from redis_fixtures import in_forked_child
from session_helpers import REELS_FEED, SEED, drain, page, serve
from test_multiprocess import check_a_reset_is_seen_by_every_worker
from test_multiprocess import drain as drain_over_http
from test_multiprocess import flat, repeated
from viralspot import create_app
from viralspot.store import FeedView, PageStatus, StoreUnavailable, backend_from_url
from viralspot.store.redis_errors import is_unavailable
from viralspot.store.redis_store import (CLUSTER_INDEX_SHARDS, INDEX_KEY, ClientOptions, RedisSessionStore,
                                         index_keys, index_shard, session_key)
from viralspot.store.redis_url import parse_store_url

pytestmark = pytest.mark.redis

CONFIG = {"SESSION_TTL": 3600, "SESSION_MAX": 10, "SESSION_MAX_FEEDS": 64, "SESSION_MAX_ITEMS": 1000,
          "SESSION_STORE_CONNECT_TIMEOUT": 0.5, "SESSION_STORE_SOCKET_TIMEOUT": 0.5, "SESSION_STORE_RETRIES": 2,
          "SESSION_STORE_MAX_CONNECTIONS": 32}
CATALOG_ITEMS = 800


def read(store, session_id, feed=REELS_FEED, limit=10**6):
    """The positions a feed holds (a read: nothing is created or served)."""
    result = store.serve_page(session_id, feed, FeedView(SEED, (10**6,)), offset=0, limit=limit, max_ahead=10**9)
    return result.positions if result.status is PageStatus.SERVED else None


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
    backend = RedisSessionStore(redis_cluster_clean.url(2), ttl=3600, max_feeds=8,
                                options=ClientOptions(index_touch_interval=0))  # every page touches the index
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
    for bad in ("redis+cluster://h:7000/1", "redis+cluster://", "redis+cluster://h:x"):
        with pytest.raises(ValueError):
            parse_store_url(bad)


def test_url_options_override_the_settings(redis_cluster_clean):
    store = RedisSessionStore(redis_cluster_clean.url(1) + "?socket_timeout=2&max_connections=3", ttl=60)
    try:
        node = store.client.get_primaries()[0].redis_connection.connection_pool
        assert node.connection_kwargs["socket_timeout"] == 2.0 and node.max_connections == 3
        assert node.connection_kwargs["socket_connect_timeout"] == 0.5
        assert serve(store, "s", [1]).positions == [1]
    finally:
        store.close()


def test_backend_from_url_builds_the_cluster_store_without_connecting():
    backend = backend_from_url("redis+cluster://127.0.0.1:1,127.0.0.1:2",
                               {**CONFIG, "SESSION_STORE_SOCKET_TIMEOUT": 0.2})
    assert isinstance(backend, RedisSessionStore) and backend.cluster and backend.storage_type == "redis"
    assert backend.options.socket_timeout == 0.2 and backend._connection is None
    assert len(backend.index_keys) == CLUSTER_INDEX_SHARDS
    assert (backend.max_feeds, backend.max_items) == (64, 1000)
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


def test_index_shards_are_keys_in_their_own_slots_and_a_stable_hash_of_the_session():
    shards = index_keys(CLUSTER_INDEX_SHARDS)
    assert len(shards) == CLUSTER_INDEX_SHARDS == len(set(shards))
    assert len({key_slot(key.encode()) for key in shards}) == CLUSTER_INDEX_SHARDS
    assert all(key.startswith(f"{INDEX_KEY}:{{") for key in shards)
    assert index_keys(1) == (INDEX_KEY,)
    assert index_shard("user-1", 16) == zlib.crc32(b"user-1") % 16 and index_shard("x", 1) == 0
    spread = Counter(index_shard(f"session-{n}", 16) for n in range(1600))
    assert len(spread) == 16 and min(spread.values()) > 50
    # A session's hash is in the slot of its id's hash tag.
    assert key_slot(session_key("abc").encode()) == key_slot(b"abc") and session_key("abc") == "vs2:{abc}"


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
        read(store, "s")
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
        serve(store, session_id, [1, 2, 3])
    per_node = Counter(node_of(redis_cluster_clean, session_key(session_id)) for session_id in sessions)
    assert len(per_node) == 3, per_node
    clients = redis_cluster_clean.clients()
    try:
        stored = Counter()
        for index, client in enumerate(clients):
            stored[index] = sum(1 for _ in client.scan_iter(match="vs2:{spread-*}"))
        assert stored == per_node  # each session (one key) is on the master that owns its slot
        indexed = Counter()
        for key in store.index_keys:
            owner = node_of(redis_cluster_clean, key)
            indexed[owner] += clients[owner].zcard(key)
        assert sum(indexed.values()) == len(sessions) and len([n for n in indexed.values() if n]) >= 2
        assert clients[node_of(redis_cluster_clean, INDEX_KEY)].exists(INDEX_KEY) == 0  # no global index
        assert not [key for client in clients for key in client.scan_iter(match="vs:*")]  # no old layout
    finally:
        for client in clients:
            client.close()
    assert store.session_count() == len(sessions)


def test_session_ids_merge_the_shards_most_recent_first(store, redis_cluster_clean):
    names = [f"recent-{n}" for n in range(20)]
    assert len({index_shard(name, CLUSTER_INDEX_SHARDS) for name in names}) > 5
    for name in names:
        serve(store, name, [1])
    read(store, "recent-3")  # touched again, last
    scores = {}
    clients = redis_cluster_clean.clients()
    try:
        for key in store.index_keys:
            client = clients[node_of(redis_cluster_clean, key)]
            scores.update({member.decode(): score for member, score in client.zrange(key, 0, -1, withscores=True)})
    finally:
        for client in clients:
            client.close()
    assert set(scores) == set(names)
    assert scores["recent-3"] == max(scores.values())
    listed = store.session_ids()
    assert sorted(listed) == sorted(names)
    assert [scores[name] for name in listed] == sorted(scores.values(), reverse=True)  # merged, newest first
    assert store.session_ids(limit=4) == listed[:4] and store.session_ids(limit=0) == []
    assert store.reset("recent-7").total_active_sessions == 19
    assert store.session_count() == 19 and "recent-7" not in store.session_ids()


def test_a_page_is_one_script_and_asks_no_node_for_keys(redis_cluster_clean):
    """A session's page is one EVALSHA on its master, plus the index touch (another slot) after a
    served page at most once per touch interval; EVALSHA is routed by its KEYS on the client,
    never by a ``COMMAND GETKEYS`` round trip."""
    store = RedisSessionStore(redis_cluster_clean.url(2), ttl=3600, options=ClientOptions(index_touch_interval=3600))
    try:
        serve(store, "warm", [1])  # loads the scripts on the nodes it reaches
        store.session_count()
        getkeys, evalsha = node_stat(redis_cluster_clean, "command|getkeys"), node_stat(redis_cluster_clean, "evalsha")
        view = FeedView(SEED, (10**6,))
        for n in range(8):
            session_id = f"page-{n}"
            first = store.serve_page(session_id, REELS_FEED, view, offset=0, limit=3, max_ahead=10,
                                     candidates=[1, 2, 3, 4], scanned_to=5, create=True)
            assert first.status is PageStatus.SERVED and first.positions == [1, 2, 3]
            second = store.serve_page(session_id, REELS_FEED, first.view, offset=3, limit=3, max_ahead=10,
                                      candidates=[4, 5, 6, 7], scanned_to=8)
            assert second.positions == [4, 5, 6]
        # Per session: its first page and its touch, then its second page alone.
        assert node_stat(redis_cluster_clean, "evalsha") - evalsha == 3 * 8
        assert store.session_count() == 9
        assert node_stat(redis_cluster_clean, "command|getkeys") == getkeys
    finally:
        store.close()


def test_scripts_lost_on_every_master_are_reloaded(store, redis_cluster_clean):
    serve(store, "s", [1])
    for operation in (lambda: serve(store, "s", [2]), lambda: read(store, "s"), lambda: store.summary("s"),
                      lambda: store.reset("s"), lambda: serve(store, "s", [1]), store.session_count,
                      store.session_ids):
        store.client.script_flush()  # on every master
        operation()
    assert store.summary("s").served_items_count == 1
    assert read(store, "s") == [1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_makes_its_own_cluster_client(store):
    serve(store, "s", [1])
    parent = store.client

    def child():
        ok = store.client is not parent and store.ping() and serve(store, "s", [2]).positions == [2]
        return ok, b"ok" if ok else b"no"

    assert in_forked_child(child) == (0, b"ok")
    assert store.client is parent  # the parent's client and its connections survived the child
    assert read(store, "s") == [1, 2]


def test_a_stopped_master_is_unavailable_quickly_then_served_again():
    """A dedicated cluster (the shared one stays up): one master stops; the sessions it holds get
    StoreUnavailable within the retry budget; once it is back, the same store object serves them."""
    from redis_fixtures import ClusterNode, RedisClusterServers, _require_redis_cli, _require_redis_server

    cluster = RedisClusterServers(_require_redis_server("redis-cluster"), _require_redis_cli(), node_class=ClusterNode)
    try:
        cluster.start()
        store = RedisSessionStore(cluster.url(), ttl=60)
        victim = next(f"v-{n}" for n in range(1000) if node_of(cluster, session_key(f"v-{n}")) == 2)
        serve(store, victim, [1])
        cluster.nodes[2].stop()
        for operation in (lambda: read(store, victim), lambda: serve(store, victim, [2]),
                          lambda: store.summary(victim)):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                operation()
            assert time.monotonic() - started < 5
        # Readiness follows the cluster's own state: ok until the others mark the master failed
        # (cluster-node-timeout), then fail (Redis's default needs every slot served).
        deadline = time.monotonic() + 20
        while True:
            with cluster.nodes[0].client() as live:
                if live.execute_command("CLUSTER INFO")["cluster_state"] == "fail":
                    break
            assert time.monotonic() < deadline, "the cluster did not mark the master failed"
            time.sleep(0.05)
        assert store.ping() is False
        cluster.nodes[2].start()  # same port and nodes.conf: it rejoins (empty, no persistence)
        deadline = time.monotonic() + 30
        while True:
            try:
                if store.ping() and serve(store, victim, [1]).positions == [1]:
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
    assert len(set(served[:40]) & set(before[:40])) < 10 and set(served) == set(all_ids(client))


def test_many_sessions_spread_over_the_masters_and_are_counted(client, cluster_app, redis_cluster_clean):
    sessions = [f"crowd-{n}" for n in range(40)]
    for session_id in sessions:
        assert len(page(client, session_id, limit=5)[0]) == 5
    clients = redis_cluster_clean.clients()
    try:
        holding = [sum(1 for _ in c.scan_iter(match="vs2:{crowd-*}")) for c in clients]
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
    assert store.session_count() == len(sessions) - 11


def test_concurrent_pages_of_one_session_share_no_item(cluster_app):
    page(cluster_app.test_client(), "warm-up")
    results, barrier = {}, threading.Barrier(6)

    def fetch(offset):
        client = cluster_app.test_client()
        barrier.wait(timeout=30)
        results[offset] = page(client, "tabs", offset=offset)[0]

    run_threads([lambda offset=i * 24: fetch(offset) for i in range(6)], timeout=60)
    served = [item for offset in sorted(results) for item in results[offset]]
    assert len(served) == 6 * 24 == len(set(served))


def test_two_apps_sharing_the_cluster_serve_a_session_the_same_pages(catalog_url, redis_cluster_clean):
    apps = [create_app({"CONFIG": "testing", "DATABASE_URL": catalog_url,
                        "SESSION_STORE_URL": redis_cluster_clean.url(count)}) for count in (1, 3)]
    try:
        a, b = (app.test_client() for app in apps)
        first = page(a, "shared", limit=30)
        assert page(b, "shared", limit=30) == first
        second = page(b, "shared", offset=30, limit=30)
        assert page(a, "shared", offset=30, limit=30) == second and not set(first[0]) & set(second[0])
    finally:
        for app in apps:
            app.extensions["viralspot.session_store"].close()
            app.extensions["viralspot.catalog"].dispose()


def test_round_trips_of_random_pages_on_the_cluster(client, cluster_app, monkeypatch):
    """A new session's first page: one store call (its script), plus the index touch after it;
    the next page in order: one call; a replay: one call."""
    scripts = []
    real = RedisSessionStore._run

    def counted(self, calls):
        scripts.append([name for name, _keys, _args in calls])
        return real(self, calls)

    monkeypatch.setattr(RedisSessionStore, "_run", counted)
    for n in range(3):
        for offset, expected in ((0, [["page"], ["touch"]]), (24, [["page"]]), (0, [["page"]])):
            scripts.clear()
            ids, _last = page(client, f"trips-{n}", offset=offset)
            assert len(ids) == 24 and scripts == expected, (offset, scripts)


# --- gunicorn workers over the cluster ----------------------------------------------------------


def test_gunicorn_workers_over_the_cluster_never_repeat_and_all_see_a_reset(redis_cluster_clean, tmp_path):
    database_url = "sqlite:///" + str(tmp_path / "catalog.db")
    seed_catalog(database_url)
    with GunicornServer(tmp_path, database_url=database_url, store_url=redis_cluster_clean.url(2), workers=3,
                        threads=4, name="cluster") as server:
        port = server.port
        workers = server.worker_pids()
        reels = set(plain_ids(port, "/api/reels"))
        drained: dict[str, list[list[str]]] = {}

        def drainer(session):
            return lambda: drained.__setitem__(session, drain_over_http(lambda _n: port, "/api/reels", session, 60))

        run_threads([drainer(f"c-{n}") for n in range(4)], timeout=90)
        for session, pages in drained.items():
            items = flat(pages)
            assert not repeated(items), (session, repeated(items))
            assert set(items) == reels and len(items) == len(reels)
        assert len({tuple(flat(pages)) for pages in drained.values()}) == 4, "two sessions got one order"
        check_a_reset_is_seen_by_every_worker(port, "cluster-reset", 3)
        assert server.worker_pids() == workers, server.log_tail()


def test_rate_limits_count_in_the_cluster_with_one_attempt_a_request(redis_cluster_clean):
    """The per-client budget is counted in the cluster itself (not in each process, the fallback
    when its storage cannot be built), under the service's prefix, by a client that makes one
    attempt a command (a hung master costs a request one socket timeout, not redis-py's retries)."""
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": redis_cluster_clean.url(), "RESET_RATE_LIMIT": "2/minute"})
    try:
        limiter = app.extensions["viralspot.rate_limits"]
        storage = limiter.storage
        assert type(storage).__name__ == "RedisClusterStorage"
        assert storage.storage.retry.get_retries() == 0
        client = app.test_client()
        assert [client.post("/api/reset-session", query_string={"session_id": "s"}).status_code
                for _ in range(3)] == [200, 200, 429]
        cluster = redis.RedisCluster(host="127.0.0.1", port=redis_cluster_clean.ports[0])
        try:
            assert any(key.startswith(b"vs2:rl:") for key in cluster.scan_iter(target_nodes=redis.RedisCluster.PRIMARIES))
        finally:
            cluster.close()
    finally:
        app.extensions["viralspot.session_store"].close()
        app.extensions["viralspot.catalog"].dispose()
