"""The random feed algorithm over an in-process catalog: sequences, replay, exhaustion, plans."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from viralspot.feed.plans import WINDOW_SECONDS, FeedPlanner, ListPlan, WalkPlan
from viralspot.feed.random_feed import BeyondServedPrefix, RandomFeeds, session_permutation
from viralspot.store.memory import MemorySessionStore


class InMemoryCatalog:
    """A ``CandidateSource``: keys 1..max_key, of which ``matching`` pass the filter."""

    def __init__(self, max_key: int, matching, version: int = 1) -> None:
        self.max_key = max_key
        self.matching = set(matching)
        self.version = version
        self.lookups = 0

    def catalog_state(self):
        return self.version, self.max_key

    def matching_among(self, keys):
        self.lookups += len(keys)
        return {k for k in keys if k in self.matching}

    def count_matching(self, keys):
        return len(self.matching_among(keys))

    def matching_keys(self):
        return self.version, np.array(sorted(self.matching), dtype=np.int64)


def make_feeds(list_max_keys=20_000):
    """Feeds whose filters use a candidate list up to ``list_max_keys`` estimated matches (0: every
    filter walks)."""
    return RandomFeeds(b"test-secret", FeedPlanner(b"test-secret", list_max_keys=list_max_keys))


def drain(feeds, store, source, session_id, signature, limit=24):
    pages, offset = [], 0
    while True:
        page = feeds.page(store, source, session_id, signature, offset, limit)
        pages.append(page)
        offset += limit
        if page.is_last_page:
            return pages


@pytest.mark.parametrize("list_max_keys, matching", [
    (20_000, range(1, 501)),            # small catalog: candidate list
    (0, range(1, 2001)),                # walk over every key
    (0, range(1, 2001, 3)),             # walk with a one-in-three filter
    (100, range(5, 2001, 97)),          # selective filter: candidate list
])
def test_draining_serves_every_matching_item_exactly_once(list_max_keys, matching):
    feeds, store = make_feeds(list_max_keys), MemorySessionStore()
    source = InMemoryCatalog(2000, matching)
    pages = drain(feeds, store, source, "s", "f")
    served = [key for page in pages for key in page.keys]
    assert sorted(served) == sorted(matching)
    assert [p.is_last_page for p in pages].count(True) == 1
    assert pages[-1].is_last_page and all(not p.is_last_page for p in pages[:-1])
    # The page holding the last item says so: no trailing empty page unless the count divides evenly.
    if len(served) % 24:
        assert pages[-1].keys


def test_plan_choice_follows_selectivity():
    planner = FeedPlanner(b"k", list_max_keys=500)
    wide = InMemoryCatalog(10_000, range(1, 10_001, 2))
    narrow = InMemoryCatalog(10_000, range(1, 10_001, 100))
    assert isinstance(planner.new_plan("wide", wide, wide.catalog_state()), WalkPlan)
    assert isinstance(planner.new_plan("narrow", narrow, narrow.catalog_state()), ListPlan)


def test_filters_with_few_enough_matches_use_a_list_whatever_their_share():
    planner = FeedPlanner(b"k", list_max_keys=6_000)
    wide = InMemoryCatalog(10_000, range(1, 10_001, 2))       # ~5,000 matches: a list
    wider = InMemoryCatalog(10_000, range(1, 10_001))         # 10,000 matches: a walk
    assert isinstance(planner.new_plan("wide", wide, wide.catalog_state()), ListPlan)
    assert isinstance(planner.new_plan("wider", wider, wider.catalog_state()), WalkPlan)
    # A catalog no larger than the limit never needs the selectivity probe.
    small = InMemoryCatalog(6_000, range(1, 6_001))
    plan = planner.new_plan("small", small, small.catalog_state())
    assert isinstance(plan, ListPlan) and small.lookups == 0


class ClockCatalog(InMemoryCatalog):
    """Keys 1..max_key posted one second apart; a key matches while posted + span >= now."""

    clock_dependent = True

    def __init__(self, max_key: int, first_posted: int, span: int) -> None:
        super().__init__(max_key, ())
        self.posted = {key: first_posted + key for key in range(1, max_key + 1)}
        self.span = span
        self.builds = []

    def expiring_keys(self, at):
        self.builds.append(at)
        keys = [key for key, posted in self.posted.items() if posted + self.span >= at]
        return (self.version, np.array(keys, dtype=np.int64),
                np.array([self.posted[key] + self.span for key in keys], dtype=np.int64))


WINDOW_START = 1_800_000_000 - 1_800_000_000 % WINDOW_SECONDS


def clock_feeds(now):
    planner = FeedPlanner(b"k", list_max_keys=6_000, clock=lambda: now[0])
    return RandomFeeds(b"k", planner), planner


def test_filters_on_the_clock_get_a_list_per_window():
    now = [WINDOW_START + 10.0]
    _feeds, planner = clock_feeds(now)
    recent = ClockCatalog(10_000, WINDOW_START - 20_000, 15_000)  # keys from 5,000 match at the window's start
    plan = planner.new_plan("recent", recent, recent.catalog_state())
    assert isinstance(plan, ListPlan) and plan.window == WINDOW_START
    assert plan.token == f"l:1:{plan.size}:{WINDOW_START}" and plan.size == 10_000 - 5_000 + 1
    assert recent.builds == [WINDOW_START]  # built for the window's start, the same on every server
    assert planner.continue_plan(plan.token, False, "recent", recent, recent.catalog_state())[1] is False
    now[0] = WINDOW_START + WINDOW_SECONDS  # the next window: a new list, the feed re-planned
    plan2, rebased = planner.continue_plan(plan.token, False, "recent", recent, recent.catalog_state())
    assert rebased and plan2.window == WINDOW_START + WINDOW_SECONDS and plan2.size == plan.size - WINDOW_SECONDS


def test_items_are_not_served_once_they_leave_the_date_range():
    now = [WINDOW_START + 10.0]
    feeds, _planner = clock_feeds(now)
    store = MemorySessionStore()
    # Key k matches while WINDOW_START - 15_500 + k + 15_000 >= now: from key 510 at first.
    source = ClockCatalog(2_000, WINDOW_START - 15_500, 15_000)
    first = feeds.page(store, source, "s", "recent", 0, 24)
    assert first.keys and min(first.keys) >= 510  # 500..509 are in the window's list but expired
    now[0] += 300  # keys below 810 stop matching
    pages = drain(feeds, store, source, "s", "recent")
    assert pages[0].keys == first.keys  # a served page replays as it was
    later = [key for page in pages[1:] for key in page.keys]
    assert len(set(later)) == len(later) and not set(later) & set(first.keys)
    assert min(later) >= 810
    assert set(later) == set(range(810, 2_001)) - set(first.keys)


def test_a_new_window_continues_the_feed_without_repeats():
    now = [WINDOW_START + WINDOW_SECONDS - 5.0]
    feeds, _planner = clock_feeds(now)
    store = MemorySessionStore()
    # Key k matches while WINDOW_START - 6_905 + k + 10_000 >= now: from key 500 now, 510 in the next hour.
    source = ClockCatalog(3_000, WINDOW_START - 6_905, 10_000)
    before = [key for offset in range(0, 240, 24) for key in feeds.page(store, source, "s", "r", offset, 24).keys]
    assert min(before) >= 500
    now[0] = WINDOW_START + WINDOW_SECONDS + 5.0  # the next window
    pages = drain(feeds, store, source, "s", "r")
    replayed = [key for page in pages[:10] for key in page.keys]
    assert replayed == before  # the served prefix replays as it was
    after = [key for page in pages[10:] for key in page.keys]
    assert after and not set(after) & set(before) and len(set(after)) == len(after)
    assert min(after) >= 510 and set(before) | set(after) >= set(range(510, 3_001))  # nothing matching skipped


def test_selective_lists_larger_than_the_list_cache_walk_instead():
    # Kept only if it fits: a list heavier than the cache would be rebuilt on every page.
    planner = FeedPlanner(b"k", list_max_keys=1_000, list_cache_keys=50)
    narrow = InMemoryCatalog(10_000, range(1, 10_001, 100))  # 1%, 100 keys > 50
    assert isinstance(planner.new_plan("narrow", narrow, narrow.catalog_state()), WalkPlan)


class BlockedCatalog(InMemoryCatalog):
    """Builds block until ``release`` is set; ``fail`` makes the build raise instead."""

    def __init__(self, *args, fail=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.fail = fail
        self.builds = 0

    def matching_keys(self):
        self.builds += 1
        self.release.wait(30)
        if self.fail:
            raise ConnectionError("database went away during the build")
        return super().matching_keys()


def waiting(flights, key) -> int:
    """Callers waiting on a SingleFlight's computation of ``key`` under way (0 when none is)."""
    with flights._lock:
        flight = flights._flights.get(key)
        return flight.waiters if flight is not None else 0


