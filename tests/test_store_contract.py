"""The session store contract (base.py), run on every backend: memory and Redis.

``make_store`` (tests/redis_fixtures.py) builds a fresh backend of the current kind: the memory
store on a manual clock, the Redis store on a real, emptied redis-server.
"""
from __future__ import annotations

import random
import threading
import time
from itertools import count

import pytest

from viralspot.store.base import FeedSummary


def claim(store, session_id, keys, feed="f", want=None, generation=0, cursor=0, plan=None, domain=10**6,
          page=(0, 100), new_plan="p"):
    candidates = [(position, key) for position, key in enumerate(keys, start=cursor)]
    return store.claim_unseen(
        session_id, feed, generation=generation, expect_cursor=cursor, expect_plan=plan, plan=new_plan,
        domain=domain, candidates=candidates, scanned_to=cursor + len(keys),
        want=len(keys) if want is None else want, page=page)


def claim_next(store, session_id, keys, feed="f", want=None, domain=10**9):
    """Claim ``keys`` at the feed's current state (the read-then-claim every client runs)."""
    view = store.read_feed(session_id, feed, 0, 0)
    return claim(store, session_id, keys, feed=feed, want=want, generation=view.generation, cursor=view.cursor,
                 plan=view.plan, domain=domain)


def test_claim_appends_to_served_sequence_and_seen_set(make_store):
    store = make_store()
    result = claim(store, "s", [5, 3, 9])
    assert result.ok and result.claimed == [5, 3, 9] and result.keys == [5, 3, 9]
    assert (result.served_count, result.exhausted, result.has_more) == (3, False, False)
    assert sorted(store.seen_among("s", [1, 3, 5, 7, 9])) == [3, 5, 9]
    view = store.read_feed("s", "f", 1, 3)
    assert (view.generation, view.cursor, view.served_count, view.keys, view.plan) == (0, 3, 3, [3, 9], "p")
    more = claim(store, "s", [7, 5, 8], cursor=3, plan="p", page=(2, 5))
    assert more.claimed == [7, 8] and more.keys == [9, 7, 8] and more.served_count == 5


def stale_claim(store, keys, *, expect_cursor, plan="p", new_plan="p", want=None, page=(0, 100)):
    """A claim from a view that lags: candidates for positions from ``expect_cursor`` on."""
    candidates = list(enumerate(keys, start=expect_cursor))
    return store.claim_unseen("s", "f", generation=0, expect_cursor=expect_cursor, expect_plan=plan,
                              plan=new_plan, domain=10**6, candidates=candidates,
                              scanned_to=expect_cursor + len(keys),
                              want=len(keys) if want is None else want, page=page)


def test_a_claim_whose_cursor_lags_on_the_same_plan_goes_on_from_the_feeds_cursor(make_store):
    store = make_store()
    claim(store, "s", [11, 12])  # the feed: plan "p", cursor 2
    assert claim(store, "s", [13], cursor=2, plan="p").ok  # another process: cursor 3
    # Candidates for positions 1.. (this process's view says cursor 1): positions 1 and 2 were
    # walked by the other claims and are dropped; 3 and 4 are claimed, the page clamps the count.
    result = stale_claim(store, [12, 13, 14, 15, 16], expect_cursor=1, want=5, page=(0, 5))
    assert result.ok and result.claimed == [14, 15] and result.keys == [11, 12, 13, 14, 15]
    assert (result.cursor, result.served_count, result.has_more) == (5, 5, True)
    assert store.read_feed("s", "f", 0, 10).keys == [11, 12, 13, 14, 15]


def test_a_lagging_claim_still_fails_on_another_plan_or_past_its_scan(make_store):
    store = make_store()
    claim(store, "s", [11, 12, 13])  # cursor 3
    assert not stale_claim(store, [12, 13], expect_cursor=1).ok  # scanned to 3: nothing left to go on from
    assert not stale_claim(store, [12, 13, 14], expect_cursor=1, new_plan="q").ok  # a rebased plan
    assert not stale_claim(store, [12, 13, 14], expect_cursor=1, plan="q", new_plan="q").ok  # not the feed's
    assert not stale_claim(store, [14, 15], expect_cursor=4).ok  # ahead of the feed: never
    assert store.read_feed("s", "f", 0, 10).keys == [11, 12, 13]


