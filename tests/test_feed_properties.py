"""Hypothesis stateful tests of the random feed's contract, on every session store backend.

A state machine drives ``RandomFeedService.serve`` over a generated catalog (``ListCatalog`` of
tests/test_feed_algorithm.py: keys ``1..largest``, filters that are predicates on the key, two
endpoints whose "all" feeds share their predicate) for a few sessions, through two services that
share the store as two processes would (on Redis each with its own client), interleaving pages at
any offset up to one page past what a feed has served, replays on the other process, full
drains, resets and catalog growth. A model keeps what each session has been served, read back
from the store; after every step the store and the pages must agree with it:

* **no repeats**: a session is never served an item twice, across all its feeds, until a reset;
* **replay and determinism**: a served prefix never changes, a page is its slice of the feed's
  sequence, and either process serves the same page;
* **one order**: a feed's served positions in the session's order (a weighted feed's: in its
  order of tickets) ascend;
* **coverage**: draining a feed serves exactly the matching items the session has not seen, and
  only matching items; a last page comes only when nothing matching is left unseen, and a page
  that is not the last is full (``isLastPage`` is exact);
* **reset**: it clears exactly what was served, leaves no feed behind, and gives a fresh order
  (the first page after it overlaps the one before by chance only); seen items come back.

Runs are derandomized (the same examples every time, no example database) and bounded in size.
So that an example runs the same every time, the seeds new sessions draw come from a counter
hashed (``Seeds``, in place of ``os.urandom`` in ``feed/service.py``): distinct per session
and per reset, as random ones are, but the same on every run of an example; and on Redis each
reset is heard by both processes (``reset_notices.py``) before the next step, then kept or
forgotten as the example draws, so no page races the notice, and no notice outlives its example.
Two deliberately broken variants (a store blind to the session's other feeds; one seed for every
session) must be caught, so the checks are known to bite. Beside the machine, a deterministic
deep-feed test spans several of the Redis layout's 64 Ki-position blocks (dense bitmap and sparse
array containers) on every backend. A reset forgets the session whole; the next page draws a new
seed.
"""
from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test
from pyroaring import BitMap

from test_feed_algorithm import SECRET, ListCatalog, feed_of, keys_of, make_service
from test_feed_algorithm import request as page_args
from test_failover import wait_for
from viralspot.feed import service as service_module
from viralspot.feed.order import SessionOrder
from viralspot.feed.weights import MAX_TICKETS, ticket_keys
from viralspot.store import FeedView, PageStatus
from viralspot.store.memory import MemorySessionStore

SESSIONS = 3
PROCESSES = 2
#: (endpoint kind, filter name, weighted). "reels all" and "posts all" share their predicate: an item
#: served in one must never come in the other; the weighted feeds overlap the others too.
FEEDS = [("reels", "all", False), ("posts", "all", False), ("reels", "even", False), ("reels", "thirds", False),
         ("reels", "sparse", False), ("reels", "none", False), ("reels", "all", True), ("posts", "even", True),
         ("reels", "sparse", True)]
#: Enough matching items that two random orders' first pages sharing over half their items is
#: (hypergeometric) a one-in-a-million event: a shared first page means the order was not fresh.
FRESH_ORDER_MIN_MATCHING = 100
FRESH_PAGE = 10

PROPERTY_SETTINGS = {
    "memory": settings(max_examples=100, stateful_step_count=50, derandomize=True, database=None, deadline=None,
                       suppress_health_check=list(HealthCheck), print_blob=False),
}
PROPERTY_SETTINGS["redis"] = settings(PROPERTY_SETTINGS["memory"], max_examples=30)
PROPERTY_SETTINGS["redis-cluster"] = settings(PROPERTY_SETTINGS["memory"], max_examples=20)
#: For the machines run on deliberately broken feeds: find a failure, no need to shrink it.
MUTANT_SETTINGS = settings(PROPERTY_SETTINGS["memory"], max_examples=60, phases=[Phase.generate],
                           report_multiple_bugs=False)


