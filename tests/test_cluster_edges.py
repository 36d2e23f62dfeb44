"""Session state at the edges on Redis Cluster (issue 24): what tests/test_session_edges.py and
tests/test_failover.py hold standalone and under Sentinel, on real ``redis-server --cluster-enabled``
processes (dedicated clusters from ``redis_cluster_factory`` in tests/redis_fixtures.py), through
the app and a ``redis+cluster://`` store URL.

* **All or nothing under memory pressure.** Masters with the README's ``maxmemory-policy
  volatile-lru`` and a ``maxmemory`` set below what they use evict sessions while 250 of them take
  turns between two overlapping feeds: within one incarnation of a session (its ``created_at``) no
  item is ever served twice, every session hash on every master is whole, and every master really
  evicted sessions (some came back as new incarnations).
* **Bounded scripts.** With 1,000,000 idle entries spread over the 16 index shards, pages run no
  command over 10 ms on any master (``SLOWLOG``), none fails, and each index touch trims at most
  100 entries of its shard (exactly 100 while the shard's backlog lasts).
* **Failover.** A replica of the master holding the most traffic sessions is promoted by
  ``CLUSTER FAILOVER`` (a coordinated failover) while four threads page random feeds: the sessions
  on that master answer 200 again within 2 s of the replica reporting itself master, every failed
  page is a 503 ``SESSION_STORE_UNAVAILABLE`` envelope, and no session is shown an item twice (a
  coordinated failover loses nothing, so no session starts anew either). The same with a master
  that freezes (SIGSTOP) and a replica promoted by ``CLUSTER FAILOVER FORCE`` once pages have
  failed: there the 503s do happen, and pages flow again within 2 s of the promotion.
* **The index shard's master down.** A session's hash and its index shard on different masters;
  the shard's master stops: the session's pages still answer 200 with new items, each logging that
  the index was not touched; once the master is back, a page indexes the session again.
"""
from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections import defaultdict

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from session_helpers import page
from test_failover import (PAGES_AFTER, RECOVERY_SECONDS, Traffic, check_traffic, make_app,  # noqa: F401
                           seeded_catalog_url, wait_for)
from test_session_edges import (FEEDS, FILL, OTHER_BYTES, PAGE, ROUNDS, SESSIONS, PressureLedger,
                                partial_session_hashes, session_bytes)
from viralspot.store.base import FeedView, PageStatus, StoreUnavailable
from viralspot.store.redis_store import (CLUSTER_INDEX_SHARDS, LAYOUT, RedisSessionStore, index_keys, index_shard,
                                         session_key)

pytestmark = pytest.mark.redis

CATALOG_ITEMS = 3000
INDEX_SHARDS = index_keys(CLUSTER_INDEX_SHARDS)


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    """A SQLite catalog of 3,000 seeded items (reels and posts), shared by the module's apps."""
    return seeded_catalog_url(tmp_path_factory.mktemp("cluster-edges"), CATALOG_ITEMS)


@pytest.fixture
def cluster_app(make_app):
    """Builds apps on the module's catalog and a cluster's ``redis+cluster://`` URL (``make_app`` of
    tests/test_failover.py closes them after)."""
    def make(cluster):
        app = make_app(cluster.url())
        assert app.extensions["viralspot.session_store"].cluster
        return app

    return make


def owner_of(owners: dict[int, int], key: str) -> int:
    """The port of the master serving ``key`` (``owners``: ``RedisClusterServers.slot_owners()``)."""
    return owners[key_slot(key.encode())]


# --- All or nothing under memory pressure ----------------------------------------------------------

#: Other volatile keys each master holds and keeps using (touched between pages, so the least
#: recently used sessions go first), as on the standalone server.
OTHER_KEYS_PER_MASTER = 24


def other_keys(owners: dict[int, int], ports: list[int]) -> dict[int, list[str]]:
    """``OTHER_KEYS_PER_MASTER`` key names in slots of each master, by port."""
    keys: dict[int, list[str]] = {port: [] for port in ports}
    number = 0
    while min(len(names) for names in keys.values()) < OTHER_KEYS_PER_MASTER:
        name = f"other:{number}"
        number += 1
        names = keys[owner_of(owners, name)]
        if len(names) < OTHER_KEYS_PER_MASTER:
            names.append(name)
    return keys