def test_read_feed_and_seen_among_create_nothing(make_store):
    store = make_store()
    view = store.read_feed("ghost", "f", 0, 10)
    assert (view.generation, view.plan, view.cursor, view.served_count, view.exhausted, view.keys) == \
        (0, None, 0, 0, False, [])
    assert store.seen_among("ghost", [1, 2]) == []
    assert store.session_count() == 0 and store.session_ids() == [] and store.summary("ghost") is None


def test_claim_skips_items_seen_in_another_feed(make_store):
    store = make_store()
    claim(store, "s", [1, 2], feed="reels")
    result = claim(store, "s", [2, 3, 1, 4], feed="posts")
    assert result.claimed == [3, 4]
    assert store.read_feed("s", "posts", 0, 10).keys == [3, 4]
    assert store.summary("s").served_items_count == 4


def test_claim_stops_at_want_and_leaves_cursor_on_first_leftover(make_store):
    store = make_store()
    claim(store, "s", [11], feed="other")
    result = claim(store, "s", [10, 11, 12, 13], want=1)
    assert result.claimed == [10] and result.has_more and not result.exhausted
    assert store.read_feed("s", "f", 0, 0).cursor == 2  # position of key 12: 11 was seen, so skipped


def test_claim_of_nothing_wanted_only_moves_the_cursor(make_store):
    store = make_store()
    result = claim(store, "s", [4, 5], want=0)
    assert result.ok and result.claimed == [] and result.has_more
    view = store.read_feed("s", "f", 0, 10)
    assert (view.cursor, view.served_count, view.plan) == (0, 0, "p")


def test_claim_marks_exhaustion_at_domain_end(make_store):
    store = make_store()
    result = claim(store, "s", [1, 2, 3], domain=3)
    assert result.exhausted and not result.has_more
    view = store.read_feed("s", "f", 0, 0)
    assert view.exhausted and view.cursor == 3


def test_claim_is_a_compare_and_set(make_store):
    store = make_store()
    assert claim(store, "s", [1, 2]).ok
    assert not claim(store, "s", [3, 4], cursor=0).ok  # the cursor moved to 2 meanwhile
    assert not claim(store, "s", [3], cursor=2, plan="q").ok  # another plan
    assert not claim(store, "s", [3], cursor=2, plan=None).ok  # the feed has a plan now
    assert not claim(store, "s", [3], cursor=2, plan="p", generation=7).ok
    assert store.read_feed("s", "f", 0, 10).keys == [1, 2]
    assert store.summary("s").served_items_count == 2
    assert claim(store, "s", [3], cursor=2, plan="p").ok
    assert store.read_feed("s", "f", 0, 10).keys == [1, 2, 3]


def test_a_failed_claim_answers_the_feed_as_a_read_does(make_store):
    store = make_store()
    assert claim(store, "s", [1, 2, 3]).ok
    failed = claim(store, "s", [4], cursor=1, plan="p", generation=3, page=(1, 3))
    assert not failed.ok and failed.claimed == []
    assert failed.view == store.read_feed("s", "f", 1, 3)
    assert (failed.view.generation, failed.view.cursor, failed.view.served_count, failed.view.keys) == (0, 3, 3, [2, 3])
    ghost = claim(store, "ghost", [4], plan="p", cursor=5)  # no session: the fresh view, nothing made
    assert not ghost.ok and ghost.view == store.read_feed("ghost", "f", 0, 100) and store.summary("ghost") is None


def test_expect_served_must_match_exactly(make_store):
    store = make_store()
    claim(store, "s", [11, 12], feed="g")  # seen in another feed: "f" skips them
    assert claim(store, "s", [11, 12, 13], page=(0, 1)).claimed == [13]  # "f": cursor 3, served 1

    def presumed(served, cursor, keys):
        return store.claim_unseen("s", "f", generation=0, expect_cursor=cursor, expect_plan="p", plan="p",
                                  domain=10**6, candidates=list(enumerate(keys, start=cursor)),
                                  scanned_to=cursor + len(keys), want=len(keys), page=(served, served + len(keys)),
                                  expect_served=served)

    wrong = presumed(3, 3, [14])  # the right cursor, not the served count
    assert not wrong.ok and (wrong.view.cursor, wrong.view.served_count) == (3, 1)
    lagging = presumed(1, 2, [12, 14])  # the served count, a cursor that lags: no going on from it
    assert not lagging.ok and lagging.view.cursor == 3
    right = presumed(1, 3, [14, 15])
    assert right.ok and right.claimed == [14, 15] and right.keys == [14, 15]
    assert store.read_feed("s", "f", 0, 10).keys == [13, 14, 15]


