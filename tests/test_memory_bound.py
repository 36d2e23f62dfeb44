"""Memory of sessions, measured through the store API.

Redis (issue 24, point 6), on a real redis-server: ``INFO memory`` ``used_memory`` after
``FLUSHALL`` and after serving, divided over the sessions or the items served:

* at most 600 bytes per session of one 24-item page, index entry included, over 2,000 sessions;
* at most 4 bytes per served item at 2,000 items per session, for feeds whose positions are
  dense (every position matches), every 10th and every 100th; and so are the session keys' own
  bytes (``MEMORY USAGE`` with ``SAMPLES 0``, exact), which must be more than 0. used_memory alone
  cannot show that: it also holds client buffers, resized by the server's cron between reads
  (measured over one dense run: used_memory -16,912 bytes, mem_clients_normal +69,200, beside the
  18,048 bytes the 24 sessions hold).

Pages are served as the feed serves them: the page's positions and one look-ahead candidate from
the feed's cursor, in pages of 24 (the one-page sessions) or 100.

The memory store: it never holds more than ``max_sessions`` (least recently used evicted first),
its memory stays flat as sessions come and go, a reset leaves nothing behind, and a session of one
24-item page stays under a sanity bound (measured with tracemalloc and by walking the store's
objects). Run with ``-s`` to see the figures. (The old state model's freshness records of reset
sessions and generations are gone: a reset forgets the session whole.)
"""
from __future__ import annotations

import gc
import os
import sys
import threading
import tracemalloc
import types

import pytest

from viralspot.store import FeedView, PageStatus
from viralspot.store.memory import MemorySessionStore

PAGE = 24
KEY_SPACE = 1_000_000
FEED = b"r" + bytes.fromhex("0123456789abcdef")

# --- Redis ---------------------------------------------------------------------------------------

REDIS_SESSIONS = 2_000
MAX_BYTES_PER_SESSION = 600
ITEMS = 2_000
MAX_BYTES_PER_ITEM = 4.0
#: Sessions of 2,000 items per selectivity: 48,000 items, so used_memory's noise is small beside them.
DEEP_SESSIONS = 24


