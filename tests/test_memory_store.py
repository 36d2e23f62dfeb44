"""What only the memory session store does: its least-recently-used cap (``max_sessions``), its
idle expiry on a clock it is given, its ``stats``, and the limits it refuses. The behaviour every
backend shares is in test_store_contract.py."""
from __future__ import annotations

import pytest

from redis_fixtures import ManualClock
from viralspot.store import backend_from_url
from viralspot.store.base import FeedView, PageStatus
from viralspot.store.memory import MemorySessionStore

SEED = b"\x01" * 8
FEED = b"r" + bytes(8)
BOUNDS = (1000,)


def page(store, session_id, positions, *, offset=None, create=True, cursor=0, max_ahead=1000):
    """A page that takes ``positions`` (the first page of a feed unless ``cursor`` says otherwise)."""
    return store.serve_page(session_id, FEED, FeedView(SEED, BOUNDS, cursor), offset=0 if offset is None else offset,
                            limit=len(positions), max_ahead=max_ahead, candidates=list(positions),
                            scanned_to=(positions[-1] + 1) if positions else cursor, create=create)


def read(store, session_id):
    return store.serve_page(session_id, FEED, FeedView(SEED, BOUNDS), offset=0, limit=10, max_ahead=1000)


def test_the_least_recently_used_session_is_evicted_at_capacity():
    clock = ManualClock()
    store = MemorySessionStore(max_sessions=3, clock=clock)
    for name in ("a", "b", "c"):
        assert page(store, name, [1]).status is PageStatus.SERVED
        clock.now += 1
    read(store, "a")  # "b" is now the least recently used
    clock.now += 1
    page(store, "d", [1])
    assert store.session_ids() == ["d", "a", "c"] and store.session_count() == 3
    assert read(store, "b").status is PageStatus.ABSENT
    assert store.evicted == 1 and store.stats()["evicted"] == 1
    # A page that creates nothing (STALE: a cursor ahead of a new feed) evicts nothing either.
    assert page(store, "e", [5], cursor=3).status is PageStatus.STALE
    assert page(store, "f", [5], offset=2000).status is PageStatus.BEYOND
    assert store.session_ids() == ["d", "a", "c"] and store.evicted == 1
    # Pages of sessions already there evict nothing.
    page(store, "c", [2], cursor=2, offset=1)
    assert store.session_ids() == ["c", "d", "a"] and store.evicted == 1


def test_the_items_all_sessions_hold_are_bounded_least_recently_used_first():
    """A few sessions paged deep held memory without bound (``max_sessions`` counts sessions, each
    up to ``max_items``): ``max_total_items`` bounds the items they hold together, evicting the least
    recently used sessions, never the one being served; expiry and resets give their items back."""
    clock = ManualClock()
    store = MemorySessionStore(max_total_items=10, clock=clock)
    page(store, "a", range(4))
    page(store, "b", range(4))
    assert store.total_items == 8 and store.evicted == 0
    read(store, "a")  # "b" is now the least recently used
    page(store, "c", range(3))  # 11 > 10: "b" goes
    assert store.session_ids() == ["c", "a"] and store.total_items == 7 and store.evicted == 1
    assert read(store, "b").status is PageStatus.ABSENT
    # The session being served is never evicted for itself: alone, it may pass the bound.
    assert page(store, "a", range(4, 15), cursor=4, offset=4).status is PageStatus.SERVED
    assert store.session_ids() == ["a"] and store.total_items == 15 and store.evicted == 2
    assert store.reset("a").cleared_items_count == 15 and store.total_items == 0
    page(store, "d", range(2))
    clock.now += store.ttl
    assert store.session_count() == 0 and store.total_items == 0 and store.expired == 1


def test_an_evicted_session_is_forgotten_whole():
    store = MemorySessionStore(max_sessions=1, clock=ManualClock())
    page(store, "a", [1, 2, 3])
    page(store, "b", [7])
    assert store.summary("a") is None and store.reset("a").found is False
    again = page(store, "a", [1, 2, 3])
    assert again.positions == [1, 2, 3] and store.summary("a").served_items_count == 3


def test_idle_expiry_follows_the_clock_it_is_given_and_is_counted():
    clock = ManualClock()
    store = MemorySessionStore(ttl=60, clock=clock)
    page(store, "old", [1])
    clock.now += 30
    page(store, "young", [1])
    clock.now += 29.5
    read(store, "old")  # 59.5 s idle: still there, and touched now
    clock.now += 59.5
    assert store.session_ids() == ["old"]  # "young" idle 89 s
    assert store.stats()["expired"] == 1
    clock.now += 0.5  # "old" idle exactly the TTL
    assert store.session_count() == 0 and store.expired == 2


def test_summary_does_not_keep_a_session_alive_and_reports_the_clock():
    clock = ManualClock(now=5000.0)
    store = MemorySessionStore(ttl=100, clock=clock)
    page(store, "s", [1, 2])
    clock.now += 40
    summary = store.summary("s")
    assert (summary.created_at, summary.last_seen_at, summary.expires_in_seconds) == (5000.0, 5000.0, 60.0)
    clock.now += 60
    assert store.summary("s") is None


def test_stats_report_the_backend_and_its_counters():
    clock = ManualClock()
    store = MemorySessionStore(ttl=10, max_sessions=2, clock=clock)
    assert store.stats() == {"storage_type": "in_memory_dict", "active_sessions": 0, "max_sessions": 2,
                             "evicted": 0, "expired": 0, "items_held": 0, "max_total_items": 20_000_000}
    for name in ("a", "b", "c"):
        page(store, name, [1])
    assert store.stats()["items_held"] == 2
    clock.now += 10
    assert store.stats() == {"storage_type": "in_memory_dict", "active_sessions": 0, "max_sessions": 2,
                             "evicted": 1, "expired": 2, "items_held": 0, "max_total_items": 20_000_000}
    assert store.shared is False and store.ping() is True


def test_backend_from_url_builds_the_memory_store_from_the_settings():
    store = backend_from_url("memory://", {"SESSION_TTL": 120, "SESSION_MAX": 7, "SESSION_MAX_FEEDS": 3,
                                           "SESSION_MAX_ITEMS": 99, "SESSION_MAX_TOTAL_ITEMS": 500})
    assert isinstance(store, MemorySessionStore)
    assert (store.ttl, store.max_sessions, store.max_feeds, store.max_items, store.max_total_items) == (
        120.0, 7, 3, 99, 500)


@pytest.mark.parametrize("limits", [{"ttl": 0}, {"ttl": -1}, {"max_sessions": 0}, {"max_feeds": 0},
                                    {"max_items": 0}, {"max_total_items": 0}])
def test_rejects_nonsense_limits(limits):
    with pytest.raises(ValueError):
        MemorySessionStore(**limits)