def test_the_same_claim_twice_serves_nothing_twice(make_store):
    store = make_store()
    first = claim(store, "s", [1, 2, 3], want=2)
    again = claim(store, "s", [1, 2, 3], want=2)
    assert first.ok and first.claimed == [1, 2]
    assert not again.ok
    view = store.read_feed("s", "f", 0, 10)
    assert (view.keys, view.cursor, view.served_count) == ([1, 2], 2, 2)
    assert store.summary("s").served_items_count == 2


def test_a_new_plan_restarts_the_walk_without_serving_twice(make_store):
    store = make_store()
    claim(store, "s", [1, 2], domain=2)
    rebased = store.claim_unseen(  # the walk of a new plan starts at 0, whatever the old cursor
        "s", "f", generation=0, expect_cursor=2, expect_plan="p", plan="q", domain=10,
        candidates=[(0, 2), (1, 1), (2, 3), (3, 4)], scanned_to=4, want=5, page=(0, 10))
    assert rebased.ok and rebased.claimed == [3, 4]
    view = store.read_feed("s", "f", 0, 10)
    assert (view.plan, view.cursor, view.keys, view.exhausted) == ("q", 4, [1, 2, 3, 4], False)


def test_reset_ends_the_session_and_leaves_a_fresher_generation(make_store):
    store = make_store()
    claim(store, "s", [1, 2, 3])
    claim(store, "other", [1])
    assert store.session_count() == 2
    result = store.reset("s")
    assert (result.found, result.cleared_items_count, result.generation, result.total_active_sessions) == \
        (True, 3, 1, 1)
    assert store.session_count() == 1 and store.session_ids() == ["other"]
    assert store.summary("s") is None
    assert store.seen_among("s", [1, 2, 3]) == []
    again = store.reset("s")
    assert (again.found, again.cleared_items_count, again.total_active_sessions) == (False, 0, 1)
    view = store.read_feed("s", "f", 0, 10)
    assert (view.generation, view.served_count, view.plan, view.cursor) == (1, 0, None, 0)
    assert store.session_count() == 1  # reading the freshness record starts no session
    assert not claim(store, "s", [1], generation=0).ok
    assert store.session_count() == 1 and store.summary("s") is None
    assert claim(store, "s", [1], generation=1).claimed == [1]
    summary = store.summary("s")
    assert (summary.generation, summary.served_items_count) == (1, 1)
    assert store.session_count() == 2
    assert store.reset("s").generation == 2


def test_reset_of_unknown_session_creates_nothing(make_store):
    store = make_store()
    result = store.reset("ghost")
    assert (result.found, result.cleared_items_count, result.generation, result.total_active_sessions) == \
        (False, 0, 0, 0)
    assert store.session_count() == 0 and store.session_ids() == []
    assert store.read_feed("ghost", "f", 0, 1).generation == 0


def test_oldest_feed_is_forgotten_past_max_feeds_but_its_items_stay_seen(make_store):
    store = make_store(max_feeds=2)
    claim(store, "s", [1], feed="f1")
    claim(store, "s", [2], feed="f2")
    store.read_feed("s", "f1", 0, 1)  # f1 is now the most recently used feed
    claim(store, "s", [3], feed="f3")
    assert list(store.summary("s").feeds) == ["f1", "f3"]
    assert sorted(store.seen_among("s", [1, 2, 3])) == [1, 2, 3]
    assert store.read_feed("s", "f2", 0, 10).served_count == 0
    assert claim(store, "s", [2, 4], feed="f2").claimed == [4]


def test_session_ids_most_recently_used_first(make_store):
    """To within a second on Redis: a process touches a session's index entry at most once a second."""
    store = make_store()
    for name in ("a", "b", "c"):
        claim(store, name, [1])
    make_store.advance(1.0)
    store.read_feed("a", "f", 0, 1)
    assert store.session_ids() == ["a", "c", "b"]
    assert store.session_ids(limit=2) == ["a", "c"]
    make_store.advance(1.0)
    claim_next(store, "b", [2])
    assert store.session_ids() == ["b", "a", "c"]
    assert store.session_count() == 3