class Seeds:
    """Stands in for the ``os`` module of ``feed/service.py``: ``urandom`` gives the n-th seed of the
    example. ``constant`` makes every seed the same (a broken service, for the mutant test)."""

    def __init__(self, constant: bool = False) -> None:
        self.constant = constant
        self.drawn = 0

    def urandom(self, size: int) -> bytes:
        self.drawn += 1
        return hashlib.sha256(b"seed %d" % (0 if self.constant else self.drawn)).digest()[:size]


def stored_view(store, session_id: str, fid: bytes) -> FeedView | None:
    """The view the store holds of a session (its seed and bounds, the feed's cursor); None without
    a session: the answer to a page sent with a view of no session."""
    probe = store.serve_page(session_id, fid, FeedView(b"", ()), offset=0, limit=0, max_ahead=2 ** 31)
    if probe.status is PageStatus.ABSENT:
        return None
    assert probe.status is PageStatus.STALE, probe
    return probe.view


def feed_sequence(store, session_id: str, kind: str, name: str,
                  weighted: bool = False) -> tuple[list[int], list[int]] | None:
    """(positions, keys) the store holds as served in a feed, in order; None without a session."""
    fid = feed_of(name, kind, weighted)
    view = stored_view(store, session_id, fid)
    if view is None:
        return None
    result = store.serve_page(session_id, fid, FeedView(view.seed, view.bounds), offset=0, limit=10 ** 9,
                              max_ahead=2 ** 31)
    assert result.status is PageStatus.SERVED and len(result.positions) == result.view.served
    if weighted:
        tickets = SessionOrder(SECRET, session_id, view.seed, tuple(b * MAX_TICKETS for b in view.bounds),
                               label="tickets").keys_at(result.positions)
        return result.positions, ticket_keys(tickets).tolist()
    keys = SessionOrder(SECRET, session_id, view.seed, view.bounds).keys_at(result.positions).tolist()
    return result.positions, keys


