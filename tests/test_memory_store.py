"""The memory session store: claim semantics, reset, TTL expiry, LRU eviction, thread safety."""
from __future__ import annotations

import random
import threading
from itertools import count

import pytest

from viralspot.store.memory import MemorySessionStore


class ManualClock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claim(store, session_id, keys, feed="f", want=None, generation=0, cursor=0, plan=None, domain=10**6):
    candidates = [(position, key) for position, key in enumerate(keys, start=cursor)]
    return store.claim_unseen(
        session_id, feed, generation=generation, expect_cursor=cursor, expect_plan=plan, plan="p",
        domain=domain, candidates=candidates, scanned_to=cursor + len(keys),
        want=len(keys) if want is None else want, page=(0, 100))


def test_claim_appends_to_served_sequence_and_seen_set():
    store = MemorySessionStore()
    result = claim(store, "s", [5, 3, 9])
    assert result.ok and result.claimed == [5, 3, 9] and result.keys == [5, 3, 9]
    assert store.seen_among("s", [1, 3, 5, 7, 9]) == [3, 5, 9]
    view = store.read_feed("s", "f", 1, 3)
    assert (view.cursor, view.served_count, view.keys, view.plan) == (3, 3, [3, 9], "p")


def test_claim_skips_items_seen_in_another_feed():
    store = MemorySessionStore()
    claim(store, "s", [1, 2], feed="reels")
    result = claim(store, "s", [2, 3, 1, 4], feed="posts")
    assert result.claimed == [3, 4]


def test_claim_stops_at_want_and_leaves_cursor_on_first_leftover():
    store = MemorySessionStore()
    result = claim(store, "s", [10, 11, 12, 13], want=2)
    assert result.claimed == [10, 11] and result.has_more
    assert store.read_feed("s", "f", 0, 0).cursor == 2  # position of key 12


def test_claim_marks_exhaustion_at_domain_end():
    store = MemorySessionStore()
    result = claim(store, "s", [1, 2, 3], domain=3)
    assert result.exhausted and not result.has_more
    assert store.read_feed("s", "f", 0, 0).exhausted


def test_claim_is_a_compare_and_set():
    store = MemorySessionStore()
    assert claim(store, "s", [1, 2]).ok
    stale = claim(store, "s", [3, 4], cursor=0)  # cursor moved to 2 meanwhile
    assert not stale.ok
    assert store.read_feed("s", "f", 0, 10).keys == [1, 2]
    wrong_generation = claim(store, "s", [3], cursor=2, plan="p", generation=7)
    assert not wrong_generation.ok
    assert claim(store, "s", [3], cursor=2, plan="p").ok


def test_reset_clears_served_items_and_bumps_generation():
    store = MemorySessionStore()
    claim(store, "s", [1, 2, 3])
    result = store.reset("s")
    assert (result.found, result.cleared_items_count, result.generation) == (True, 3, 1)
    assert store.seen_among("s", [1, 2, 3]) == []
    view = store.read_feed("s", "f", 0, 10)
    assert (view.generation, view.served_count, view.plan) == (1, 0, None)
    assert not claim(store, "s", [1], generation=0).ok
    assert claim(store, "s", [1], generation=1).ok


def test_reset_of_unknown_session_creates_nothing():
    store = MemorySessionStore()
    result = store.reset("ghost")
    assert (result.found, result.cleared_items_count, result.total_active_sessions) == (False, 0, 0)
    assert store.session_count() == 0


def test_idle_sessions_expire_after_ttl():
    clock = ManualClock()
    store = MemorySessionStore(ttl=60, clock=clock)
    claim(store, "old", [1])
    clock.now += 30
    claim(store, "young", [2])
    clock.now += 31  # "old" idle 61 s, "young" 31 s
    assert store.session_count() == 1
    assert store.summary("old") is None and store.summary("young") is not None
    assert store.reset("old").found is False


def test_access_refreshes_ttl():
    clock = ManualClock()
    store = MemorySessionStore(ttl=60, clock=clock)
    claim(store, "s", [1])
    clock.now += 50
    store.read_feed("s", "f", 0, 1)
    clock.now += 50
    assert store.summary("s") is not None