def test_summary_shows_the_session(make_store):
    store = make_store(ttl=600)
    before = make_store.now()
    claim(store, "s", [1, 2, 3], feed="reels", domain=3)
    claim(store, "s", [3, 4], feed="posts")
    after = make_store.now()
    summary = store.summary("s")
    assert summary.session_id == "s" and summary.generation == 0 and summary.served_items_count == 4
    assert before - 1 <= summary.created_at <= summary.last_seen_at <= after + 1
    assert 590 <= summary.expires_in_seconds <= 600
    assert summary.feeds == {"reels": FeedSummary(served=3, exhausted=True, cursor=3, plan="p"),
                             "posts": FeedSummary(served=1, exhausted=False, cursor=2, plan="p")}


def test_idle_sessions_expire_after_ttl(make_store):
    if make_store.kind == "memory":
        store = make_store(ttl=60)
        claim(store, "old", [1])
        make_store.clock.now += 30
        claim(store, "young", [2])
        make_store.clock.now += 31  # "old" idle 61 s, "young" 31 s
        assert store.session_count() == 1 and store.session_ids() == ["young"]
    else:  # real server time: a short TTL, waited for with a bounded poll (no way to move Redis's clock)
        store = make_store(ttl=0.3)
        claim(store, "old", [1])
        deadline = time.monotonic() + 5
        while store.summary("old") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.session_count() == 0 and store.session_ids() == []
    assert store.summary("old") is None
    assert store.reset("old").found is False
    assert store.read_feed("old", "f", 0, 10).served_count == 0
    assert claim(store, "old", [1]).claimed == [1]  # expired: its items may be served again


def test_threads_never_serve_a_key_twice(make_store):
    store = make_store()
    pool = list(range(1, 121))
    served = {feed: [] for feed in ("f1", "f2", "f3")}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            feed = rng.choice(list(served))
            keys = rng.sample(pool, 6)  # overlapping candidates: every thread wants the same keys
            for _attempt in range(100):
                result = claim_next(store, "s", keys, feed=feed, want=3)
                if result.ok:
                    with lock:
                        served[feed].extend(result.claimed)
                    break

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [key for keys in served.values() for key in keys]
    assert len(everything) == len(set(everything))
    assert store.summary("s").served_items_count == len(everything)
    for feed, keys in served.items():
        assert sorted(store.read_feed("s", feed, 0, 1000).keys) == sorted(keys)


def test_threads_claiming_and_resetting_lose_and_double_count_nothing(make_store):
    store = make_store()
    sessions = [f"s{i}" for i in range(3)]
    fresh_keys = count(1)
    key_lock = threading.Lock()
    claimed = {s: 0 for s in sessions}
    cleared = {s: 0 for s in sessions}
    tally_lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(60):
            session_id = rng.choice(sessions)
            if rng.random() < 0.1:
                result = store.reset(session_id)
                with tally_lock:
                    cleared[session_id] += result.cleared_items_count
                continue
            with key_lock:
                keys = [next(fresh_keys) for _ in range(3)]
            while True:  # the compare-and-set loop every client of the store runs
                result = claim_next(store, session_id, keys)
                if result.ok:
                    with tally_lock:
                        claimed[session_id] += len(result.claimed)
                    break

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(claimed.values()) == next(fresh_keys) - 1
    for session_id in sessions:
        summary = store.summary(session_id)
        remaining = summary.served_items_count if summary else 0
        assert claimed[session_id] == cleared[session_id] + remaining
    assert store.session_count() == sum(store.summary(s) is not None for s in sessions)


@pytest.mark.parametrize("size", [1, 300, 5000])
def test_seen_set_answers_membership_at_every_size(make_store, size):
    store = make_store()
    rng = random.Random(size)
    keys = rng.sample(range(1, 2**32), size // 2) + rng.sample(range(70_000, 140_000), size - size // 2)
    for start in range(0, size, 500):
        claim_next(store, "s", keys[start:start + 500])
    assert store.summary("s").served_items_count == size
    taken = set(keys)
    outside = [k for k in rng.sample(range(60_000, 150_000), 400) if k not in taken]
    probe = keys[:200] + outside
    assert sorted(store.seen_among("s", probe)) == sorted(keys[:200])
    assert claim_next(store, "s", probe).claimed == outside