def serve_items(store, session_id: str, step: int, items: int, page: int) -> None:
    """Serve ``items`` items of a new session whose matching positions are every ``step``-th, in pages
    of ``page``, each with its look-ahead candidate, as ``feed/service.py`` sends them."""
    view = FeedView(os.urandom(8), (KEY_SPACE,))
    while view.served < items:
        limit = min(page, items - view.served)
        first = -(-view.cursor // step) * step
        candidates = list(range(first, first + (limit + 1) * step, step))
        result = store.serve_page(session_id, FEED, view, offset=view.served, limit=limit, max_ahead=1000,
                                  candidates=candidates, scanned_to=candidates[-1] + 1, create=view.served == 0)
        assert result.status is PageStatus.SERVED and result.has_more, result
        view = result.view
    assert view.served == items


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


@pytest.fixture
def redis_store(redis_server_factory):
    """A store on a redis-server of its own, its reset notices subscribed (they hold a connection,
    ``store/reset_notices.py``): no client of another test connects or leaves while used_memory
    is read."""
    from viralspot.store.redis_store import RedisSessionStore

    store = RedisSessionStore(redis_server_factory().url, ttl=86_400)
    serve_items(store, "warm-up", 1, PAGE, PAGE)  # scripts loaded, client buffers grown
    assert store.reset_notices.subscribed.wait(10)
    yield store
    store.close()


def measure(store, sessions: list[str], step: int, items: int, page: int) -> int:
    """used_memory grown by serving ``sessions`` (after FLUSHALL)."""
    client = store.client
    client.flushall()
    before = used_memory(client)
    for session_id in sessions:
        serve_items(store, session_id, step, items, page)
    return used_memory(client) - before


@pytest.mark.redis
@pytest.mark.parametrize("step", [1, 10])
def test_redis_holds_a_session_of_one_page_in_at_most_600_bytes(redis_store, step):
    sessions = [f"{n:08d}-4c1e-4a8e-9b7a-{n:012x}" for n in range(REDIS_SESSIONS)]  # uuid-like ids
    grown = measure(redis_store, sessions, step, PAGE, PAGE)
    per_session = grown / REDIS_SESSIONS
    print(f"\nRedis: {per_session:,.0f} bytes per session of one {PAGE}-item page (every {step} position), "
          f"index entry included, over {REDIS_SESSIONS:,} sessions")
    assert redis_store.client.zcard("vs2:active") == REDIS_SESSIONS  # each session indexed: counted in
    assert redis_store.session_count() == REDIS_SESSIONS
    assert redis_store.summary(sessions[-1]).served_items_count == PAGE
    assert 100 < per_session <= MAX_BYTES_PER_SESSION


@pytest.mark.redis
@pytest.mark.parametrize("step", [1, 10, 100], ids=["dense", "every-10th", "every-100th"])
def test_redis_holds_a_served_item_in_at_most_4_bytes_at_2000_items(redis_store, step):
    sessions = [f"deep-{step}-{n:04d}" for n in range(DEEP_SESSIONS)]
    grown = measure(redis_store, sessions, step, ITEMS, 100)
    per_item = grown / (DEEP_SESSIONS * ITEMS)
    print(f"\nRedis: {per_item:.2f} bytes per served item at {ITEMS:,} items per session "
          f"(positions every {step}), over {DEEP_SESSIONS} sessions")
    client = redis_store.client
    held = sum(client.memory_usage(f"vs2:{{{session_id}}}", samples=0) for session_id in sessions)
    print(f"Redis: {held / (DEEP_SESSIONS * ITEMS):.2f} bytes per served item in the session keys (MEMORY USAGE)")
    summary = redis_store.summary(sessions[0])
    assert summary.served_items_count == ITEMS and list(summary.feeds.values())[0].served == ITEMS
    assert per_item <= MAX_BYTES_PER_ITEM
    assert 0 < held <= MAX_BYTES_PER_ITEM * DEEP_SESSIONS * ITEMS


# --- the memory store ----------------------------------------------------------------------------

SESSION_MAX = 20_000
SESSIONS = 60_000
CHECKPOINTS = (20_000, 40_000, 60_000)
#: The store's memory at a later checkpoint may exceed the first by at most this share.
FLAT = 0.10
#: A sanity bound on a session of one page (the memory store is the one-process default, sized by
#: VIRALSPOT_SESSION_MAX; measured about 1 KB on CPython 3.11, x86-64).
MEMORY_MAX_BYTES_PER_SESSION = 2_000

#: One page of candidates shared by every session: what a session holds does not depend on which
#: positions it was served, and sharing keeps the test's own allocations out of the way.
CANDIDATES = list(range(PAGE + 1))
SEED = bytes(8)
VIEW = FeedView(SEED, (KEY_SPACE,))
_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
             type(threading.Lock()))


def serve_page(store: MemorySessionStore, session_id: str) -> None:
    """A new session's first page of ``PAGE`` items, in one call, as the feed makes it."""
    result = store.serve_page(session_id, FEED, VIEW, offset=0, limit=PAGE, max_ahead=1000, candidates=CANDIDATES,
                              scanned_to=PAGE + 1, create=True)
    assert result.status is PageStatus.SERVED and len(result.positions) == PAGE


def retained_bytes(store: MemorySessionStore) -> int:
    """``sys.getsizeof`` summed over every object the store reaches (each once), types, modules,
    functions and locks aside: the sessions, their ids, feeds, arrays, bitmaps and the tables."""
    gc.collect()
    seen, stack, total = set(), [store], 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _NOT_DATA):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def new_store() -> MemorySessionStore:
    return MemorySessionStore(ttl=10**9, max_sessions=SESSION_MAX, clock=lambda: 1_000.0)