class FeedMachine(RuleBasedStateMachine):
    """One example: empty stores, a fresh catalog and two services (processes) over them.

    Each example must start from empty stores, not merely from unused session ids, so that an
    example behaves the same every time Hypothesis runs it.
    """

    #: Set on the subclass a test builds: returns the stores of the two processes, emptied.
    empty_stores = None
    #: Set on the subclass a test builds: the ``Seeds`` the service draws from.
    seeds: Seeds | None = None

    def __init__(self) -> None:
        super().__init__()
        type(self).seeds.drawn = 0
        self.stores = type(self).empty_stores()
        self.store = self.stores[0]
        self.catalog: ListCatalog | None = None
        self.services = []
        self.session_ids = [f"s{index}" for index in range(SESSIONS)]
        #: per session: each feed's served keys in order; the union of them (seen); whether it is active
        self.served = [{feed: [] for feed in FEEDS} for _ in range(SESSIONS)]
        self.seen: list[set[int]] = [set() for _ in range(SESSIONS)]
        self.active = [False] * SESSIONS

    # -- set-up -----------------------------------------------------------------------------------

    @initialize(largest=st.integers(0, 700))
    def make_catalog(self, largest):
        self.catalog = ListCatalog(largest)
        self.services = [make_service(store, self.catalog) for store in self.stores]

    def matching(self, feed) -> set[int]:
        predicate = self.catalog.predicates[feed[1]]
        return {key for key in range(1, self.catalog.largest + 1) if predicate(key)}

    # -- one page, checked against the model ------------------------------------------------------

    def _page(self, session: int, feed, offset: int, limit: int, process: int):
        session_id = self.session_ids[session]
        kind, name, weighted = feed
        before = list(self.served[session][feed])
        page = self.services[process].serve(kind, page_args(session_id, offset, limit, name,
                                                            random_order="weighted" if weighted else True))
        keys = keys_of(page)
        self.active[session] = True
        positions, sequence = feed_sequence(self.store, session_id, kind, name, weighted)
        # Replay: what was served stays served, in the same order; a page is its slice.
        assert sequence[:len(before)] == before, "a served prefix changed"
        assert keys == sequence[offset:offset + limit], "a page is not its slice of the feed"
        assert positions == sorted(set(positions)), "a feed's positions do not ascend in the session's order"
        new = sequence[len(before):]
        # No repeats, within the feed and across the session's feeds; only matching items.
        assert len(set(new)) == len(new), "an item served twice in one feed"
        assert not set(new) & self.seen[session], "an item served again before a reset"
        matching = self.matching(feed)
        assert set(new) <= matching, "an item that does not match the feed's filter"
        self.served[session][feed] = sequence
        self.seen[session].update(new)
        if page.is_last_page:
            assert len(sequence) <= offset + limit, "a last page with served items after it"
            assert matching <= self.seen[session], "a last page while matching items are unseen"
        else:
            assert len(keys) == limit, "a page that is not the last is short"
            assert len(sequence) > offset + limit or matching - self.seen[session], \
                "a page says more is coming when nothing matching is left"
        return page, keys

    # -- rules ------------------------------------------------------------------------------------

    @rule(session=st.integers(0, SESSIONS - 1), feed=st.sampled_from(FEEDS), process=st.integers(0, PROCESSES - 1),
          data=st.data())
    def page(self, session, feed, process, data):
        """Any page from the start up to one page past the served prefix (replay, frontier, jump)."""
        limit = data.draw(st.integers(1, 30), label="limit")
        offset = data.draw(st.integers(0, len(self.served[session][feed]) + limit), label="offset")
        self._page(session, feed, offset, limit, process)

    @precondition(lambda self: any(self.served[s][f] for s in range(SESSIONS) for f in FEEDS))
    @rule(data=st.data())
    def replay(self, data):
        """An already served page, asked again of either process: the same items, nothing new."""
        session = data.draw(st.sampled_from([s for s in range(SESSIONS) if any(self.served[s].values())]),
                            label="session")
        feed = data.draw(st.sampled_from([f for f in FEEDS if self.served[session][f]]), label="feed")
        served = self.served[session][feed]
        offset = data.draw(st.integers(0, len(served) - 1), label="offset")
        limit = data.draw(st.integers(1, len(served) - offset), label="limit")
        seen = set(self.seen[session])
        for process in range(PROCESSES):
            _page, keys = self._page(session, feed, offset, limit, process)
            assert keys == served[offset:offset + limit]
        assert self.seen[session] == seen, "a replayed page served something new"

    @rule(session=st.integers(0, SESSIONS - 1), feed=st.sampled_from(FEEDS), limit=st.integers(7, 60),
          alternate=st.booleans())
    def drain(self, session, feed, limit, alternate):
        """Page to the end (on one process, or alternating): exactly the matching items the session
        had not seen come, once each."""
        seen_before = set(self.seen[session])
        start = len(self.served[session][feed])
        offset = start
        for number in range(10_000):
            page, _keys = self._page(session, feed, offset, limit, number % PROCESSES if alternate else 0)
            if page.is_last_page:
                break
            offset += limit
        else:
            raise AssertionError("a drain that never reached the last page")
        drained = self.served[session][feed][start:]
        assert set(drained) == self.matching(feed) - seen_before
        assert len(drained) == len(set(drained))

    @rule(session=st.integers(0, SESSIONS - 1), process=st.integers(0, PROCESSES - 1), heard=st.booleans())
    def reset(self, session, process, heard):
        """A reset answered by one process (which forgets its view, as the route does); the other
        keeps its view of the old session and, on Redis when ``heard``, has heard of the reset
        (``reset_notices.py``) and starts anew; otherwise it must find the session gone."""
        session_id = self.session_ids[session]
        first_pages = {feed: served[:FRESH_PAGE] for feed, served in self.served[session].items()
                       if len(served) >= FRESH_PAGE and len(self.matching(feed)) >= FRESH_ORDER_MIN_MATCHING}
        view = stored_view(self.store, session_id, feed_of("all", "reels", False))
        result = self.stores[process].reset(session_id)
        self.services[process].forget(session_id)
        if view is not None:
            notices_heard(self.stores, session_id, view.seed, keep=heard)
        assert result.found == self.active[session]
        assert result.cleared_items_count == len(self.seen[session])
        self.served[session] = {feed: [] for feed in FEEDS}
        self.seen[session] = set()
        self.active[session] = False
        assert self.store.summary(session_id) is None, "a reset left the session behind"
        for feed in FEEDS:
            assert feed_sequence(self.store, session_id, *feed) is None, "a reset left feed state behind"
        for feed, before in sorted(first_pages.items())[:1]:
            _page, after = self._page(session, feed, 0, FRESH_PAGE, 1 - process)
            assert len(after) == FRESH_PAGE
            assert len(set(after) & set(before)) <= FRESH_PAGE // 2, "the order after a reset is not fresh"

    @rule(added=st.integers(0, 150))
    def catalog_write(self, added):
        """A write: new keys (possibly none), and a new catalog version."""
        self.catalog.grow(self.catalog.largest + added)

    @rule(session=st.integers(0, SESSIONS - 1))
    def inspect(self, session):
        summary = self.store.summary(self.session_ids[session])
        if not self.active[session]:
            assert summary is None
            return
        assert summary.served_items_count == len(self.seen[session])
        for feed, served in self.served[session].items():
            fid = feed_of(feed[1], feed[0], feed[2])
            if fid in summary.feeds:
                assert summary.feeds[fid].served == len(served)
            else:
                assert not served

    # -- invariants -------------------------------------------------------------------------------

    @invariant()
    def sessions_never_repeat(self):
        for session in range(SESSIONS):
            everything = [key for served in self.served[session].values() for key in served]
            assert len(everything) == len(set(everything)) == len(self.seen[session])


