"""The memory session store under many sessions: it never holds more than ``VIRALSPOT_SESSION_MAX``
(``max_sessions``) and its memory stays flat once that many are held, whatever the number of
sessions that come and go (least recently used evicted first; reset sessions' freshness records
capped the same way).

Each session is served one page of 24 items in one claim, the way the random feed records a page.
The 100,000-session runs measure the store's retained size by walking its objects (fast); the
bytes per session figure is measured with tracemalloc on a smaller run (tracing every allocation
makes each claim several times slower). Run with ``-s`` to see the figures.
"""
from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
import types

from viralspot.store.memory import MemorySessionStore

SESSION_MAX = 20_000
SESSIONS = 100_000
CHECKPOINTS = (20_000, 50_000, 100_000)
ITEMS = 24
#: The store's memory at a later checkpoint may exceed the first by at most this share.
FLAT = 0.10
#: A regression guard on the measured figure (about 1,050 bytes on CPython 3.11, x86-64).
MAX_BYTES_PER_SESSION = 1_600

#: One page of candidates (position, key), shared by every session: what a session holds does not
#: depend on which keys it was served, and sharing keeps the test's own allocations out of the way.
CANDIDATES = [(position, position * 104_729 % 1_000_000 + 1) for position in range(ITEMS)]
_NOT_DATA = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
             type(threading.Lock()))


def serve_page(store: MemorySessionStore, session_id: str) -> None:
    """A new session's first page of ``ITEMS`` items, recorded by one claim (tests/session_helpers.py
    ``serve`` without its read, which would only double the run time)."""
    result = store.claim_unseen(
        session_id, "reels", generation=0, expect_cursor=0, expect_plan=None, plan="p", domain=10**6,
        candidates=CANDIDATES, scanned_to=ITEMS, want=ITEMS, page=(0, 0))
    assert result.ok and len(result.claimed) == ITEMS


def retained_bytes(store: MemorySessionStore) -> int:
    """``sys.getsizeof`` summed over every object the store reaches (each once), types, modules,
    functions and locks aside: the sessions, their ids, feeds, arrays, and the tables holding them."""
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


def test_100k_sessions_stay_within_session_max_with_flat_memory():
    store = new_store()
    sizes = {}
    for index in range(SESSIONS):
        serve_page(store, f"session-{index:06d}")
        done = index + 1
        if done % 1_000 == 0:
            assert store.session_count() == min(done, SESSION_MAX)
        if done in CHECKPOINTS:
            assert store.evicted == done - SESSION_MAX
            # The most recently used are kept: the oldest session held is the 20,000th from the end.
            assert store.summary(f"session-{done - SESSION_MAX:06d}") is not None
            assert done == SESSION_MAX or store.summary(f"session-{done - SESSION_MAX - 1:06d}") is None
            assert store.served_bytes() == SESSION_MAX * ITEMS * 4 * 2  # seen set + served sequence
            sizes[done] = retained_bytes(store)
    assert_flat(sizes)
    print(f"\nmemory store, {SESSION_MAX:,} sessions held of {SESSIONS:,}: retained "
          + ", ".join(f"{size / SESSION_MAX:,.0f} B/session after {count:,}" for count, size in sizes.items()))


def test_freshness_records_of_reset_sessions_are_capped_too():
    """100,000 sessions each served and then reset: a reset leaves a freshness record (the next
    order's generation) for the TTL, and those are capped at the session maximum as well."""
    store = new_store()
    sizes = {}
    for index in range(SESSIONS):
        session_id = f"session-{index:06d}"
        serve_page(store, session_id)
        reset = store.reset(session_id)
        assert reset.found and reset.cleared_items_count == ITEMS and reset.generation == 1
        if index + 1 in CHECKPOINTS:
            assert store.session_count() == 0
            assert store.read_feed(session_id, "reels", 0, 0).generation == 1  # its record is kept
            assert store.read_feed(f"session-{index + 1 - SESSION_MAX:06d}", "reels", 0, 0).generation == 1
            assert index + 1 == SESSION_MAX or \
                store.read_feed(f"session-{index - SESSION_MAX:06d}", "reels", 0, 0).generation == 0
            sizes[index + 1] = retained_bytes(store)
    # Flat once records come and go: the first deletions grow the OrderedDict's table once (CPython
    # sizes a dict with deleted slots for 3x its entries), then it stays that size (+22% here).
    assert_flat(sizes, first=50_000)
    assert_flat(sizes, margin=0.30)


def test_bytes_per_session_measured_with_tracemalloc():
    """The figure the README reports: traced allocations the store keeps, per session held, once it
    is full and again after as many more sessions have replaced those (evictions keep it flat)."""
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
    assert churned <= MAX_BYTES_PER_SESSION
    assert abs(walked - churned) <= 0.25 * churned  # the walk of the 100k tests measures the same thing
    print(f"\nmemory store: {full:,.0f} bytes per session held (tracemalloc) when full, {churned:,.0f} after "
          f"{SESSION_MAX:,} evictions; {walked:,.0f} by walking its objects; {ITEMS} items per session "
          f"({ITEMS * 8} of them the seen set and served sequence)")