def test_cluster_sessions_under_memory_pressure_are_kept_or_forgotten_whole(cluster_app, redis_cluster_factory):
    """250 sessions take turns between two overlapping feeds, a page of each per round, on a
    3-master cluster. After the first round each master's ``maxmemory`` is set to what it then uses
    less half of what its sessions take, so every later round evicts sessions on every master."""
    cluster = redis_cluster_factory(extra=("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"))
    app = cluster_app(cluster)
    store = app.extensions["viralspot.session_store"]
    client = app.test_client()
    masters = {node.port: node.client() for node in cluster.nodes}
    owners = cluster.slot_owners()
    others = other_keys(owners, list(masters))
    try:
        rng = random.Random(24)
        ledger = PressureLedger([f"pressure-{index}" for index in range(SESSIONS)])
        started = time.monotonic()
        taken = {}

        def keep_others_used():
            for port, redis in masters.items():
                pipe = redis.pipeline(transaction=False)
                for key in others[port]:
                    pipe.touch(key)
                pipe.execute()

        for round_number in range(ROUNDS):
            if round_number == 1:
                for port, redis in masters.items():
                    assert int(redis.info("stats")["evicted_keys"]) == 0
                    sessions_take = taken[port] = session_bytes(redis)
                    assert sessions_take > 5_000, (port, sessions_take)  # every master holds sessions
                    pipe = redis.pipeline(transaction=False)  # one key a command: they are in several slots
                    for key in others[port]:
                        pipe.set(key, os.urandom(OTHER_BYTES), ex=3600)
                    pipe.execute()
                    redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) - sessions_take // 2)
            ledger.page_round(client, store, rng, keep_others_used)  # asserts every page 200
            for port, redis in masters.items():
                assert partial_session_hashes(redis) == [], port
        seconds = time.monotonic() - started
        pages = ledger.pages
        assert ledger.repeated() == {}, f"items served twice within one incarnation: {ledger.repeated()}"
        evicted = {port: int(redis.info("stats")["evicted_keys"]) for port, redis in masters.items()}
        came_back = ledger.came_back()
        assert all(count > 0 for count in evicted.values()), evicted  # every master was under pressure
        assert sum(evicted.values()) > SESSIONS // 10 and came_back > SESSIONS // 10, (evicted, came_back)
        # the sessions that came back lived on every master
        renewed_on = {owner_of(owners, f"{LAYOUT}:{{{session}}}") for session, created in ledger.incarnations.items()
                      if len(created) > 1}
        assert renewed_on == set(masters), (renewed_on, evicted)
        assert sum(1 for ids in ledger.served.values() if len(ids) > PAGE) > SESSIONS // 2  # checks with teeth
        assert ledger.unattributed < pages // 10
        indexed = sum(masters[owner_of(owners, shard)].zcard(shard) for shard in INDEX_SHARDS)
        assert 0 < indexed <= SESSIONS  # the index, touched by every page, outlived the pressure, and holds no more than the sessions
        print(f"\ncluster memory pressure: {pages} pages in {seconds:.1f} s; session bytes per master after round 1 "
              f"{taken}; evicted keys per master {evicted}; "
              f"sessions that came back {came_back}; unattributed pages {ledger.unattributed}")
    finally:
        for redis in masters.values():
            redis.close()


# --- Bounded scripts -------------------------------------------------------------------------------

IDLE_ENTRIES = 1_000_000
IDLE_PER_SHARD = IDLE_ENTRIES // CLUSTER_INDEX_SHARDS
SLOW_MICROSECONDS = 10_000


@pytest.fixture(scope="module")
def idle_backlog_cluster():
    """A dedicated 3-master cluster whose 16 index shards hold 1,000,000 entries idle since 1970
    (62,500 each, scores 1..1,000,000 ms), filled once per module."""
    from redis_fixtures import ClusterNode, RedisClusterServers, _require_redis_cli, _require_redis_server

    cluster = RedisClusterServers(_require_redis_server("redis-cluster"), _require_redis_cli(),
                                  node_class=ClusterNode)
    try:
        cluster.start()
        redis = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=30)
        try:
            fill = redis.register_script(FILL)
            for number, shard in enumerate(INDEX_SHARDS):
                assert fill(keys=[shard], args=[number * IDLE_PER_SHARD, IDLE_PER_SHARD]) == IDLE_PER_SHARD
        finally:
            redis.close()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def idle_backlog(idle_backlog_cluster):
    """The cluster with only idle entries in its index shards (sessions of earlier tests gone), the
    slow log of every master emptied and logging every command over 10 ms. Yields the cluster, a
    cluster client, and a plain client per master."""
    cluster = idle_backlog_cluster
    redis = RedisCluster(host="127.0.0.1", port=cluster.ports[0], socket_timeout=5)
    masters = cluster.clients()
    for node in masters:
        for key in node.scan_iter(match=f"{LAYOUT}:{{*", count=1000):
            node.delete(key)
    for shard in INDEX_SHARDS:
        active = redis.zrange(shard, IDLE_ENTRIES + 1, "+inf", byscore=True)  # idle entries score 1..1,000,000
        if active:
            redis.zrem(shard, *active)
        assert redis.zcard(shard) > IDLE_PER_SHARD - 5_000
    for node in masters:
        node.config_set("slowlog-log-slower-than", SLOW_MICROSECONDS)
        node.slowlog_reset()
    yield cluster, redis, masters
    redis.close()
    for node in masters:
        node.close()