def build_from_threads(planner, source, count=8):
    """``count`` threads asking for one list at once; released when all but the builder wait on it.
    Returns the plans, or the exceptions, each thread got."""
    outcomes = []

    def ask():
        try:
            outcomes.append(planner.new_plan("f", source, (1, 5_000)))
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes.append(error)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    key = ("f", 1, None)
    for _ in range(3000):  # bounded wait for a state, not for a race: every thread has arrived
        if waiting(planner._builds, key) == count - 1:
            break
        threading.Event().wait(0.01)
    assert waiting(planner._builds, key) == count - 1
    source.release.set()
    for thread in threads:
        thread.join()
    return outcomes


def test_concurrent_requests_for_one_list_build_it_once():
    planner = FeedPlanner(b"k", list_max_keys=100_000)
    source = BlockedCatalog(5_000, range(1, 5_001, 3))
    plans = build_from_threads(planner, source)
    assert source.builds == 1
    assert len(plans) == 8 and all(plan.keys is plans[0].keys for plan in plans)
    assert plans[0].size == len(range(1, 5_001, 3))
    # Another catalog version is another list.
    planner.new_plan("f", source, (2, 5_000))
    assert source.builds == 2


def test_a_failed_build_fails_its_waiters_once_and_the_next_request_builds_again():
    planner = FeedPlanner(b"k", list_max_keys=100_000)
    source = BlockedCatalog(5_000, range(1, 5_001, 3), fail=True)
    outcomes = build_from_threads(planner, source)
    assert source.builds == 1  # not repeated by each waiter in turn
    assert len(outcomes) == 8 and all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    source.fail = False
    assert planner.new_plan("f", source, (1, 5_000)).size == len(range(1, 5_001, 3))
    assert source.builds == 2


