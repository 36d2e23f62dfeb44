"""Hypothesis stateful tests of the random feed's contract, on both session store backends.

A state machine drives ``RandomFeeds.page`` over a generated catalog (keys ``1..max_key``, several
filters, each a predicate on the key, two feeds sharing one predicate) for a few sessions,
interleaving pages at any offset up to one page past what a feed has served, full drains, resets,
catalog growth and version bumps. A model keeps what each session has been served; after every
step the store and the pages must agree with it (README, "How the random feed works"):

* **no repeats**: a session is never served an item twice, across all its feeds, until a reset;
* **replay**: a served prefix never changes, and a page is its slice of the feed's sequence, so
  the same page asked twice is the same page;
* **coverage**: draining a feed serves exactly the matching items the session has not seen, and
  only matching items; a last page comes only when nothing matching is left unseen, and a page
  that is not the last is full;
* **reset**: it clears exactly what was served, bumps the generation, gives a fresh order (the
  first page after it overlaps the one before by chance only), and seen items come back.

Plans: one run in two makes every feed a candidate list, the other lets selectivity choose (a walk
for broad filters, a list for the sparse ones), so walks, lists, walk extension on catalog growth
and list re-planning on a version change are all exercised. Runs are derandomized (the same
examples every time, no example database) and bounded in size. Two deliberately broken variants
(claims blind to the session's other feeds; an order that ignores the generation) must be caught,
so the checks are known to bite.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test

from viralspot.feed.plans import FeedPlanner
from viralspot.feed.random_feed import RandomFeeds

SECRET = b"property-secret"
SESSIONS = 3
#: feed key -> filter predicate on a content key. "reels:all" and "posts:all" share their predicate:
#: an item served in one must never come in the other.
FILTERS = {
    "reels:all": lambda key: True,
    "posts:all": lambda key: True,
    "reels:even": lambda key: key % 2 == 0,
    "reels:thirds": lambda key: key % 3 == 1,
    "reels:sparse": lambda key: key % 29 == 0,   # ~3%: a candidate list even when others walk
    "reels:none": lambda key: False,
}
FEEDS = sorted(FILTERS)
#: Enough matching items that two random orders' first pages sharing over half their items is
#: (hypergeometric) a one-in-30,000 event: a shared first page means the order was not fresh.
FRESH_ORDER_MIN_MATCHING = 100
FRESH_PAGE = 10

PROPERTY_SETTINGS = settings(
    max_examples=120, stateful_step_count=50, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], print_blob=False)
#: For the machines run on deliberately broken feeds: find a failure, no need to shrink it.
MUTANT_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=60, phases=[Phase.generate], report_multiple_bugs=False)

class Catalog:
    """The generated catalog: keys ``1..max_key``, and a version every write bumps."""

    def __init__(self, max_key: int) -> None:
        self.max_key = max_key
        self.version = 1


class FilteredSource:
    """A ``CandidateSource``: the catalog's keys matching one predicate."""

    def __init__(self, catalog: Catalog, predicate) -> None:
        self.catalog = catalog
        self.predicate = predicate

    def catalog_state(self):
        return self.catalog.version, self.catalog.max_key

    def matching(self) -> set[int]:
        return {key for key in range(1, self.catalog.max_key + 1) if self.predicate(key)}

    def matching_among(self, keys):
        top = self.catalog.max_key
        return {key for key in keys if 1 <= key <= top and self.predicate(key)}

    def count_matching(self, keys):
        return len(self.matching_among(keys))

    def matching_keys(self):
        return self.catalog.version, np.array(sorted(self.matching()), dtype=np.int64)