def shard_sizes(redis) -> list[int]:
    return [redis.zcard(shard) for shard in INDEX_SHARDS]


def slow_commands(masters) -> list:
    """Every master's slow log entries (commands over 10 ms)."""
    return [entry for node in masters for entry in node.slowlog_get(128)]


def slowest_microseconds(masters) -> int:
    """The longest command in any master's slow log (with a threshold of 0 µs: every command)."""
    return max((entry["duration"] for node in masters for entry in node.slowlog_get(1024)), default=0)


def test_cluster_pages_over_a_million_idle_index_entries_run_no_slow_command(cluster_app, idle_backlog):
    cluster, redis, masters = idle_backlog
    app = cluster_app(cluster)
    store = app.extensions["viralspot.session_store"]
    client = app.test_client()
    start = shard_sizes(redis)
    touches = defaultdict(int)
    shrinks = []
    for index in range(150):
        session_id = f"busy-{index}"
        shard = index_shard(session_id, CLUSTER_INDEX_SHARDS)
        before = redis.zcard(INDEX_SHARDS[shard])
        ids, _last = page(client, session_id, 0, 24, **FEEDS[index % 2][1])  # asserts 200
        assert len(ids) == 24
        shrinks.append(before - redis.zcard(INDEX_SHARDS[shard]))
        touches[shard] += 1
        if index % 10 == 0:
            assert page(client, session_id, 24, 24)[0]  # a second page (at most one more touch)
            touches[shard] += 1
    assert all(0 < shrink <= 100 for shrink in shrinks), shrinks
    assert len(touches) > CLUSTER_INDEX_SHARDS // 2  # the pages touched shards all over the cluster
    assert store.session_count() == 150 and len(store.session_ids(limit=1000)) == 150
    response = client.post("/api/reset-session", query_string={"session_id": "busy-0"})
    assert response.status_code == 200
    response = client.get("/api/sessions/busy-1")
    assert response.status_code == 200
    assert slow_commands(masters) == []
    end = shard_sizes(redis)
    for shard, (before, after) in enumerate(zip(start, end)):
        assert before - after <= 100 * touches[shard], (shard, before, after)  # drained in bounded steps only
    # What the longest command took: every command of a few more pages, logged (threshold 0 µs).
    for node in masters:
        node.config_set("slowlog-max-len", 1024)
        node.config_set("slowlog-log-slower-than", 0)
        node.slowlog_reset()
    for index in range(150, 180):
        page(client, f"busy-{index}", 0, 24)
    slowest = slowest_microseconds(masters)
    assert slowest < SLOW_MICROSECONDS
    print(f"\ncluster idle backlog: {sum(start)} idle entries; longest command of 30 new sessions' pages "
          f"{slowest} µs")


def test_cluster_each_touch_trims_exactly_100_entries_of_an_idle_backlog(idle_backlog):
    cluster, redis, masters = idle_backlog
    store = RedisSessionStore(cluster.url(), ttl=3600)
    try:
        sizes = [shard_sizes(redis)]
        shards = []
        for index in range(50):
            session_id = f"s{index}"
            result = store.serve_page(session_id, b"r" + bytes(8), FeedView(b"\x01" * 8, (10**6,)), offset=0,
                                      limit=3, max_ahead=100, candidates=[1, 2, 3], scanned_to=4, create=True)
            assert result.status is PageStatus.SERVED
            sizes.append(shard_sizes(redis))
            shards.append(index_shard(session_id, CLUSTER_INDEX_SHARDS))
        for shard, before, after in zip(shards, sizes, sizes[1:]):
            expected = [0] * CLUSTER_INDEX_SHARDS
            expected[shard] = 99  # 100 trimmed, 1 added, in the session's shard only
            assert [b - a for b, a in zip(before, after)] == expected
        assert len(set(shards)) > CLUSTER_INDEX_SHARDS // 2
        assert slow_commands(masters) == []
    finally:
        store.close()