def test_replaying_a_page_returns_the_same_items_and_records_nothing():
    feeds, store = make_feeds(0), MemorySessionStore()
    source = InMemoryCatalog(5000, range(1, 5001))
    first = feeds.page(store, source, "s", "f", 0, 24)
    second = feeds.page(store, source, "s", "f", 24, 24)
    lookups = source.lookups
    assert feeds.page(store, source, "s", "f", 0, 24) == first
    assert source.lookups == lookups  # a page behind the frontier is pure replay
    assert feeds.page(store, source, "s", "f", 24, 24) == second
    assert store.summary("s").served_items_count == 48
    assert store.read_feed("s", "f", 0, 48).keys == first.keys + second.keys


def test_jumping_ahead_extends_the_sequence_through_the_gap():
    feeds, store = make_feeds(0), MemorySessionStore()
    source = InMemoryCatalog(5000, range(1, 5001))
    later = feeds.page(store, source, "s", "f", 48, 24)
    assert len(later.keys) == 24
    assert store.read_feed("s", "f", 0, 0).served_count == 72
    assert feeds.page(store, source, "s", "f", 48, 24) == later


def test_items_seen_under_one_filter_never_reappear_under_another():
    feeds, store = make_feeds(0), MemorySessionStore()
    source_all = InMemoryCatalog(3000, range(1, 3001))
    source_even = InMemoryCatalog(3000, range(2, 3001, 2))
    first = [k for offset in range(0, 500, 100)
             for k in feeds.page(store, source_all, "s", "all", offset, 100).keys]
    assert len(set(first)) == 500
    evens = [k for p in drain(feeds, store, source_even, "s", "even") for k in p.keys]
    assert not set(first) & set(evens)
    assert set(evens) == set(range(2, 3001, 2)) - set(first)


def test_same_session_same_generation_gives_the_same_order_on_another_server():
    source = InMemoryCatalog(50_000, range(1, 50_001))
    a = make_feeds(0).page(MemorySessionStore(), source, "s", "f", 0, 24)
    b = make_feeds(0).page(MemorySessionStore(), source, "s", "f", 0, 24)
    assert a == b


def test_reset_gives_a_fresh_order():
    feeds, store = make_feeds(0), MemorySessionStore()
    source = InMemoryCatalog(50_000, range(1, 50_001))
    before = feeds.page(store, source, "s", "f", 0, 24).keys
    assert store.reset("s").cleared_items_count == 24
    after = feeds.page(store, source, "s", "f", 0, 24).keys
    assert len(set(before) & set(after)) < 3


