"""Session state at the edges (issue 24, points 1 and 4), on real redis-servers and the real app.

* **All or nothing under memory pressure.** A redis-server with a small ``maxmemory`` and the
  policy the README recommends (``volatile-lru``) evicts sessions while hundreds of them take turns
  between two overlapping feeds (``/api/reels`` and ``/api/reels?min_views=1``). Every page is
  recorded with the incarnation of its session (its ``created_at``): within one incarnation no
  item is ever served twice across both feeds, every session hash in Redis is whole, and sessions
  really were evicted (some came back as new incarnations).
* **A full server.** Past ``maxmemory`` with nothing to evict, pages answer 503 and write nothing.
* **Bounded scripts.** With 1,000,000 idle entries in the active-session index, pages of many
  sessions run no command over 10 ms (``SLOWLOG``), none fails, and each index touch trims at most
  100 entries of the backlog.
"""
from __future__ import annotations

import os
import random
import time
from collections import defaultdict

import pytest

from session_helpers import page, random_get
from viralspot import create_app
from viralspot.store.base import FeedView, PageStatus
from viralspot.store.redis_store import INDEX_KEY, LAYOUT, session_key

pytestmark = pytest.mark.redis

CATALOG_ITEMS = 3000
#: The two feeds the sessions take turns between: every item with a view matches both.
FEEDS = (("all", {}), ("min_views", {"min_views": 1}))
SESSION_FIELDS = (b"s", b"b", b"k", b"n", b"c")


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory):
    """A SQLite catalog of 3,000 seeded items, shared by the module's apps."""
    url = "sqlite:///" + os.path.join(str(tmp_path_factory.mktemp("edges")), "catalog.db")
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(CATALOG_ITEMS), "--seed", "7",
                                                "--no-progress"])
    assert result.exit_code == 0, result.output
    app.extensions["viralspot.catalog"].dispose()
    app.extensions["viralspot.session_store"].close()
    return url


def app_on(catalog_url: str, server):
    return create_app({"CONFIG": "testing", "DATABASE_URL": catalog_url, "SESSION_STORE_URL": server.url})


def close_app(app) -> None:
    app.extensions["viralspot.session_store"].close()
    app.extensions["viralspot.catalog"].dispose()


def partial_session_hashes(client) -> list[tuple[bytes, list]]:
    """Session hashes lacking any of s, b, k, n, c (a hash holding only a reset's record is whole)."""
    partial = []
    for key in client.scan_iter(match=f"{LAYOUT}:{{*", count=1000):
        pipe = client.pipeline(transaction=True)  # one look: a key evicted meanwhile is simply gone
        pipe.hmget(key, SESSION_FIELDS)
        pipe.hkeys(key)
        values, fields = pipe.execute()
        if fields and fields != [b"r"] and not all(values):
            partial.append((key, fields))
    return partial


# --- All or nothing under memory pressure ----------------------------------------------------------

SESSIONS = 250
ROUNDS = 3
PAGE = 25
PRESSURE_SECONDS = 30
#: Other volatile data the server holds and keeps using (touched between pages, so the least
#: recently used sessions go first): what an eviction can take when sessions alone would not do.
OTHER_KEYS, OTHER_BYTES = 64, 4096


def session_bytes(client) -> int:
    return sum(client.memory_usage(key, samples=0) or 0 for key in client.scan_iter(match=f"{LAYOUT}:{{*",
                                                                                        count=1000))