# --- Failover --------------------------------------------------------------------------------------

#: Full syncs through a snapshot file: the master streams to the replica at once (test_failover.py).
SYNC_AT_ONCE = ("--repl-diskless-sync", "no")


def role(node) -> str:
    with node.client() as client:
        return client.execute_command("ROLE")[0].decode()


def evalsha_calls(node) -> int:
    with node.client() as client:
        return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def run_failover(cluster_app, redis_cluster_factory, frozen: bool) -> dict:
    """The master holding the most of the traffic's first sessions gets a replica; while four
    threads page (test_failover.Traffic), the replica is promoted by ``CLUSTER FAILOVER``, or, when
    ``frozen``, the master is frozen first (SIGSTOP: connections stay open, nothing answers) and the
    replica promoted by ``CLUSTER FAILOVER FORCE``. Asserts what every cluster failover must keep;
    returns the figures measured."""
    cluster = redis_cluster_factory(extra=SYNC_AT_ONCE)
    owners = cluster.slot_owners()
    traffic_sessions = [f"w{worker}-s{number}-0" for worker in range(4) for number in range(2)]  # Traffic's names
    counts = defaultdict(int)
    for session_id in traffic_sessions:
        counts[owner_of(owners, f"{LAYOUT}:{{{session_id}}}")] += 1
    old = cluster.node_on(max(counts, key=counts.get))
    assert counts[old.port] >= 3
    new = cluster.add_replica(old)
    witness = next(node for node in cluster.nodes if node is not old)  # a master that stays up
    app = cluster_app(cluster)

    def on_old(session_id: str) -> bool:
        """Whether the session's hash lives in a slot of the master that fails over."""
        return owner_of(owners, f"{LAYOUT}:{{{session_id}}}") == old.port

    def served_on_old(since: float) -> int:
        return sum(1 for p in list(traffic.pages) if p.status == 200 and p.started >= since and on_old(p.session))

    stopped = False
    try:
        with Traffic(app) as traffic:
            wait_for(lambda: traffic.every_worker_served(10), 20, "traffic before the failover", 0.01)
            assert evalsha_calls(new) == 0  # a replica runs no script: it is sent their effects
            if frozen:
                os.kill(old.process.pid, signal.SIGSTOP)
                stopped, frozen_at = True, time.monotonic()
                # The failover comes once pages of the frozen master's sessions have failed (a
                # cluster notices a dead master only after cluster-node-timeout).
                wait_for(lambda: any(p.status != 200 and p.started >= frozen_at for p in list(traffic.pages)), 20,
                         "pages failing on the frozen master", 0.01)
            with new.client() as client:
                assert client.execute_command("CLUSTER FAILOVER", *(["FORCE"] if frozen else []))
            asked = time.monotonic()
            wait_for(lambda: role(new) == "master", 10, "the replica taking over", 0.002)
            promoted = time.monotonic()  # the new master accepts writes for the slots
            if not frozen:
                wait_for(lambda: role(old) == "slave", 10, "the old master turning replica", 0.002)
            demoted = time.monotonic()
            wait_for(lambda: traffic.every_worker_served(PAGES_AFTER, promoted) and served_on_old(promoted) >= 30,
                     20, "pages after the failover", 0.01)
        figures = check_traffic(traffic, app.test_client(), promoted, promoted)
    finally:
        if stopped:
            os.kill(old.process.pid, signal.SIGCONT)

    # The new master serves the old one's slots and ran the sessions' scripts.
    assert evalsha_calls(new) > 0
    moved = {slot for slot, port in owners.items() if port == old.port}
    wait_for(lambda: {slot for slot, port in cluster.slot_owners(witness).items() if port == new.port} == moved, 10,
             "the cluster naming the new master for the old master's slots", 0.01)
    # The sessions of the master that failed over answer 200 again within 2 s of the promotion,
    # and no page asked later fails.
    first_after: dict[str, float] = {}
    for p in traffic.pages:
        if p.status == 200 and p.started >= promoted and on_old(p.session):
            first_after[p.session] = min(first_after.get(p.session, p.ended), p.ended)
    assert len(first_after) >= 3, first_after
    recovery = {session: round(ended - promoted, 3) for session, ended in sorted(first_after.items())}
    assert max(recovery.values()) <= RECOVERY_SECONDS, (recovery, figures)
    late = [(p.session, p.status, p.error_code) for p in traffic.pages
            if p.status != 200 and p.started > promoted + RECOVERY_SECONDS]
    assert not late, f"pages still failing {RECOVERY_SECONDS} s after the promotion: {late[:10]}"
    figures.update(promoted_s=round(promoted - asked, 3), demoted_s=round(demoted - promoted, 3),
                   sessions_recovery_s=recovery)
    return {**figures, "old": old}