def test_catalog_growth_extends_an_exhausted_walk():
    feeds, store = make_feeds(0), MemorySessionStore()
    source = InMemoryCatalog(1000, range(1, 1001))
    served = [k for p in drain(feeds, store, source, "s", "f", limit=100) for k in p.keys]
    assert sorted(served) == list(range(1, 1001))
    source.max_key, source.matching, source.version = 1200, set(range(1, 1201)), 2
    more = [k for p in drain(feeds, store, source, "s", "f", limit=100) for k in p.keys]
    assert sorted(set(more) - set(served)) == list(range(1001, 1201))


def test_catalog_change_rebases_a_list_feed_without_repeats():
    feeds, store = make_feeds(), MemorySessionStore()
    source = InMemoryCatalog(500, range(1, 301))
    first = feeds.page(store, source, "s", "f", 0, 100).keys
    source.matching, source.version = set(range(1, 401)), 2
    rest = [k for p in drain(feeds, store, source, "s", "f", limit=100) for k in p.keys]
    served = first + [k for k in rest if k not in first]
    assert len(served) == len(set(served)) and set(served) == set(range(1, 401))


def test_a_list_that_differs_from_the_feeds_within_one_version_re_plans_instead_of_failing():
    """A list rebuilt after eviction (or by another process) can be read at another catalog state
    than the one the feed started on, under the same version number: the feed continues on it."""
    feeds, store = make_feeds(), MemorySessionStore()
    source = InMemoryCatalog(500, range(1, 301))
    first = feeds.page(store, source, "s", "f", 0, 100).keys
    feeds.planner._lists = type(feeds.planner._lists)(8, max_weight=10**6, weigh=lambda entry: 1)  # evicted
    source.matching = set(range(1, 351))  # same version, other keys: what a lagging read could see
    rest = [k for p in drain(feeds, store, source, "s", "f", limit=100) for k in p.keys]
    served = first + [k for k in rest if k not in first]
    assert len(served) == len(set(served)) and set(served) == set(range(1, 351))


def test_a_feed_on_a_newer_version_than_the_remembered_state_stays_on_it():
    feeds, store = make_feeds(), MemorySessionStore()
    source = InMemoryCatalog(500, range(1, 301), version=7)
    first = feeds.page(store, source, "s", "f", 0, 50).keys
    plan, rebased = feeds.planner.continue_plan(store.read_feed("s", "f", 0, 0).plan, False, "f", source, (6, 500))
    assert not rebased and plan.version == 7  # a process whose state lags does not move the feed back
    second = feeds.page(store, source, "s", "f", 50, 50).keys
    assert not set(first) & set(second)


def test_lists_are_cached_under_the_version_they_were_read_at():
    planner = FeedPlanner(b"k", list_max_keys=100_000)
    source = InMemoryCatalog(500, range(1, 301), version=9)  # the database is already at version 9
    plan = planner.new_plan("f", source, (8, 500))  # a state remembered from before the last write
    assert plan.version == 9 and plan.token.startswith("l:9:")
    source.matching = set()  # the list is not read again for either state
    assert planner.new_plan("f", source, (9, 500)).size == 300
    assert planner.new_plan("f", source, (8, 500)).size == 300


def test_a_list_read_while_the_catalog_kept_changing_is_not_kept():
    class Changing(InMemoryCatalog):
        def matching_keys(self):
            return None, super().matching_keys()[1]

    planner = FeedPlanner(b"k", list_max_keys=100_000)
    source = Changing(500, range(1, 301))
    assert planner.new_plan("f", source, (1, 500)).size == 300
    source.matching = set(range(1, 11))
    assert planner.new_plan("f", source, (1, 500)).size == 10


def test_feeds_never_reach_past_the_largest_32_bit_key():
    planner = FeedPlanner(b"k", list_max_keys=0)
    source = InMemoryCatalog(2**33, range(2**32 - 5, 2**32 + 5))
    grown, rebased = planner.continue_plan("w:1:1000:1", True, "f", source, source.catalog_state())
    assert rebased and (grown.lo, grown.hi) == (1000, 2**32)
    listed = FeedPlanner(b"k", list_max_keys=2**34).new_plan("g", source, source.catalog_state())
    assert listed.keys.dtype == np.uint32 and listed.keys.tolist() == list(range(2**32 - 5, 2**32))