class PressureLedger:
    """What sessions taking turns between ``FEEDS`` under memory pressure were shown, by incarnation
    (session id, ``created_at``): the standalone and the Redis Cluster tests page through it."""

    def __init__(self, sessions: list[str]) -> None:
        self.sessions = sessions
        self.offsets: dict = defaultdict(int)
        #: (session, created_at) -> every item id its pages showed, across both feeds
        self.served: dict = defaultdict(list)
        self.incarnations: dict = defaultdict(set)
        self.pages = self.unattributed = 0

    def page_round(self, client, store, rng: random.Random, keep_others_used) -> None:
        """A page of each feed for every session, in random order; every 20 pages after the first
        round ``keep_others_used()`` (so the least recently used keys are sessions)."""
        first_round = not self.pages
        for session_id in rng.sample(self.sessions, len(self.sessions)):
            for feed, filters in rng.sample(FEEDS, len(FEEDS)):
                ids, _last = page(client, session_id, self.offsets[session_id, feed], PAGE, **filters)
                assert len(ids) == PAGE
                self.pages += 1
                self.offsets[session_id, feed] += PAGE
                summary = store.summary(session_id)
                if summary is None:  # evicted before it could be asked: its page is not attributed
                    self.unattributed += 1
                    continue
                self.served[session_id, summary.created_at] += ids
                self.incarnations[session_id].add(summary.created_at)
            if not first_round and self.pages % 20 == 0:
                keep_others_used()

    def repeated(self) -> dict:
        """Items served twice within one incarnation, counted per incarnation."""
        return {key: len(ids) - len(set(ids)) for key, ids in self.served.items() if len(ids) != len(set(ids))}

    def came_back(self) -> int:
        """Sessions seen in more than one incarnation."""
        return sum(1 for created in self.incarnations.values() if len(created) > 1)


def test_sessions_under_memory_pressure_are_kept_or_forgotten_whole(catalog_url, redis_server_factory):
    """250 sessions take turns between two overlapping feeds, a page of each per round. After the
    first round, ``maxmemory`` is set to what the server then uses less half of what the sessions
    take, so every later round evicts sessions (the 2 MB the server starts with is more than 250
    sessions fill: a session of a few pages is a few hundred bytes)."""
    server = redis_server_factory("--maxmemory", "2mb", "--maxmemory-policy", "volatile-lru")
    app = app_on(catalog_url, server)
    store = app.extensions["viralspot.session_store"]
    client = app.test_client()
    redis = server.client()
    others = [f"other:{index}" for index in range(OTHER_KEYS)]
    try:
        rng = random.Random(24)
        ledger = PressureLedger([f"pressure-{index}" for index in range(SESSIONS)])
        rounds = 0
        deadline = time.monotonic() + PRESSURE_SECONDS
        for round_number in range(ROUNDS):
            if time.monotonic() > deadline:  # a slow machine: stop early; the checks below still bite
                break
            if round_number == 1:
                assert int(redis.info("stats")["evicted_keys"]) == 0
                sessions_take = session_bytes(redis)
                assert sessions_take > 30_000
                redis.mset({key: os.urandom(OTHER_BYTES) for key in others})
                for key in others:
                    redis.expire(key, 3600)
                redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) - sessions_take // 2)
            ledger.page_round(client, store, rng, lambda: redis.touch(*others))
            rounds += 1
            assert partial_session_hashes(redis) == []
        pages = ledger.pages
        assert rounds == ROUNDS, f"{pages} pages in {PRESSURE_SECONDS} s"
        assert ledger.repeated() == {}, f"items served twice within one incarnation: {ledger.repeated()}"
        evicted = int(redis.info("stats")["evicted_keys"])
        came_back = ledger.came_back()
        assert evicted > SESSIONS // 10 and came_back > SESSIONS // 10, (evicted, came_back)
        assert sum(1 for ids in ledger.served.values() if len(ids) > PAGE) > SESSIONS // 2  # checks with teeth
        assert ledger.unattributed < pages // 10
        assert redis.zcard(INDEX_KEY) <= SESSIONS
    finally:
        redis.close()
        close_app(app)