def test_least_recently_used_session_is_evicted_at_capacity():
    store = MemorySessionStore(max_sessions=3)
    for name in ("a", "b", "c"):
        claim(store, name, [1])
    store.read_feed("a", "f", 0, 1)  # "b" is now the least recently used
    claim(store, "d", [1])
    assert store.session_count() == 3
    assert sorted(store.session_ids()) == ["a", "c", "d"]
    assert store.evicted == 1


def test_oldest_feed_is_dropped_past_max_feeds_but_seen_set_stays():
    store = MemorySessionStore(max_feeds=2)
    claim(store, "s", [1], feed="f1")
    claim(store, "s", [2], feed="f2")
    claim(store, "s", [3], feed="f3")
    assert set(store.summary("s").feeds) == {"f2", "f3"}
    assert store.seen_among("s", [1, 2, 3]) == [1, 2, 3]


def test_served_items_cost_under_eight_bytes_each():
    store = MemorySessionStore()
    keys = random.Random(1).sample(range(1, 1_000_001), 50_000)
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        claim(store, "s", chunk, cursor=start, plan=None if start == 0 else "p")
    assert store.summary("s").served_items_count == 50_000
    assert store.served_bytes() / 50_000 <= 8


def test_rejects_nonsense_limits():
    with pytest.raises(ValueError):
        MemorySessionStore(ttl=0)


def test_threads_claiming_and_resetting_lose_and_double_count_nothing():
    store = MemorySessionStore()
    sessions = [f"s{i}" for i in range(4)]
    fresh_keys = count(1)
    key_lock = threading.Lock()
    claimed = {s: 0 for s in sessions}
    cleared = {s: 0 for s in sessions}
    tally_lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(400):
            session_id = rng.choice(sessions)
            if rng.random() < 0.05:
                result = store.reset(session_id)
                with tally_lock:
                    cleared[session_id] += result.cleared_items_count
                continue
            with key_lock:
                keys = [next(fresh_keys) for _ in range(3)]
            while True:  # the compare-and-set loop every client of the store runs
                view = store.read_feed(session_id, "f", 0, 0)
                result = store.claim_unseen(
                    session_id, "f", generation=view.generation, expect_cursor=view.cursor,
                    expect_plan=view.plan, plan="p", domain=10**9,
                    candidates=[(view.cursor + i, k) for i, k in enumerate(keys)],
                    scanned_to=view.cursor + 3, want=3, page=(0, 0))
                if result.ok:
                    with tally_lock:
                        claimed[session_id] += len(result.claimed)
                    break

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every claim got three fresh keys, and every one of them was taken exactly once.
    assert sum(claimed.values()) == next(fresh_keys) - 1
    for session_id in sessions:
        summary = store.summary(session_id)
        remaining = summary.served_items_count if summary else 0
        assert claimed[session_id] == cleared[session_id] + remaining


@pytest.mark.parametrize("count", [1, 24, 256, 257, 2400])
@pytest.mark.parametrize("batch", [1, 24, 500])
def test_seen_keys_answer_membership_at_every_size(count, batch):
    from viralspot.store.memory import SeenKeys

    keys = random.Random(count).sample(range(1, 1_000_001), count)
    seen = SeenKeys()
    for start in range(0, count, batch):
        seen.update(keys[start:start + batch])
    seen.update(keys[:3])  # keys already there are not counted twice
    seen.add(keys[-1])
    assert len(seen) == count
    assert all(key in seen for key in keys)
    outside = [k for k in random.Random(7).sample(range(1, 1_000_001), 500) if k not in set(keys)]
    assert not any(key in seen for key in outside)
    assert sorted(seen.among(keys[:50] + outside[:50])) == sorted(keys[:50])


@pytest.mark.parametrize("count", [24, 240, 2400])
def test_small_sessions_also_cost_at_most_eight_bytes_per_item(count):
    store = MemorySessionStore()
    keys = random.Random(count).sample(range(1, 1_000_001), count)
    claim(store, "s", keys)
    assert store.served_bytes() / count <= 8