def test_empty_match_is_a_last_empty_page():
    feeds, store = make_feeds(0), MemorySessionStore()
    page = feeds.page(store, InMemoryCatalog(5000, []), "s", "f", 0, 24)
    assert page.keys == [] and page.is_last_page


def test_concurrent_pages_of_one_session_never_share_items():
    feeds, store = make_feeds(0), MemorySessionStore()
    source = InMemoryCatalog(20_000, range(1, 20_001))
    results = {}
    barrier = threading.Barrier(8)

    def fetch(offset):
        barrier.wait()
        results[offset] = feeds.page(store, source, "s", "f", offset, 24).keys

    threads = [threading.Thread(target=fetch, args=(i * 24,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = [k for offset in sorted(results) for k in results[offset]]
    assert len(served) == 8 * 24 and len(set(served)) == len(served)
    assert store.read_feed("s", "f", 0, 8 * 24).keys == served


def test_lru_cache_drops_the_least_recently_used():
    from viralspot.lru import LruCache

    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # drops "b"
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    with pytest.raises(ValueError):
        LruCache(0)


def test_lru_cache_keeps_its_total_weight_under_the_limit():
    from viralspot.lru import LruCache

    cache = LruCache(10, max_weight=10, weigh=len)
    cache.put("a", "xxxx")
    cache.put("b", "xxxx")
    assert cache.get("a") == "xxxx"  # "a" is now the most recent
    cache.put("c", "xxxxx")  # 13 > 10: drops "b"
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("xxxx", None, "xxxxx")
    cache.put("a", "x")  # replacing an entry replaces its weight: 1 + 5
    cache.put("d", "xxxx")  # 10: fits, nothing dropped (with the old weight of "a" it would not)
    assert len(cache) == 3 and (cache.get("a"), cache.get("c"), cache.get("d")) == ("x", "xxxxx", "xxxx")
    cache.put("d", "xxxx")  # the same entry again: still 10
    cache.put("huge", "x" * 11)  # heavier than the whole cache: not kept, nothing dropped
    assert cache.get("huge") is None and len(cache) == 3
    with pytest.raises(ValueError):
        LruCache(2, max_weight=5)


def test_permutations_are_remembered_per_session_generation_and_size():
    feeds = RandomFeeds(b"test-secret", FeedPlanner(b"test-secret"))
    first = feeds.permutation("s1", 0, 1000)
    assert feeds.permutation("s1", 0, 1000) is first
    positions = np.arange(1000)
    assert (first(positions) == session_permutation(b"test-secret", "s1", 0, 1000)(positions)).all()
    # Any other generation, size or session is another permutation, never the remembered one.
    for other in (feeds.permutation("s1", 1, 1000), feeds.permutation("s1", 0, 999),
                  feeds.permutation("s2", 0, 1000)):
        assert other is not first
    assert not (feeds.permutation("s1", 1, 1000)(positions) == first(positions)).all()


class CountingStore(MemorySessionStore):
    """The memory store as a Redis-like store: no seen pre-filter, every call counted."""

    prefilter_seen = False

    def __init__(self):
        super().__init__()
        self.calls = []

    def read_feed(self, *args, **kwargs):
        self.calls.append("read_feed")
        return super().read_feed(*args, **kwargs)

    def claim_unseen(self, *args, **kwargs):
        self.calls.append("claim_unseen")
        return super().claim_unseen(*args, **kwargs)

    def seen_among(self, *args, **kwargs):
        self.calls.append("seen_among")
        return super().seen_among(*args, **kwargs)


@pytest.mark.parametrize("list_max_keys", [20_000, 0], ids=["list", "walk"])
def test_a_page_is_one_claim_after_a_read_when_the_claim_checks_seen_keys(list_max_keys):
    """A store whose seen check is a round trip: a session's first page reads the feed and claims;
    each next page in order claims at once on the feed as this process left it (one round trip);
    a replay reads."""
    feeds, store = make_feeds(list_max_keys), CountingStore()
    source = InMemoryCatalog(5000, range(1, 5001))
    pages = []
    for offset in range(0, 240, 24):
        store.calls.clear()
        pages.append(feeds.page(store, source, "s", "f", offset, 24).keys)
        assert store.calls == (["read_feed", "claim_unseen"] if offset == 0 else ["claim_unseen"])
    store.calls.clear()
    assert feeds.page(store, source, "s", "f", 48, 24).keys == pages[2]
    assert store.calls == ["read_feed"]
    served = [key for page in pages for key in page]
    assert len(set(served)) == len(served) == 240


@pytest.mark.parametrize("list_max_keys", [20_000, 0], ids=["list", "walk"])
def test_a_remembered_view_that_lags_still_claims_at_once_and_never_repeats(list_max_keys):
    """Another process served the next pages: the claim on the view this process remembers goes
    on from the feed's own cursor (same plan), so the page is still one claim, with no read, no
    conflict counted and nothing served twice; after a reset the failed claim answers the feed,
    and the page claims again on it."""
    store, source = CountingStore(), InMemoryCatalog(5000, range(1, 5001))
    here, there = make_feeds(list_max_keys), make_feeds(list_max_keys)
    first = here.page(store, source, "s", "f", 0, 24).keys
    second = there.page(store, source, "s", "f", 24, 24).keys  # another process, same store
    store.calls.clear()
    third = here.page(store, source, "s", "f", 48, 24).keys  # remembered cursor lags
    assert store.calls == ["claim_unseen"]
    fourth = there.page(store, source, "s", "f", 72, 24).keys  # and the other one's lags too
    served = first + second + third + fourth
    assert len(set(served)) == len(served) == 96
    assert store.read_feed("s", "f", 0, 96).keys == served  # in page order: nothing claimed ahead
    assert here.page(store, source, "s", "f", 24, 24).keys == second
    store.reset("s")
    store.calls.clear()
    fresh = here.page(store, source, "s", "f", 96, 24)  # remembered generation is the old one
    assert store.calls == ["claim_unseen", "claim_unseen"]  # the failed claim answered the feed
    view = store.read_feed("s", "f", 0, 120)
    assert (view.generation, view.served_count, len(set(view.keys))) == (1, 120, 120)  # the new generation's
    assert fresh.keys == view.keys[96:120]


class PresumingStore(CountingStore):
    """The counting store, presuming views as the Redis store does."""

    presume_views = True


@pytest.mark.parametrize("list_max_keys", [20_000, 0], ids=["list", "walk"])
def test_a_feed_a_process_has_not_seen_is_presumed_and_claimed_at_once(list_max_keys):
    """A store whose read is a round trip: a session's first page, and a page of a session that
    another process served up to it, are one claim (no read); nothing is served twice, and the
    pages are the ones a single process serves."""
    store, source = PresumingStore(), InMemoryCatalog(5000, range(1, 5001))
    processes = [make_feeds(list_max_keys) for _ in range(3)]
    served = []
    for number in range(9):
        store.calls.clear()
        served += processes[number % 3].page(store, source, "s", "f", number * 24, 24).keys
        assert store.calls == ["claim_unseen"], number
    assert len(set(served)) == len(served) == 216
    assert served == drain_keys(make_feeds(list_max_keys), source, 216)


def drain_keys(feeds, source, count):
    """The first ``count`` keys of session "s" in one process, from a store of its own."""
    store = MemorySessionStore()
    return [key for offset in range(0, count, 24) for key in feeds.page(store, source, "s", "f", offset, 24).keys]


@pytest.mark.parametrize("list_max_keys", [20_000, 0], ids=["list", "walk"])
def test_a_wrong_presumption_costs_one_more_claim_and_serves_the_same_pages(list_max_keys):
    """Presumed wrong (a reset made generation 1; items another feed served put the served count
    behind the cursor; the session has not got that far; the page is a replay): the failed claim
    answers the feed, no read is made and no conflict counted, and the page is what a read would
    have given."""
    source = InMemoryCatalog(5000, range(1, 5001))
    store, here = PresumingStore(), make_feeds(list_max_keys)
    here.page(store, source, "s", "f", 0, 24)
    store.reset("s")
    store.calls.clear()
    page = make_feeds(list_max_keys).page(store, source, "s", "f", 0, 24)  # generation 1, not 0
    assert store.calls == ["claim_unseen", "claim_unseen"]
    assert page.keys == store.read_feed("s", "f", 0, 24).keys and store.read_feed("s", "f", 0, 0).generation == 1

    # Keys served in feed "g" are skipped in "f": after 2 pages "f"'s cursor is past its served count.
    store = PresumingStore()
    other = here.page(store, source, "t", "g", 0, 480).keys
    first = [key for offset in (0, 24) for key in here.page(store, source, "t", "f", offset, 24).keys]
    view = store.read_feed("t", "f", 0, 0)
    assert view.cursor > view.served_count == 48
    store.calls.clear()
    third = make_feeds(list_max_keys).page(store, source, "t", "f", 48, 24).keys
    assert store.calls == ["claim_unseen", "claim_unseen"]
    served = other + first + third
    assert len(third) == 24 and len(set(served)) == len(served)

    store.calls.clear()  # a page past what the session was served is still refused
    with pytest.raises(BeyondServedPrefix):
        make_feeds(list_max_keys).page(store, source, "u", "f", 48, 24, max_ahead=24)
    assert store.calls == ["claim_unseen"] and store.summary("u") is None
    store.calls.clear()  # a replay of a page another process served
    assert make_feeds(list_max_keys).page(store, source, "t", "f", 0, 24).keys == first[:24]
    assert store.calls == ["claim_unseen"]


def test_a_view_that_lags_past_the_page_replays_what_another_process_served():
    """The other process already served past this page: the claim takes nothing and answers the
    served page."""
    store, source = CountingStore(), InMemoryCatalog(5000, range(1, 5001))
    here, there = make_feeds(), make_feeds()
    here.page(store, source, "s", "f", 0, 24)
    there.page(store, source, "s", "f", 24, 24)
    there.page(store, source, "s", "f", 48, 24)
    there.page(store, source, "s", "f", 72, 24)
    served_before = store.read_feed("s", "f", 0, 0).served_count
    page = here.page(store, source, "s", "f", 48, 24)
    assert page.keys == store.read_feed("s", "f", 48, 72).keys and not page.is_last_page
    assert store.read_feed("s", "f", 0, 0).served_count == served_before == 96


@pytest.mark.parametrize("list_max_keys", [20_000, 0], ids=["list", "walk"])
def test_items_seen_in_another_feed_make_short_claims_not_conflicts(list_max_keys):
    """A session that has seen most of a feed's items elsewhere gets its few unseen ones, or an
    empty last page, never 503 SESSION_CONFLICT."""
    feeds, store = make_feeds(list_max_keys), CountingStore()
    source = InMemoryCatalog(3000, range(1, 3001))
    everything = {k for p in drain(feeds, store, source, "s", "all", limit=100) for k in p.keys}
    assert everything == set(range(1, 3001))
    assert drain(feeds, store, source, "s", "again")[0].keys == []  # all seen: one empty last page
    source.matching |= set(range(3001, 3011))
    source.max_key, source.version = 3010, 2
    late = [k for p in drain(feeds, store, source, "s", "later") for k in p.keys]
    assert sorted(late) == list(range(3001, 3011))


def test_a_page_scans_at_most_max_scan_positions_and_comes_back_short_rather_than_further():
    """A walked feed whose items the session has mostly seen elsewhere: each request checks at most
    ``max_scan`` keys; a short page is not the last, and asking for the same offset continues it."""
    store = MemorySessionStore()
    wide = RandomFeeds(b"test-secret", FeedPlanner(b"test-secret", list_max_keys=0), max_scan=500)
    most = InMemoryCatalog(5000, range(31, 5001))
    served = [k for p in drain(wide, store, most, "s", "most", limit=100) for k in p.keys]
    assert sorted(served) == list(range(31, 5001))  # every item seen, but the first 30
    source = InMemoryCatalog(5000, range(1, 5001))
    wide.planner.new_plan("other", source, source.catalog_state())  # its selectivity probe, once
    source.lookups = 0
    page = wide.page(store, source, "s", "other", 0, 24)  # only 30 unseen of 5,000: a short page
    assert source.lookups <= 500 and not page.is_last_page and len(page.keys) < 24
    by_offset, offset = {}, 0
    for _request in range(100):
        source.lookups = 0
        page = wide.page(store, source, "s", "other", offset, 24)
        assert source.lookups <= 500
        by_offset[offset] = page  # a short page asked again comes back longer: keep the latest
        if page.is_last_page:
            break
        if len(page.keys) == 24:
            offset += 24
    assert page.is_last_page
    other = [k for offset in sorted(by_offset) for k in by_offset[offset].keys]
    assert len(set(other)) == len(other)
    assert set(other) == set(range(1, 5001)) - set(served)