def test_a_cluster_failover_recovers_within_2_s_and_repeats_nothing(cluster_app, redis_cluster_factory):
    """A coordinated failover (``CLUSTER FAILOVER`` to the replica: the master pauses its writers,
    the replica catches up and takes over the slots, the old master becomes its replica)."""
    figures = run_failover(cluster_app, redis_cluster_factory, frozen=False)
    old = figures.pop("old")
    assert figures["renewed"] == 0, figures  # a coordinated failover loses no write: no session starts anew
    with old.client() as client:
        redirected = int(client.info("errorstats").get("errorstat_MOVED", {}).get("count", 0))
    assert redirected > 0  # the store met the switch: the demoted master redirected it
    print(f"\ncluster failover: MOVED answers of the demoted master {redirected}; {figures}")


def test_a_forced_cluster_failover_of_a_frozen_master_answers_503s_then_recovers(cluster_app, redis_cluster_factory):
    """The master freezes (SIGSTOP) under traffic; once pages of its sessions have failed, its replica
    takes over by ``CLUSTER FAILOVER FORCE``: the failed pages are 503 envelopes only, pages flow
    again within 2 s of the promotion, and no item is shown twice in a session incarnation."""
    figures = run_failover(cluster_app, redis_cluster_factory, frozen=True)
    figures.pop("old")
    assert figures["failed"] > 0, figures  # the frozen master did fail pages: the 503 check had teeth
    print(f"\nforced cluster failover of a frozen master: {figures}")


# --- The index shard's master down -----------------------------------------------------------------

#: Pages of the session while its index shard's master is down.
PAGES_WHILE_DOWN = 4
NOT_TOUCHED = "active-session index not touched"


def cluster_state(node) -> str:
    with node.client() as client:
        return client.execute_command("CLUSTER INFO").get("cluster_state")