def notices_heard(stores, session_id: str, seed: bytes, keep: bool) -> None:
    """Wait until every Redis store has heard of the reset of the session that held ``seed``, then
    unless ``keep`` forget every notice: a process's next page takes the same path (the view
    dropped before it, or the session found gone by it) whenever the example runs. A notice heard
    or not draws seeds differently, so a race between them would change the example from run to
    run."""
    for store in stores:
        if hasattr(store, "reset_notices"):
            wait_for(lambda: store.was_reset(session_id, seed), 10, "a reset heard by every process")
            if not keep:
                store.reset_notices.clear()
                assert not store.was_reset(session_id, seed), "a notice outlived its clearing"


def emptier(make_store, request):
    """A function giving the two processes' stores of ``make_store``'s kind, empty, for each
    example: one new memory store shared by both; two Redis stores (each its own client) on one
    server (or cluster), flushed."""
    if make_store.kind == "memory":
        def fresh():
            store = make_store(ttl=10 ** 6)
            return store, store
        return fresh
    stores = (make_store(ttl=10 ** 6), make_store(ttl=10 ** 6))
    for store in stores:  # every reset heard by both, from the first (``notices_heard``)
        wait_for(store.reset_notices.subscribed.is_set, 15, "subscribed to reset notices")
    if make_store.kind == "redis-cluster":
        flush = request.getfixturevalue("redis_cluster_clean").flush
    else:
        client = request.getfixturevalue("redis_clean").client()
        request.addfinalizer(client.close)
        flush = client.flushall

    def fresh():
        flush()
        for store in stores:  # notices of an earlier example's sessions, whose ids and seeds recur
            store.reset_notices.clear()
        return stores
    return fresh