@pytest.mark.parametrize("policy", ["volatile-lru", "noeviction"])
def test_a_full_server_refuses_pages_and_grows_no_further(catalog_url, redis_server_factory, policy):
    """``maxmemory`` below what the server holds once it has evicted what it may (``noeviction``:
    nothing; ``volatile-lru``: every key of the service, the index too): a page, of a new session or
    of one the server keeps, answers 503 ``SESSION_STORE_UNAVAILABLE`` and writes nothing (no
    session hash, no index entry). What only reads still answers (the inspection of a kept session),
    and pages flow again once the server has room."""
    server = redis_server_factory("--maxmemory-policy", policy)
    app = app_on(catalog_url, server)
    client = app.test_client()
    redis = server.client()
    try:
        page(client, "kept", 0, PAGE)  # asserts 200
        index_before = redis.zrange(INDEX_KEY, 0, -1, withscores=True)
        redis.config_set("maxmemory", 1)
        for session, offset in (("new", 0), ("kept", PAGE)):
            response = random_get(client, session, offset, PAGE)
            body = response.get_json()
            assert response.status_code == 503 and body["error_code"] == "SESSION_STORE_UNAVAILABLE", body
        assert not redis.exists(session_key("new"))
        if policy == "noeviction":
            assert redis.zrange(INDEX_KEY, 0, -1, withscores=True) == index_before
        else:
            assert not redis.exists(INDEX_KEY) and not redis.exists(session_key("kept"))
        if policy == "noeviction":
            summary = client.get("/api/sessions/kept")
            assert summary.status_code == 200
            assert summary.get_json()["data"]["session"]["served_items_count"] == PAGE
            store = app.extensions["viralspot.session_store"]
            assert store.session_count() == 1 and store.session_ids() == ["kept"]
        redis.config_set("maxmemory", 0)
        page(client, "new", 0, PAGE)
        assert redis.exists(session_key("new"))
    finally:
        redis.close()
        close_app(app)


def test_an_index_left_alone_by_a_flood_of_sessions_is_evicted_and_pages_go_on(catalog_url, redis_server_factory):
    """A flood of new session ids within their TTL, their hashes evicted (``volatile-lru``): their
    index entries stay. The index had no TTL, so once it was all that was left Redis could evict
    nothing and refused every page (503) until its entries aged out, a TTL later. It carries the
    TTL now: Redis evicts it (it is touched by every page, so it goes last), and pages go on;
    counting and listing start over."""
    server = redis_server_factory("--maxmemory-policy", "volatile-lru")
    app = app_on(catalog_url, server)
    client = app.test_client()
    redis = server.client()
    try:
        page(client, "kept", 0, PAGE)
        now_ms = int(time.time() * 1000)
        for first in range(0, 60_000, 1_000):  # what the flood's pages wrote, their sessions evicted since
            redis.zadd(INDEX_KEY, {f"flood-{n}": now_ms for n in range(first, first + 1_000)})
        assert redis.pttl(INDEX_KEY) > 0
        redis.delete(session_key("kept"))
        redis.config_set("maxmemory", int(redis.info("memory")["used_memory"]) - 10_000)
        page(client, "after-the-flood", 0, PAGE)  # asserts 200
        assert redis.info("stats")["evicted_keys"] >= 1
        assert redis.zrange(INDEX_KEY, 0, -1) == [b"after-the-flood"]
        assert app.extensions["viralspot.session_store"].session_count() == 1
    finally:
        redis.config_set("maxmemory", 0)
        redis.close()
        close_app(app)


def test_a_master_without_its_replicas_refuses_writes_with_a_503(catalog_url, redis_server_factory):
    """``min-replicas-to-write 1`` (the README's advice against losing pages in a failover) and no
    replica: the master refuses every write (NOREPLICAS). A page and a reset answer 503
    ``SESSION_STORE_UNAVAILABLE``, never a 500; inspection, which only reads, still answers."""
    server = redis_server_factory()
    app = app_on(catalog_url, server)
    client = app.test_client()
    redis = server.client()
    try:
        page(client, "kept", 0, PAGE)
        redis.config_set("min-replicas-to-write", 1)
        for response in (random_get(client, "kept", PAGE, PAGE), random_get(client, "new", 0, PAGE),
                         client.post("/api/reset-session", query_string={"session_id": "kept"})):
            body = response.get_json()
            assert response.status_code == 503 and body["error_code"] == "SESSION_STORE_UNAVAILABLE", body
        assert client.get("/api/sessions/kept").status_code == 200
        redis.config_set("min-replicas-to-write", 0)
        page(client, "kept", PAGE, PAGE)
    finally:
        redis.close()
        close_app(app)