def assert_flat(sizes: dict[int, int], first: int = CHECKPOINTS[0], margin: float = FLAT) -> None:
    """Every measurement after checkpoint ``first`` within ``margin`` of the one at it."""
    reference = sizes[first]
    for count, size in sizes.items():
        if count > first:
            assert size <= reference * (1 + margin), \
                f"{size} bytes after {count:,} sessions, {reference} after {first:,}"


def test_the_memory_store_stays_within_session_max_with_flat_memory():
    store = new_store()
    sizes = {}
    for index in range(SESSIONS):
        serve_page(store, f"session-{index:06d}")
        done = index + 1
        if done % 5_000 == 0:
            assert store.session_count() == min(done, SESSION_MAX)
        if done in CHECKPOINTS:
            assert store.evicted == done - SESSION_MAX
            # The most recently used are kept: the oldest session held is the 20,000th from the end.
            assert store.summary(f"session-{done - SESSION_MAX:06d}") is not None
            assert done == SESSION_MAX or store.summary(f"session-{done - SESSION_MAX - 1:06d}") is None
            sizes[done] = retained_bytes(store)
    assert_flat(sizes)
    print(f"\nmemory store, {SESSION_MAX:,} sessions held of {SESSIONS:,}: retained "
          + ", ".join(f"{size / SESSION_MAX:,.0f} B/session after {count:,}" for count, size in sizes.items()))


def test_a_reset_leaves_nothing_of_the_session_behind():
    store = new_store()
    empty = retained_bytes(store)
    for index in range(SESSION_MAX):
        session_id = f"session-{index:06d}"
        serve_page(store, session_id)
        reset = store.reset(session_id)
        assert reset.found and reset.cleared_items_count == PAGE
    assert store.session_count() == 0 and store.summary("session-000000") is None
    # What is left is the empty table (CPython keeps a dict's grown table): a few bytes per session at most.
    assert retained_bytes(store) - empty <= 64 * SESSION_MAX
    assert store.reset("session-000000").found is False


def test_bytes_per_session_measured_with_tracemalloc():
    """Traced allocations the store keeps, per session held, once it is full and again after as many
    more sessions have replaced those (evictions keep it flat)."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        store = new_store()
        figures = []
        for index in range(2 * SESSION_MAX):
            serve_page(store, f"session-{index:06d}")
            if (index + 1) % SESSION_MAX == 0:
                gc.collect()
                figures.append((tracemalloc.get_traced_memory()[0] - before) / SESSION_MAX)
        assert store.session_count() == SESSION_MAX
        walked = retained_bytes(store) / SESSION_MAX
    finally:
        if not was_tracing:
            tracemalloc.stop()
    full, churned = figures
    assert churned <= full * (1 + FLAT)
    assert churned <= MEMORY_MAX_BYTES_PER_SESSION
    print(f"\nmemory store: {full:,.0f} bytes per session held (tracemalloc) when full, {churned:,.0f} after "
          f"{SESSION_MAX:,} evictions; {walked:,.0f} by walking its objects; {PAGE} items per session")


def test_the_memory_store_holds_deep_sessions_in_a_few_bytes_an_item():
    """4 bytes an item for the feed's served positions (array) and 1-2 for the seen bitmap."""
    store = MemorySessionStore(ttl=10**9, clock=lambda: 1_000.0)
    empty = retained_bytes(store)
    for number in range(10):
        serve_items(store, f"deep-{number}", 10, ITEMS, 100)
    per_item = (retained_bytes(store) - empty) / (10 * ITEMS)
    print(f"\nmemory store: {per_item:.2f} bytes per served item at {ITEMS:,} items per session")
    assert per_item <= 8
    probe = store.serve_page("deep-0", FEED, FeedView(b"", ()), offset=0, limit=0, max_ahead=0)
    assert probe.status is PageStatus.STALE  # the session's view, to read the feed with
    read = store.serve_page("deep-0", FEED, probe.view, offset=0, limit=ITEMS, max_ahead=0)
    assert read.positions == list(range(0, 10 * ITEMS, 10))