def test_pages_are_served_while_the_index_shard_master_is_down_and_indexed_once_it_is_back(
        cluster_app, redis_cluster_factory, caplog):
    """A session whose hash and whose index shard (``vs2:active:{i}``) live on different masters;
    the shard's master stops. The session's random pages still answer 200 with new items each time
    (the index is for counting and listing only), each one logging that the index was not touched;
    once that master is back (restarted empty: no persistence), a page touches the index again and
    the session is counted and listed."""
    # With the default cluster-require-full-coverage yes, a master down past cluster-node-timeout
    # (5 s) takes the whole cluster down (CLUSTERDOWN on every master); without it the other
    # masters keep serving their slots, the case the page's fallback is for.
    cluster = redis_cluster_factory(extra=("--cluster-require-full-coverage", "no"))
    owners = cluster.slot_owners()
    with cluster.nodes[0].client() as probe:
        def master_of(key: str) -> int:
            slot = int(probe.execute_command("CLUSTER KEYSLOT", key))
            assert slot == key_slot(key.encode())
            return owners[slot]

        session_id = next(f"apart-{number}" for number in range(1000)
                          if master_of(session_key(f"apart-{number}"))
                          != master_of(INDEX_SHARDS[index_shard(f"apart-{number}", CLUSTER_INDEX_SHARDS)]))
        shard = INDEX_SHARDS[index_shard(session_id, CLUSTER_INDEX_SHARDS)]
        session_master, index_master = master_of(session_key(session_id)), master_of(shard)
    app = cluster_app(cluster)
    store = app.extensions["viralspot.session_store"]
    client = app.test_client()
    assert store.session_count() == 0  # the store knows the cluster's slots, and the session is new
    served: list[int] = []

    def next_page() -> list[int]:
        ids, _last = page(client, session_id, len(served), PAGE)  # asserts 200
        assert len(ids) == PAGE
        served.extend(ids)
        return ids

    def not_touched() -> list:
        return [record for record in caplog.records
                if record.name == "viralspot.store.redis_store" and NOT_TOUCHED in record.getMessage()]

    down = cluster.node_on(index_master)
    caplog.set_level(logging.WARNING, logger="viralspot.store.redis_store")
    down.stop()
    stopped = time.monotonic()
    for _ in range(PAGES_WHILE_DOWN):
        next_page()
    down_pages_s = time.monotonic() - stopped
    # Readiness asks a master for the cluster's state: the other masters serve on, so every instance
    # stays in rotation (it pinged every master, and one down made every instance answer 503).
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["data"]["checks"]["session_store"]["status"] == "ok", ready.json
    # The session was never touched (its first page created it, and every touch failed): every
    # page tried the index, and every one logged a warning.
    warnings = not_touched()
    assert len(warnings) == PAGES_WHILE_DOWN, [record.getMessage() for record in caplog.records]
    assert all(record.levelno == logging.WARNING for record in warnings)
    assert store.summary(session_id).served_items_count == PAGES_WHILE_DOWN * PAGE  # the session's own master kept it
    with pytest.raises(StoreUnavailable):
        store.session_count()  # the index cannot be read: one of its shards is down
    # A reset of the session is done on its own master: 200, the count unknown (null), not a 503.
    reset = client.post("/api/reset-session", query_string={"session_id": session_id})
    body = reset.get_json()
    assert reset.status_code == 200, body
    assert body["data"]["session_reset"]["session_found"] is True
    assert body["data"]["session_reset"]["cleared_items_count"] == PAGES_WHILE_DOWN * PAGE
    assert body["data"]["server_info"]["total_active_sessions"] is None
    assert store.summary(session_id) is None
    served.clear()  # the session starts afresh

    down.start()  # same port and nodes.conf: it rejoins with its slots, empty (no persistence)
    restarted = time.monotonic()
    assert down.port == index_master
    wait_for(lambda: cluster_state(down) == "ok", 15, "the restarted master serving its slots", 0.05)
    with down.client() as redis:
        assert redis.zscore(shard, session_id) is None  # restarted empty: only a new touch indexes the session
    caplog.clear()
    pages_before = len(served)

    def indexed() -> bool:
        next_page()
        try:
            return session_id in store.session_ids()
        except StoreUnavailable:
            return False

    wait_for(indexed, 15, "a page touching the index again", 0.05)
    indexed_s = time.monotonic() - restarted
    with down.client() as redis:
        assert redis.zscore(shard, session_id) is not None
    assert store.session_ids() == [session_id] and store.session_count() == 1
    assert len(served) == len(set(served)), "an item was served twice"
    assert store.summary(session_id).served_items_count == len(served)
    assert session_master != index_master and cluster_state(cluster.node_on(session_master)) == "ok"
    print(f"\nindex shard master down: {PAGES_WHILE_DOWN} pages in {down_pages_s:.2f} s, "
          f"{len(not_touched())} warnings after the restart; indexed again {indexed_s:.2f} s after the restart "
          f"({(len(served) - pages_before) // PAGE} pages)")


def test_readiness_fails_once_the_cluster_stops_serving(cluster_app, redis_cluster_factory):
    """With Redis's default ``cluster-require-full-coverage yes``, a master down past
    ``cluster-node-timeout`` stops the whole cluster (``cluster_state:fail``): then ``/readyz``
    answers 503 naming the session store, and 200 again once the master is back."""
    cluster = redis_cluster_factory()
    client = cluster_app(cluster).test_client()
    assert client.get("/readyz").status_code == 200
    down, asked = cluster.nodes[0], cluster.nodes[1]
    down.stop()
    wait_for(lambda: cluster_state(asked) == "fail", 20, "the cluster stopping on a master down", 0.05)
    response = client.get("/readyz")
    body = response.get_json()
    assert response.status_code == 503 and body["error_code"] == "SESSION_STORE_UNAVAILABLE", body
    assert body["checks"]["session_store"]["status"] == "unavailable" and body["checks"]["database"]["status"] == "ok"
    down.start()
    wait_for(lambda: cluster_state(asked) == "ok", 20, "the cluster serving again", 0.05)
    wait_for(lambda: client.get("/readyz").status_code == 200, 10, "readiness again", 0.05)