def machine_class(name: str, empty_stores, monkeypatch, seeds: Seeds | None = None):
    seeds = seeds or Seeds()
    monkeypatch.setattr(service_module, "os", seeds)
    return type(name, (FeedMachine,), {"empty_stores": staticmethod(empty_stores), "seeds": seeds})


def test_feed_contract_holds_under_generated_histories(make_store, request, monkeypatch):
    machine = machine_class("FeedMachineOnStore", emptier(make_store, request), monkeypatch)
    run_state_machine_as_test(machine, settings=PROPERTY_SETTINGS[make_store.kind])


class CrossFeedRepeats(MemorySessionStore):
    """A broken store: a page checks only the feed's own served positions, not what the session's
    other feeds were served."""

    def serve_page(self, session_id, feed_id, view, **kwargs):
        session = self._sessions.get(session_id)
        if session is None:
            return super().serve_page(session_id, feed_id, view, **kwargs)
        everything = session.seen
        feed = session.feeds.get(feed_id)
        session.seen = BitMap(feed.served if feed is not None else [])
        try:
            return super().serve_page(session_id, feed_id, view, **kwargs)
        finally:
            feed = session.feeds.get(feed_id)
            everything.update(feed.served if feed is not None else [])
            session.seen = everything


def test_the_model_catches_a_store_that_repeats_items_across_feeds(monkeypatch):
    """The machine is not vacuous: a store whose pages check only the feed's own items is caught
    serving an item again."""
    def fresh():
        store = CrossFeedRepeats(ttl=10 ** 6)
        return store, store

    machine = machine_class("CrossFeedMachine", fresh, monkeypatch)
    with pytest.raises(AssertionError, match="served again|served twice"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)


def test_the_model_catches_an_order_that_is_not_fresh_after_a_reset(monkeypatch):
    """...and feeds whose seed is always the same (the same order after a reset) are caught too."""
    def fresh():
        store = MemorySessionStore(ttl=10 ** 6)
        return store, store

    machine = machine_class("StaleOrderMachine", fresh, monkeypatch, Seeds(constant=True))
    with pytest.raises(AssertionError, match="not fresh"):
        run_state_machine_as_test(machine, settings=MUTANT_SETTINGS)


def test_deep_feeds_across_position_blocks_on_every_backend(make_store, request):
    """Feeds deep enough to span several of the Redis layout's 64 Ki-position blocks, with dense
    containers (bitmaps) in one feed and sparse ones (arrays) in another: replays at any offset,
    across block boundaries, are the served sequence; the second feed skips exactly what the first
    served, in every block; a reset clears it all."""
    catalog = ListCatalog(150_000)
    stores = emptier(make_store, request)()
    service = make_service(stores[0], catalog, max_ahead=5_000)
    served = []
    for offset in range(0, 140_000, 5_000):  # jumps: each page takes the gap before it
        served += keys_of(service.serve("reels", page_args("deep", offset, 100, "all")))
    positions, sequence = feed_sequence(stores[0], "deep", "reels", "all")
    assert len(sequence) == len(set(sequence)) == 135_100 and positions == sorted(positions)
    assert max(positions) > 2 * 65_536
    other = make_service(stores[1], catalog)
    for offset in (0, 65_500, 65_536 - 7, 131_000, 135_000):
        page = other.serve("reels", page_args("deep", offset, 100, "all"))
        assert keys_of(page) == sequence[offset:offset + 100], offset
    sparse = []
    for offset in range(0, 10_000, 100):
        page = service.serve("reels", page_args("deep", offset, 100, "sparse"))
        sparse += keys_of(page)
        if page.is_last_page:
            break
    expected = {key for key in range(1, 150_001) if key % 97 == 5} - set(sequence)
    assert len(sparse) == len(set(sparse)) and set(sparse) == expected
    summary = stores[0].summary("deep")
    assert summary.served_items_count == 135_100 + len(expected)
    assert stores[1].reset("deep").cleared_items_count == summary.served_items_count