class FeedMachine(RuleBasedStateMachine):
    """One example: an empty store, a fresh catalog and feed planner.

    Each example must start from an empty store, not merely from unused session ids: a session's
    order depends on its id, and Hypothesis needs an example to behave the same every time it runs it.
    """

    #: Set on the subclass a test builds: returns the store, emptied, for a new example.
    empty_store = None
    feeds_class = RandomFeeds

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).empty_store()
        self.session_ids = [f"s{index}" for index in range(SESSIONS)]
        self.catalog: Catalog | None = None
        self.feeds: RandomFeeds | None = None
        self.sources: dict[str, FilteredSource] = {}
        #: per session: each feed's served sequence, the union of them (seen), the generation, and
        #: whether the session is active (any page claimed since its last reset)
        self.served = [{feed: [] for feed in FEEDS} for _ in range(SESSIONS)]
        self.seen: list[set[int]] = [set() for _ in range(SESSIONS)]
        self.generation = [0] * SESSIONS
        self.active = [False] * SESSIONS

    # -- set-up -----------------------------------------------------------------------------------

    @initialize(max_key=st.integers(0, 700), lists_only=st.booleans())
    def make_catalog(self, max_key, lists_only):
        self.catalog = Catalog(max_key)
        # At most 50 estimated matches: a list (selective filters), else a walk; or always a list.
        planner = FeedPlanner(SECRET, list_max_keys=10**9 if lists_only else 50)
        self.feeds = self.feeds_class(SECRET, planner)
        self.sources = {feed: FilteredSource(self.catalog, predicate) for feed, predicate in FILTERS.items()}

    # -- one page, checked against the model ------------------------------------------------------

    def _page(self, session: int, feed: str, offset: int, limit: int):
        session_id, source = self.session_ids[session], self.sources[feed]
        before = list(self.served[session][feed])
        page = self.feeds.page(self.store, source, session_id, feed, offset, limit)
        self.active[session] = True
        sequence = self.store.read_feed(session_id, feed, 0, 10**9).keys
        # Replay: what was served stays served, in the same order; a page is its slice.
        assert sequence[:len(before)] == before, "a served prefix changed"
        assert page.keys == sequence[offset:offset + limit], "a page is not its slice of the feed"
        new = sequence[len(before):]
        # No repeats, within the feed and across the session's feeds; only matching items.
        assert len(set(new)) == len(new), "an item served twice in one feed"
        assert not set(new) & self.seen[session], "an item served again before a reset"
        matching = source.matching()
        assert set(new) <= matching, "an item that does not match the feed's filter"
        self.served[session][feed] = sequence
        self.seen[session].update(new)
        if page.is_last_page:
            assert len(sequence) <= offset + limit, "a last page with served items after it"
            assert matching <= self.seen[session], "a last page while matching items are unseen"
        else:
            assert len(page.keys) == limit, "a page that is not the last is short"
            assert len(sequence) > offset + limit or matching - self.seen[session], \
                "a page says more is coming when nothing matching is left"
        return page

    # -- rules ------------------------------------------------------------------------------------

    @rule(session=st.integers(0, SESSIONS - 1), feed=st.sampled_from(FEEDS), data=st.data())
    def page(self, session, feed, data):
        """Any page from the start up to one page past the served prefix (replay, frontier, jump)."""
        limit = data.draw(st.integers(1, 30), label="limit")
        offset = data.draw(st.integers(0, len(self.served[session][feed]) + limit), label="offset")
        self._page(session, feed, offset, limit)

    @precondition(lambda self: any(self.served[s][f] for s in range(SESSIONS) for f in FEEDS))
    @rule(data=st.data())
    def replay(self, data):
        """An already served page, asked again: the same items, nothing newly served."""
        session = data.draw(st.sampled_from([s for s in range(SESSIONS) if any(self.served[s].values())]),
                            label="session")
        feed = data.draw(st.sampled_from([f for f in FEEDS if self.served[session][f]]), label="feed")
        served = self.served[session][feed]
        offset = data.draw(st.integers(0, len(served) - 1), label="offset")
        limit = data.draw(st.integers(1, len(served) - offset), label="limit")
        seen = set(self.seen[session])
        page = self._page(session, feed, offset, limit)
        assert page.keys == served[offset:offset + limit]
        assert self.seen[session] == seen, "a replayed page served something new"

    @rule(session=st.integers(0, SESSIONS - 1), feed=st.sampled_from(FEEDS), limit=st.integers(7, 60))
    def drain(self, session, feed, limit):
        """Page to the end: exactly the matching items the session had not seen come, once each."""
        seen_before = set(self.seen[session])
        start = len(self.served[session][feed])
        offset = start
        for _ in range(10_000):
            page = self._page(session, feed, offset, limit)
            if page.is_last_page:
                break
            offset += limit
        else:
            raise AssertionError("a drain that never reached the last page")
        drained = self.served[session][feed][start:]
        assert set(drained) == self.sources[feed].matching() - seen_before
        assert len(drained) == len(set(drained))

    @rule(session=st.integers(0, SESSIONS - 1))
    def reset(self, session):
        session_id = self.session_ids[session]
        first_pages = {feed: served[:FRESH_PAGE] for feed, served in self.served[session].items()
                       if len(served) >= FRESH_PAGE
                       and len(self.sources[feed].matching()) >= FRESH_ORDER_MIN_MATCHING}
        result = self.store.reset(session_id)
        assert result.found == self.active[session]
        assert result.cleared_items_count == len(self.seen[session])
        if result.found:
            self.generation[session] += 1
        assert result.generation == self.generation[session]
        self.served[session] = {feed: [] for feed in FEEDS}
        self.seen[session] = set()
        self.active[session] = False
        for feed in FEEDS:
            view = self.store.read_feed(session_id, feed, 0, 10)
            assert (view.generation, view.plan, view.served_count, view.keys) == \
                (self.generation[session], None, 0, []), "a reset left feed state behind"
        for feed, before in sorted(first_pages.items())[:1]:
            after = self._page(session, feed, 0, FRESH_PAGE).keys
            assert len(after) == FRESH_PAGE
            assert len(set(after) & set(before)) <= FRESH_PAGE // 2, "the order after a reset is not fresh"

    @rule(added=st.integers(0, 150))
    def catalog_write(self, added):
        """A write: new keys (possibly none), and a new catalog version."""
        self.catalog.max_key += added
        self.catalog.version += 1

    @rule(session=st.integers(0, SESSIONS - 1))
    def inspect(self, session):
        summary = self.store.summary(self.session_ids[session])
        if not self.active[session]:
            assert summary is None
            return
        assert summary.served_items_count == len(self.seen[session])
        assert summary.generation == self.generation[session]
        for feed, served in self.served[session].items():
            if feed in summary.feeds:
                assert summary.feeds[feed].served == len(served)
            else:
                assert not served

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def sessions_never_repeat(self):
        for session in range(SESSIONS):
            everything = [key for served in self.served[session].values() for key in served]
            assert len(everything) == len(set(everything)) == len(self.seen[session])


