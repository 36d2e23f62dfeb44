"""What only the memory session store does: TTL refresh by access, LRU eviction, its byte bounds,
``SeenKeys``. The behaviour every backend shares is in test_store_contract.py."""
from __future__ import annotations

import random

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


@pytest.mark.parametrize("count", [1, 24, 256, 257, 2400])
@pytest.mark.parametrize("batch", [1, 24, 500])
def test_seen_keys_answer_membership_at_every_size(count, batch):
    from viralspot.store.memory import SeenKeys

    keys = random.Random(count).sample(range(1, 1_000_001), count)
    seen = SeenKeys()
    for start in range(0, count, batch):
        seen.update(keys[start:start + batch])
    seen.update(keys[:3])  # keys already there are not counted twice
    seen.update([keys[-1]])
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