# --- Bounded scripts -------------------------------------------------------------------------------

IDLE_ENTRIES = 1_000_000
FILL = """
local first, count = tonumber(ARGV[1]), tonumber(ARGV[2])
for chunk = 0, count - 1, 1000 do
  local args = {}
  for i = first + chunk, first + math.min(count, chunk + 1000) - 1 do
    args[#args + 1] = i + 1
    args[#args + 1] = 'idle-' .. i
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
return redis.call('ZCARD', KEYS[1])
"""


@pytest.fixture(scope="module")
def idle_backlog_server():
    """A redis-server whose index holds 1,000,000 entries idle since 1970 (filled once per module)."""
    from redis_fixtures import RedisServer, _require_redis_server

    server = RedisServer(_require_redis_server())
    server.start()
    with server.client() as redis:
        fill = redis.register_script(FILL)
        for first in range(0, IDLE_ENTRIES, 100_000):
            fill(keys=[INDEX_KEY], args=[first, 100_000])
        assert redis.zcard(INDEX_KEY) == IDLE_ENTRIES
    yield server
    server.remove()


@pytest.fixture
def idle_backlog(idle_backlog_server):
    """The server with only idle entries in its index (sessions of earlier tests gone), its slow log
    emptied and logging every command over 10 ms."""
    redis = idle_backlog_server.client()
    for key in redis.scan_iter(match=f"{LAYOUT}:{{*", count=1000):
        redis.delete(key)
    active = redis.zrange(INDEX_KEY, IDLE_ENTRIES + 1, "+inf", byscore=True)  # idle entries score 1..1,000,000
    if active:
        redis.zrem(INDEX_KEY, *active)
    assert redis.zcard(INDEX_KEY) > IDLE_ENTRIES - 50_000
    redis.config_set("slowlog-log-slower-than", 10_000)
    redis.slowlog_reset()
    yield idle_backlog_server, redis
    redis.close()


def test_pages_over_a_million_idle_index_entries_run_no_slow_command(catalog_url, idle_backlog):
    server, redis = idle_backlog
    app = app_on(catalog_url, server)
    store = app.extensions["viralspot.session_store"]
    client = app.test_client()
    try:
        shrinks, start = [], redis.zcard(INDEX_KEY)
        for index in range(150):
            before = redis.zcard(INDEX_KEY)
            ids, _last = page(client, f"busy-{index}", 0, 24, **FEEDS[index % 2][1])  # asserts 200
            assert len(ids) == 24
            shrinks.append(before - redis.zcard(INDEX_KEY))
            if index % 10 == 0:
                assert page(client, f"busy-{index}", 24, 24)[0]  # a second page: no touch this second
        assert all(0 < shrink <= 100 for shrink in shrinks), shrinks
        assert store.session_count() == 150 and len(store.session_ids(limit=1000)) == 150
        response = client.post("/api/reset-session", query_string={"session_id": "busy-0"})
        assert response.status_code == 200
        response = client.get("/api/sessions/busy-1")
        assert response.status_code == 200
        assert redis.slowlog_get(128) == []
        assert start - redis.zcard(INDEX_KEY) <= 100 * 151  # drained in bounded steps only
    finally:
        close_app(app)


def test_each_touch_trims_exactly_100_entries_of_an_idle_backlog(idle_backlog):
    from viralspot.store.redis_store import RedisSessionStore

    server, redis = idle_backlog
    store = RedisSessionStore(server.url, ttl=3600)
    try:
        sizes = [redis.zcard(INDEX_KEY)]
        for index in range(50):
            result = store.serve_page(f"s{index}", b"r" + bytes(8), FeedView(b"\x01" * 8, (10**6,)), offset=0,
                                      limit=3, max_ahead=100, candidates=[1, 2, 3], scanned_to=4, create=True)
            assert result.status is PageStatus.SERVED
            sizes.append(redis.zcard(INDEX_KEY))
        assert [before - after for before, after in zip(sizes, sizes[1:])] == [99] * 50  # 100 trimmed, 1 added
        assert redis.slowlog_get(128) == []
    finally:
        store.close()