def emptier(make_store, request):
    """A function giving an empty store of ``make_store``'s kind for each example: a new memory
    store; the one Redis store, its server (or every cluster node) flushed."""
    if make_store.kind == "memory":
        return lambda: make_store(ttl=10**6)
    store = make_store(ttl=10**6)
    if make_store.kind == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster_clean")
        return lambda: (cluster.flush(), store)[1]
    client = request.getfixturevalue("redis_clean").client()
    request.addfinalizer(client.close)
    return lambda: (client.flushall(), store)[1]


def test_feed_contract_holds_under_generated_histories(make_store, request):
    machine = type("FeedMachineOnStore", (FeedMachine,), {"empty_store": staticmethod(emptier(make_store, request))})
    run_state_machine_as_test(machine, settings=PROPERTY_SETTINGS)


def test_the_model_catches_a_store_that_repeats_items_across_feeds():
    """The machine is not vacuous: a store whose claims check only the feed's own items (not what the
    session's other feeds served) is caught serving an item again."""
    from viralspot.store.memory import MemorySessionStore, SeenKeys

    class CrossFeedRepeats(MemorySessionStore):
        prefilter_seen = False  # the feed leaves the seen check to the claim

        def claim_unseen(self, session_id, feed_key, **kwargs):
            session = self._sessions.get(session_id)
            if session is None:
                return super().claim_unseen(session_id, feed_key, **kwargs)
            everything, own = session.seen, SeenKeys()
            feed = session.feeds.get(feed_key)
            own.update(feed.served.tolist() if feed is not None else [])
            session.seen = own
            try:
                result = super().claim_unseen(session_id, feed_key, **kwargs)
            finally:
                session.seen = everything
            everything.update(result.claimed)
            return result

    machine = type("CrossFeedMachine", (FeedMachine,),
                   {"empty_store": staticmethod(lambda: CrossFeedRepeats(ttl=10**6))})
    with pytest.raises(AssertionError, match="served again"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)


def test_the_model_catches_an_order_that_is_not_fresh_after_a_reset():
    """...and feeds that ignore the generation (the same order after a reset) are caught too."""
    from viralspot.store.memory import MemorySessionStore

    class StaleOrder(RandomFeeds):
        def permutation(self, session_id, generation, size):
            return super().permutation(session_id, 0, size)

    machine = type("StaleOrderMachine", (FeedMachine,),
                   {"empty_store": staticmethod(lambda: MemorySessionStore(ttl=10**6)), "feeds_class": StaleOrder})
    with pytest.raises(AssertionError, match="not fresh"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)
