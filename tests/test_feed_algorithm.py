"""The random feed algorithm (``feed/service.py``) over an in-process catalog and the memory store.

``candidates_from``: both of its ways (matching keys mapped back to their positions, for small
matching sets; positions mapped to keys in batches, for the rest) give exactly the first
``count`` matching positions from the cursor and every matching position below the position
they examined to, across epochs, within ``max_positions``; a ``date_range`` set drops the keys
past their second.

``RandomFeedService`` over ``ListCatalog`` (a ``FeedCatalog`` whose sets come from predicates
on the key instead of SQL, with the real matching-set cache and windows) and the memory store:
coverage and exactly one last page; no repeats across feeds; replay; jumps ahead within
``max_ahead``; the limits (``max_ahead``, ``RANDOM_MAX_OFFSET``, ``SESSION_MAX_FEEDS``,
``SESSION_MAX_ITEMS``, ``RANDOM_MAX_SCAN``); catalog growth (new epochs); ``date_range``
windows; round trips per page; views that lag behind another process's; conflicts; threads.
The limits are also checked through the HTTP API for their error envelopes.

Three regressions: replay the last short page of a session at its item limit; serve a new feed
of a session deep in another (a short page, not a conflict); skip no item of an epoch another
process added while this one's catalog state lags.

Dropped with the old state model: list and walk plans and the choice between them, the list
cache's limits, plan re-basing on a catalog version change, generations, the read-then-claim
store calls and presumed views.
"""
from __future__ import annotations

import functools
import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import session_helpers
from gunicorn_servers import run_threads
from viralspot import create_app
from viralspot.catalog.feed_source import WINDOW_SECONDS, FeedCatalog, FeedSource, MatchingSet
from viralspot.catalog.filters import DATE_RANGES, content_filter
from viralspot.catalog.queries import CatalogState
from viralspot.feed.errors import BeyondServedPrefix, FeedConflict, OffsetTooLarge, SessionLimit, SessionNotStored
from viralspot.feed.order import SessionOrder
from viralspot.feed.service import KEY_MAPPING_COST, RandomFeedService, ServedPage, candidates_from, feed_id
from viralspot.store import PageStatus
from viralspot.store.memory import MemorySessionStore

SECRET = b"test-secret"

#: Filters by name (a ContentFilter's ``search`` names its predicate on the key).
PREDICATES = {
    "all": lambda key: True,
    "even": lambda key: key % 2 == 0,
    "thirds": lambda key: key % 3 == 1,
    "sparse": lambda key: key % 97 == 5,
    "none": lambda key: False,
}


# --- an in-process catalog ----------------------------------------------------------------------


class ListSource(FeedSource):
    """A ``FeedSource`` whose state, matching sets and items come from a ``ListCatalog``: the real
    ``matching()`` (window and cache) over ``read_matching`` from predicates on the key."""

    def catalog_state(self, fresh: bool = False) -> CatalogState:
        if self._state is None or fresh:  # one state per page, as the SQL source, unless asked anew
            self._state = CatalogState(self._catalog.version, self._catalog.largest)
        return self._state

    def read_matching(self, window):
        catalog = self._catalog
        catalog.reads.append((self.content_filter.search, catalog.version, window))
        name = self.content_filter.search or "all"
        keys = np.array([key for key in range(1, catalog.largest + 1) if catalog.predicates[name](key)],
                        dtype=np.int64)
        until = None
        if window is not None:
            span = int(DATE_RANGES[self.content_filter.date_range].total_seconds())
            until = catalog.posted(keys) + span
            keep = until >= window  # matching at the window's start
            keys, until = keys[keep], until[keep]
        return MatchingSet.of(catalog.version, keys, until)

    def read_scores(self):
        """Outlier scores by key: ``key % 11`` (0 to 10), so every ticket count from 1 to 8 occurs."""
        return np.arange(self._catalog.largest + 1, dtype=np.float64) % 11

    def page_items(self, keys):
        return ",".join(str(int(key)) for key in keys), len(keys)


class ListCatalog(FeedCatalog):
    """Keys ``1..largest`` (``version`` bumped by every write); key k posted at ``first_posted + k``."""

    def __init__(self, largest: int, predicates=PREDICATES, now: float = 1_800_000_000.0,
                 first_posted: int = 0) -> None:
        self.now = now
        super().__init__(connect=None, state=None, snapshot=None, clock=lambda: self.now)
        self.largest = largest
        self.version = 1
        self.predicates = dict(predicates)
        self.first_posted = first_posted
        self.reads: list[tuple] = []

    def posted(self, keys):
        return np.asarray(keys, dtype=np.int64) + self.first_posted

    def source(self, flt):
        return ListSource(self, flt)

    def grow(self, largest: int) -> None:
        self.largest = largest
        self.version += 1


def make_service(store=None, catalog=None, *, max_ahead=1000, max_offset=10**6, max_scan=10**6, secret=SECRET):
    return RandomFeedService(secret, store if store is not None else MemorySessionStore(),
                             catalog if catalog is not None else ListCatalog(2000),
                             max_ahead=max_ahead, max_offset=max_offset, max_scan=max_scan)


def request(session_id, offset=0, limit=24, name=None, **extra):
    args = {"session_id": session_id, "offset": offset, "limit": limit}
    if name is not None:
        args["search"] = name
    return {**args, **extra}


def keys_of(page: ServedPage) -> list[int]:
    text = page.items_json.decode() if isinstance(page.items_json, bytes) else page.items_json
    return json.loads(f"[{text}]")


def serve(service, session_id, offset=0, limit=24, name=None, kind="reels", **extra) -> tuple[list[int], ServedPage]:
    page = service.serve(kind, request(session_id, offset, limit, name, **extra))
    keys = keys_of(page)
    assert page.count == len(keys) <= limit
    return keys, page


def drain(service, session_id, name=None, limit=24, kind="reels", start=0, max_pages=10_000, **extra):
    """Pages from ``start`` until the last: (keys, pages). Every page but the last is full."""
    keys, pages, offset = [], [], start
    for _ in range(max_pages):
        got, page = serve(service, session_id, offset, limit, name, kind, **extra)
        keys += got
        pages.append(page)
        offset += limit
        if page.is_last_page:
            return keys, pages
        assert len(got) == limit, "a page that is not the last is short"
    raise AssertionError("no last page")


def matching(catalog: ListCatalog, name="all") -> set[int]:
    return {key for key in range(1, catalog.largest + 1) if catalog.predicates[name](key)}


def feed_of(name=None, kind="reels", weighted=False) -> bytes:
    return feed_id(kind, content_filter(kind, {"search": name} if name else {}).signature(), weighted)


# --- candidates_from --------------------------------------------------------------------------------


class CountingOrder(SessionOrder):
    """A SessionOrder that records which way ``candidates_from`` went."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.inverse_calls = 0
        self.scan_calls = 0

    def positions_of(self, keys):
        self.inverse_calls += 1
        return super().positions_of(keys)

    def keys_between(self, start, stop):
        self.scan_calls += 1
        return super().keys_between(start, stop)


def oracle(order: SessionOrder, matching_set: MatchingSet, now: float, cursor: int, max_positions: int) -> list[int]:
    """Every matching position in ``[cursor, min(end, cursor + max_positions))``, by brute force."""
    stop = min(order.end, cursor + max_positions)
    positions = np.arange(cursor, stop, dtype=np.int64)
    if not len(positions):
        return []
    keys = order.keys_at(positions)
    return positions[np.isin(keys, matching_set.keys_at(now).astype(np.int64))].tolist()


def check_candidates(order, matching_set, now, cursor, count, max_positions):
    """Every matching position in ``[cursor, examined_to)``, at most ``count``; a short answer examined
    at least what ``max_positions`` allows (a scan stops there, a mapping of the keys goes to the end)."""
    found, examined_to, work = candidates_from(order, matching_set, now, cursor, count, max_positions)
    # The work is bounded: a scan by max_positions, a mapping by the set (KEY_MAPPING_COST a key).
    assert 0 <= work <= max(max_positions, KEY_MAPPING_COST * matching_set.count)
    assert cursor <= examined_to <= max(cursor, order.end)
    expected = oracle(order, matching_set, now, cursor, examined_to - cursor)
    assert found == expected and len(found) <= count, "not every matching position below examined_to"
    if len(found) < count:
        allowed = max(cursor, min(order.end, cursor + max_positions))
        assert examined_to >= allowed, "a short answer that did not examine everything allowed"
    return found, examined_to


#: (bounds, matching keys, count, expected way): small sets map their keys back ("inverse"),
#: dense ones are scanned ("scan").
CANDIDATE_CASES = [
    ((100_000,), range(5, 100_001, 5_000), 24, "inverse"),     # 20 keys in 100,000
    ((100_000,), range(1, 100_001, 997), 30, "inverse"),
    ((50_000, 100_000), range(7, 100_001, 4_001), 10, "inverse"),  # across an epoch boundary
    ((5_000,), range(1, 5_001), 24, "scan"),                      # every key
    ((5_000,), range(1, 5_001, 3), 50, "scan"),
    ((3_000, 3_500, 9_000), range(2, 9_001, 2), 100, "scan"),  # three epochs
    ((0, 4_000), range(1, 4_001, 2), 24, "scan"),                 # a first epoch that is empty
    ((20_000,), range(1, 20_001, 100), 1, "scan"),                # selective, but one asked
]


@pytest.mark.parametrize("bounds, keys, count, way", CANDIDATE_CASES)
def test_candidates_are_the_first_matching_positions_from_the_cursor(bounds, keys, count, way):
    matching_set = MatchingSet.of(1, np.array(list(keys)))
    end = bounds[-1]
    for cursor in (0, 1, end // 3, end // 2 + 7, end - 50, end - 1, end):
        for max_positions in (10**9, end // 4, 200):
            order = CountingOrder(SECRET, "s", bytes(8), bounds)
            check_candidates(order, matching_set, 0, cursor, count, max_positions)
            if cursor < end and max_positions == 10**9:
                assert (order.inverse_calls > 0) == (way == "inverse"), (cursor, order.inverse_calls)
                assert (order.scan_calls > 0) == (way == "scan"), (cursor, order.scan_calls)


@pytest.mark.parametrize("count", [1, 5, 24, 10_000])
def test_both_ways_give_the_same_candidates(count):
    """The same question answered by both ways (chosen by the set's size): the same positions."""
    bounds = (30_000,)
    dense = np.arange(1, 30_001)
    rng = np.random.default_rng(count)
    sparse = np.sort(rng.choice(dense, 40, replace=False))
    for keys in (dense, sparse):
        full = MatchingSet.of(1, keys)
        for cursor in (0, 12_345):
            order = SessionOrder(SECRET, "same", bytes(range(8)), bounds)
            found, _ = check_candidates(order, full, 0, cursor, count, 10**9)
            walked = order.keys_between(cursor, 30_000)
            assert order.keys_at(found).tolist() == walked[np.isin(walked, keys)][:count].tolist()


def test_no_candidates_past_the_order_or_of_an_empty_set():
    order = SessionOrder(SECRET, "s", bytes(8), (1000,))
    empty = MatchingSet.of(1, np.array([], dtype=np.int64))
    assert candidates_from(order, empty, 0, 0, 24, 10**9)[:2] == ([], 1000)
    everything = MatchingSet.of(1, np.arange(1, 5000))  # keys past the order's end never come
    found, examined_to, _work = candidates_from(order, everything, 0, 990, 24, 10**9)
    assert found == list(range(990, 1000)) and examined_to == 1000
    assert candidates_from(order, everything, 0, 1000, 24, 10**9) == ([], 1000, 0)
    assert candidates_from(order, everything, 0, 5, 0, 10**9) == ([], 5, 0)
    assert candidates_from(SessionOrder(SECRET, "s", bytes(8), (0,)), everything, 0, 0, 5, 10**9) == ([], 0, 0)


@pytest.mark.parametrize("keys", [range(1, 20_001), range(3, 20_001, 400)], ids=["scan", "inverse"])
def test_a_date_range_set_drops_the_keys_past_their_second(keys):
    keys = np.array(list(keys))
    until = 1_000 + keys  # key k matches up to second 1000 + k
    matching_set = MatchingSet.of(1, keys, until)
    order = SessionOrder(SECRET, "dated", bytes(8), (20_000,))
    for now in (0, 1_000 + 5_000, 1_000 + 15_000, 1_000 + 20_001):
        for cursor in (0, 9_000):
            found, _ = check_candidates(order, matching_set, now, cursor, 40, 10**9)
            assert all(int(key) + 1_000 >= now for key in order.keys_at(found))
    assert candidates_from(order, matching_set, 1_000 + 20_001, 0, 40, 10**9)[0] == []


def test_matching_sets_answer_membership_and_expiry():
    keys = np.array([2, 3, 5, 8, 13, 1000])
    plain = MatchingSet.of(7, keys)
    probe = np.array([0, 1, 2, 3, 4, 5, 8, 13, 14, 999, 1000, 1001, 10**6])
    assert plain.matches(probe, 0).tolist() == [k in set(keys.tolist()) for k in probe.tolist()]
    assert plain.keys_at(123).tolist() == keys.tolist() and plain.version == 7
    dated = MatchingSet.of(7, keys, keys * 10)
    assert dated.matches(probe, 50).tolist() == [k in {5, 8, 13, 1000} for k in probe.tolist()]
    assert dated.keys_at(50).tolist() == [5, 8, 13, 1000]
    empty = MatchingSet.of(None, np.array([], dtype=np.int64))
    assert empty.matches(probe, 0).tolist() == [False] * len(probe) and empty.keys_at(0).tolist() == []


def test_feed_ids_are_the_kind_and_eight_bytes_of_the_signature():
    flt = content_filter("reels", {"search": "x"})
    assert feed_id("reels", flt.signature()) == b"r" + bytes.fromhex(flt.signature()[:16])
    assert len(feed_of("x")) == 9 and feed_of("x", "posts")[:1] == b"p"
    assert feed_of("x") != feed_of("y") and feed_of("x") != feed_of("x", "posts")


# --- coverage, last page, no repeats ----------------------------------------------------------------


@pytest.mark.parametrize("name, limit", [("all", 24), ("all", 50), ("even", 24), ("thirds", 7), ("sparse", 5),
                                         ("sparse", 24), ("none", 24)])
def test_draining_serves_every_matching_item_exactly_once(name, limit):
    catalog = ListCatalog(2000)
    service = make_service(catalog=catalog)
    keys, pages = drain(service, "s", name, limit)
    expected = matching(catalog, name)
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert [page.is_last_page for page in pages].count(True) == 1 and pages[-1].is_last_page
    # isLastPage is exact: the page holding the last item says so (no trailing empty page), and
    # only an empty feed has an empty page.
    assert len(pages) == max(1, -(-len(expected) // limit))
    assert pages[-1].count or not expected
    assert serve(service, "s", len(keys) + 5, limit, name)[0] == []


def test_a_session_never_sees_an_item_twice_across_feeds_and_endpoints():
    catalog = ListCatalog(3000)
    service = make_service(catalog=catalog)
    first = [key for offset in range(0, 500, 100) for key in serve(service, "s", offset, 100, "all")[0]]
    assert len(set(first)) == 500
    evens, _ = drain(service, "s", "even")
    assert not set(first) & set(evens)
    assert set(evens) == matching(catalog, "even") - set(first)
    posts, _ = drain(service, "s", "thirds", kind="posts")  # another endpoint: another feed, one seen set
    assert not set(posts) & (set(first) | set(evens))
    assert set(posts) == matching(catalog, "thirds") - set(first) - set(evens)
    rest, _ = drain(service, "s", "all", start=500)
    everything = first + evens + posts + rest
    assert len(everything) == len(set(everything)) and set(everything) == matching(catalog)


def test_items_seen_in_other_feeds_make_short_claims_not_conflicts():
    """A feed whose items the session has all been served elsewhere: one empty last page; items
    added later come, once."""
    catalog = ListCatalog(3000)
    service = make_service(catalog=catalog)
    assert set(drain(service, "s", "all", limit=100)[0]) == matching(catalog)
    again, pages = drain(service, "s", "even")
    assert again == [] and len(pages) == 1 and pages[0].is_last_page
    catalog.grow(3010)
    assert sorted(drain(service, "s", "thirds", kind="posts")[0]) == sorted(k for k in range(3001, 3011) if k % 3 == 1)
    assert sorted(drain(service, "s", "all", start=3000)[0]) == [k for k in range(3001, 3011) if k % 3 != 1]


# --- replay, jumps, order ---------------------------------------------------------------------------


def test_replaying_a_page_returns_the_same_items_and_serves_nothing():
    store = MemorySessionStore()
    service = make_service(store)
    first, page = serve(service, "s", 0, 24)
    assert not page.replayed and page.round_trips == 1
    second, _ = serve(service, "s", 24, 24)
    for offset, expected in ((0, first), (24, second), (0, first)):
        keys, page = serve(service, "s", offset, 24)
        assert keys == expected and page.round_trips == 1 and not page.is_last_page
        # Behind the frontier a page is a read; the frontier's own page also looks one item ahead
        # (for isLastPage), a call that takes nothing.
        assert page.replayed == (offset == 0)
    assert serve(service, "s", 10, 20)[0] == (first + second)[10:30]
    assert store.summary("s").served_items_count == 48
    # Another process (no view of the session) replays the same pages.
    other = make_service(store, service.catalog)
    assert serve(other, "s", 0, 24)[0] == first and serve(other, "s", 24, 24)[0] == second
    assert store.summary("s").served_items_count == 48


def test_jumping_ahead_extends_the_sequence_through_the_gap():
    store = MemorySessionStore()
    service = make_service(store, max_ahead=48)
    later, _ = serve(service, "s", 48, 24)
    assert len(later) == 24 and store.summary("s").served_items_count == 72
    assert serve(service, "s", 48, 24)[0] == later
    gap = serve(service, "s", 0, 48)[0]
    assert len(set(gap + later)) == 72
    with pytest.raises(SessionNotStored) as refused:
        serve(service, "t", 49, 24)  # a new session: 48 is as far as it may start
    assert refused.value.max_ahead == 48 and store.summary("t") is None
    assert len(serve(service, "t", 48, 24)[0]) == 24
    with pytest.raises(BeyondServedPrefix) as refused:
        serve(service, "t", 72 + 49, 24)
    assert type(refused.value) is BeyondServedPrefix and refused.value.served == 72
    assert store.summary("t").served_items_count == 72


def test_offsets_past_random_max_offset_are_refused_before_any_store_call():
    store = MemorySessionStore()
    service = make_service(store, max_offset=100, max_ahead=10**6)
    with pytest.raises(OffsetTooLarge) as refused:
        serve(service, "s", 101, 24)
    assert refused.value.max_offset == 100 and store.session_count() == 0
    assert len(serve(service, "s", 100, 24)[0]) == 24


def test_two_processes_sharing_a_store_serve_a_new_session_the_same_pages():
    """Seeds are random per session: one store makes one order, whichever process starts it."""
    catalog = ListCatalog(50_000)
    store = MemorySessionStore()
    here, there = make_service(store, catalog), make_service(store, catalog)
    first = serve(here, "s", 0, 24)[0]
    assert serve(there, "s", 0, 24)[0] == first
    second = serve(there, "s", 24, 24)[0]
    assert serve(here, "s", 24, 24)[0] == second and not set(first) & set(second)
    # Separate stores: separate seeds, so unrelated orders.
    alone = serve(make_service(MemorySessionStore(), catalog), "s", 0, 24)[0]
    assert len(set(alone) & set(first)) < 3


def test_sessions_get_unrelated_orders_and_the_first_page_is_not_the_key_order():
    service = make_service(catalog=ListCatalog(50_000))
    a, b = serve(service, "alice", 0, 100)[0], serve(service, "bob", 0, 100)[0]
    assert len(set(a) & set(b)) < 5
    assert a != sorted(a) and len(set(a) & set(range(1, 501))) < 10


def test_reset_gives_a_fresh_order_and_seen_items_come_back():
    catalog = ListCatalog(5_000)
    store = MemorySessionStore()
    service = make_service(store, catalog)
    before = serve(service, "s", 0, 100)[0] + serve(service, "s", 100, 100)[0]
    result = store.reset("s")
    assert result.found and result.cleared_items_count == 200
    service.forget("s")
    after = serve(service, "s", 0, 100)[0]
    assert len(set(before[:100]) & set(after)) < 10
    assert set(drain(service, "s", limit=100)[0]) == matching(catalog)


def test_a_reset_made_by_another_process_starts_a_new_session_here():
    """This process still holds the old session's view: its next page finds the session gone
    (ABSENT), starts a new one and serves its first page: no item of the old order is held back."""
    catalog = ListCatalog(5_000)
    store = MemorySessionStore()
    here, there = make_service(store, catalog), make_service(store, catalog)
    old = serve(here, "s", 0, 24)[0] + serve(here, "s", 24, 24)[0]
    assert store.reset("s").cleared_items_count == 48
    there.forget("s")
    keys, page = serve(here, "s", 0, 24)
    assert page.round_trips == 2 and not page.replayed and len(keys) == 24
    assert store.summary("s").served_items_count == 24
    assert serve(there, "s", 0, 24)[0] == keys  # the other process sees the new session
    assert len(set(keys) & set(old)) < 5


# --- catalog growth ---------------------------------------------------------------------------------


def test_catalog_growth_extends_an_exhausted_feed_with_a_new_epoch():
    catalog = ListCatalog(1000)
    store = MemorySessionStore()
    service = make_service(store, catalog)
    served, pages = drain(service, "s", limit=100)
    assert sorted(served) == list(range(1, 1001)) and len(pages) == 10
    catalog.grow(1200)
    more, _ = drain(service, "s", limit=100, start=1000)
    assert sorted(more) == list(range(1001, 1201))
    assert serve(service, "s", 0, 100)[0] == served[:100]  # the old pages replay
    assert store.summary("s").served_items_count == 1200


def test_items_added_while_a_feed_runs_come_after_the_others_exactly_once():
    catalog = ListCatalog(1000)
    service = make_service(catalog=catalog)
    first = [key for offset in range(0, 500, 50) for key in serve(service, "s", offset, 50, "even")[0]]
    catalog.grow(1300)  # an import, mid-feed
    rest, _ = drain(service, "s", "even", limit=50, start=500)
    assert not set(rest) & set(first)
    everything = first + rest
    assert len(everything) == len(set(everything)) == len(matching(catalog, "even"))
    # The feed finishes the first epoch before the new items: they come last.
    assert set(everything[:500]) <= set(range(1, 1001))
    assert set(everything[-150:]) == set(range(1002, 1301, 2))


def test_a_catalog_empty_when_the_session_began_serves_its_items_once_imported():
    catalog = ListCatalog(0)
    store = MemorySessionStore()
    service = make_service(store, catalog)
    keys, page = serve(service, "s", 0, 24)
    assert keys == [] and page.is_last_page
    catalog.grow(30)
    served, _ = drain(service, "s", limit=24)
    assert sorted(served) == list(range(1, 31))
    catalog.grow(40)
    assert sorted(drain(service, "s", limit=24, start=30)[0]) == list(range(31, 41))


def test_several_imports_grow_one_order_that_every_feed_walks():
    """Imports while two feeds of a session run (one paged a little after each, which then adds
    the new epoch; one drained): every item comes once, and none in both."""
    catalog = ListCatalog(300)
    service = make_service(catalog=catalog)
    everything, thirds = [], []
    for largest in (300, 350, 400, 500):
        catalog.grow(largest)
        page = serve(service, "s", len(thirds), 5, "thirds", kind="posts")[0]
        assert page and all(key % 3 == 1 for key in page)
        thirds += page
        everything += drain(service, "s", "all", limit=40, start=len(everything))[0]
    thirds += drain(service, "s", "thirds", kind="posts", start=len(thirds))[0]
    assert len(thirds) == 20
    assert len(everything) == len(set(everything)) and len(thirds) == len(set(thirds))
    assert not set(everything) & set(thirds)
    assert sorted(everything + thirds) == list(range(1, 501))
    assert drain(service, "s", "even")[0] == []


# --- date_range windows -----------------------------------------------------------------------------


WINDOW_START = 1_800_000_000 - 1_800_000_000 % WINDOW_SECONDS


def dated_catalog(now: float, first_posted: int, largest: int) -> ListCatalog:
    return ListCatalog(largest, now=now, first_posted=first_posted)


def test_matching_sets_are_read_once_per_filter_version_and_window():
    catalog = dated_catalog(WINDOW_START + 10.0, WINDOW_START - 3 * 86_400, 2_000)
    service = make_service(catalog=catalog)
    serve(service, "s", 0, 24, "even")
    serve(service, "s", 24, 24, "even")
    serve(service, "t", 0, 24, "even")
    assert catalog.reads == [("even", 1, None)]
    serve(service, "s", 0, 24, "thirds")
    catalog.grow(2_100)
    serve(service, "s", 48, 24, "even")
    serve(service, "s", 0, 24, "even", date_range="week")
    serve(service, "s", 24, 24, "even", date_range="week")
    catalog.now += WINDOW_SECONDS  # the next hour: the set of its window
    serve(service, "s", 48, 24, "even", date_range="week")
    assert catalog.reads == [("even", 1, None), ("thirds", 1, None), ("even", 2, None),
                             ("even", 2, WINDOW_START), ("even", 2, WINDOW_START + WINDOW_SECONDS)]


def test_items_are_not_served_once_they_leave_the_date_range():
    day = 86_400
    # Key k is posted at WINDOW_START - day - 500 + k: within the day at WINDOW_START + 10 from key 510.
    catalog = dated_catalog(WINDOW_START + 10.0, WINDOW_START - day - 500, 2_000)
    service = make_service(catalog=catalog)
    first, _ = serve(service, "s", 0, 24, date_range="day")
    assert first and min(first) >= 510
    catalog.now += 300  # keys below 810 leave the range
    keys, pages = drain(service, "s", date_range="day")
    assert keys[:24] == first  # a served page replays as it was
    later = keys[24:]
    assert len(set(later)) == len(later) and not set(later) & set(first) and min(later) >= 810
    assert set(later) == set(range(810, 2_001)) - set(first)


def test_a_new_window_continues_the_feed_without_repeats():
    day = 86_400
    catalog = dated_catalog(WINDOW_START + WINDOW_SECONDS - 5.0, WINDOW_START + WINDOW_SECONDS - day - 505, 3_000)
    service = make_service(catalog=catalog)
    # In the window's last seconds keys from 500 are in the day; in the next hour from 510 on.
    before = [key for offset in range(0, 240, 24) for key in serve(service, "s", offset, 24, date_range="day")[0]]
    assert min(before) >= 500 and len(set(before)) == 240
    catalog.now = WINDOW_START + WINDOW_SECONDS + 5.0
    keys, _ = drain(service, "s", date_range="day")
    assert keys[:240] == before
    after = keys[240:]
    assert after and not set(after) & set(before) and len(set(after)) == len(after) and min(after) >= 510
    assert set(before) | set(after) >= set(range(510, 3_001))  # nothing in range skipped


# --- limits -----------------------------------------------------------------------------------------


def test_a_page_examines_at_most_max_scan_positions_and_comes_back_short_rather_than_further():
    """A feed whose items the session has mostly been served in another feed: each request
    examines at most ``max_scan`` positions; a short page is not the last, and asking for the
    same offset again continues it; the feed ends with everything once."""
    catalog = ListCatalog(5_000, predicates={**PREDICATES, "most": lambda key: key > 30})
    store = MemorySessionStore()
    service = make_service(store, catalog, max_scan=500)
    served, _ = drain(service, "s", "most", limit=100)
    assert sorted(served) == list(range(31, 5_001))
    feed = feed_of("all")
    by_offset, offset, shorts = {}, 0, 0
    for _request in range(100):
        cursor = store.summary("s").feeds.get(feed)
        before = cursor.cursor if cursor else 0
        keys, page = serve(service, "s", offset, 24, "all")
        assert store.summary("s").feeds[feed].cursor - before <= 500  # positions examined
        by_offset[offset] = keys
        if page.is_last_page:
            break
        if len(keys) < 24:
            shorts += 1
        else:
            offset += 24
    assert page.is_last_page and shorts >= 5
    other = [key for offset in sorted(by_offset) for key in by_offset[offset]]
    assert len(set(other)) == len(other) and set(other) == set(range(1, 31))


@pytest.mark.parametrize("order", ["true", "weighted"])
@pytest.mark.parametrize("name", ["sparse", "none"])
def test_a_rare_filter_maps_its_keys_so_the_scan_bound_never_makes_a_page_short(name, order):
    """A filter matching few keys maps them to their positions, work that does not grow with the
    order's length: a new session's one page finds them all wherever they lie, and is the last
    (``max_scan`` below the order's 5,000 positions, and the 40,000 of a weighted one's tickets;
    above the mapping's work, KEY_MAPPING_COST a key or ticket)."""
    service = make_service(MemorySessionStore(), ListCatalog(5_000), max_scan=3_000)
    keys, page = serve(service, "rare", 0, 100, name, random_order=order)
    assert sorted(keys) == [key for key in range(1, 5_001) if PREDICATES[name](key)]
    assert page.is_last_page and page.round_trips <= 2


def test_a_session_holds_at_most_max_feeds_feeds():
    store = MemorySessionStore(max_feeds=3)
    service = make_service(store)
    for name in ("all", "even", "thirds"):
        serve(service, "s", 0, 5, name)
    with pytest.raises(SessionLimit) as refused:
        serve(service, "s", 0, 5, "sparse")
    assert refused.value.what == "feeds" and refused.value.limit == 3
    assert "VIRALSPOT_SESSION_MAX_FEEDS" in str(refused.value)
    assert len(store.summary("s").feeds) == 3 and store.summary("s").served_items_count == 15
    assert len(serve(service, "s", 5, 5, "all")[0]) == 5  # the feeds it holds go on
    assert len(serve(service, "t", 0, 5, "sparse")[0]) == 5  # other sessions are not concerned


def test_a_session_is_served_at_most_max_items_items():
    store = MemorySessionStore(max_items=100)
    service = make_service(store)
    for offset in range(0, 96, 24):
        serve(service, "s", offset, 24)
    with pytest.raises(SessionLimit) as refused:
        serve(service, "s", 96, 24)
    assert refused.value.what == "items" and refused.value.limit == 100
    assert "VIRALSPOT_SESSION_MAX_ITEMS" in str(refused.value)
    assert store.summary("s").served_items_count == 96
    assert len(serve(service, "s", 96, 4)[0]) == 4  # up to the limit exactly
    assert len(serve(service, "s", 0, 24)[0]) == 24  # earlier pages replay
    with pytest.raises(SessionLimit):
        serve(service, "s", 0, 1, "even")
    store.reset("s")
    assert len(serve(service, "s", 0, 24)[0]) == 24


def test_replaying_the_last_short_page_at_the_item_limit_is_not_refused():
    store = MemorySessionStore(max_items=50)
    catalog = ListCatalog(1000, predicates={**PREDICATES, "small": lambda key: key <= 30})
    service = make_service(store, catalog)
    first, second = serve(service, "s", 0, 24, "small")[0], serve(service, "s", 24, 24, "small")[0]
    assert len(second) == 6
    serve(service, "s", 0, 20, "all")  # the session now holds 50 items: its limit
    assert serve(service, "s", 0, 24, "small")[0] == first
    assert serve(service, "s", 24, 24, "small")[0] == second  # a replay: nothing to take


# --- round trips, views, conflicts, threads ---------------------------------------------------------


class CountingStore(MemorySessionStore):
    """The memory store, its ``serve_page`` calls recorded as (view cursor, candidates, status)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls = []

    def serve_page(self, session_id, feed_id, view, **kwargs):
        result = super().serve_page(session_id, feed_id, view, **kwargs)
        self.calls.append(SimpleNamespace(cursor=view.cursor, candidates=kwargs.get("candidates"),
                                          status=result.status))
        return result


def test_a_page_is_one_store_call_when_the_process_knows_the_feed():
    store = CountingStore()
    service = make_service(store, ListCatalog(5_000))
    for offset in range(0, 240, 24):
        store.calls.clear()
        _, page = serve(service, "s", offset, 24)
        assert len(store.calls) == page.round_trips == 1 and store.calls[0].candidates
    store.calls.clear()
    assert serve(service, "s", 48, 24)[1].replayed and [c.candidates for c in store.calls] == [None]
    store.calls.clear()
    assert serve(service, "t", 0, 24)[1].round_trips == 1 and len(store.calls) == 1  # a new session
    # A new feed walks the session's one order from its start, where the other feed's items are:
    # its first candidates are partly seen, and each short call asks for more, from where the last
    # one stopped.
    store.calls.clear()
    keys, page = serve(service, "t", 0, 24, "even")
    assert len(keys) == 24 and page.round_trips == len(store.calls) <= 3
    for before, after in zip(store.calls, store.calls[1:]):
        assert after.cursor > before.cursor and min(after.candidates) >= after.cursor > max(before.candidates)


def test_a_view_that_lags_behind_another_process_never_repeats():
    """Another process served the next pages: this one's candidates (from its old cursor) meet
    the feed's cursor; the page costs at most two calls and nothing is served twice."""
    store = CountingStore()
    catalog = ListCatalog(5_000)
    here, there = make_service(store, catalog), make_service(store, catalog)
    served = serve(here, "s", 0, 24)[0]
    served += serve(there, "s", 24, 24)[0]
    store.calls.clear()
    keys, page = serve(here, "s", 48, 24)
    assert page.round_trips == len(store.calls) <= 2
    served += keys
    served += serve(there, "s", 72, 24)[0]
    assert len(served) == len(set(served)) == 96
    assert serve(make_service(store, catalog), "s", 0, 96)[0] == served  # in page order
    # This process lags past the page: the page replays what the other one served.
    serve(there, "s", 96, 24)
    serve(there, "s", 120, 24)
    later = serve(there, "s", 144, 24)[0]
    keys, page = serve(here, "s", 144, 24)
    assert keys == later and not page.is_last_page and store.summary("s").served_items_count == 168


class StaleStore(MemorySessionStore):
    """Answers its first ``stale`` pages STALE (a concurrent request of the session changed it)."""

    def __init__(self, stale: int) -> None:
        super().__init__()
        self.stale = stale

    def serve_page(self, session_id, feed_id, view, **kwargs):
        result = super().serve_page(session_id, feed_id, view, **{**kwargs, "candidates": None})
        if self.stale > 0 and result.status is not PageStatus.ABSENT:
            self.stale -= 1
            return type(result)(PageStatus.STALE, result.view)
        return super().serve_page(session_id, feed_id, view, **kwargs)


def test_pages_that_keep_meeting_concurrent_changes_answer_a_conflict():
    store = StaleStore(stale=0)
    service = make_service(store)
    serve(service, "s", 0, 24)
    store.stale = 3
    assert len(serve(service, "s", 24, 24)[0]) == 24  # stale thrice, then served
    store.stale = 10**6
    with pytest.raises(FeedConflict):
        serve(service, "s", 48, 24)
    assert store.summary("s").served_items_count == 48


def test_concurrent_pages_of_one_session_never_share_items():
    store = MemorySessionStore()
    catalog = ListCatalog(20_000)
    services = [make_service(store, catalog) for _ in range(2)]  # two processes, four threads each
    serve(services[0], "warm", 0, 1)
    results, barrier = {}, threading.Barrier(8)

    def fetch(index):
        barrier.wait(timeout=30)
        results[index] = serve(services[index % 2], "s", index * 24, 24)[0]

    run_threads([lambda index=index: fetch(index) for index in range(8)], timeout=60)
    served = [key for index in sorted(results) for key in results[index]]
    assert len(served) == 8 * 24 == len(set(served))
    assert serve(make_service(store, catalog), "s", 0, 8 * 24)[0] == served


class BlockedCatalog(ListCatalog):
    """Reads block until ``release`` is set; ``fail`` makes a read raise instead."""

    def __init__(self, *args, fail=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def source(self, flt):
        catalog = self

        class Blocked(ListSource):
            def read_matching(self, window):
                catalog.entered.set()
                assert catalog.release.wait(30)
                if catalog.fail:
                    catalog.reads.append("failed")
                    raise ConnectionError("database went away during the read")
                return super().read_matching(window)

        return Blocked(self, flt)


def read_from_threads(catalog: BlockedCatalog, count: int = 8) -> list:
    """``count`` threads asking for one matching set at once, released once all but the reader
    wait for it. Returns what each got (the set or the exception)."""
    outcomes, flt = [], content_filter("reels", {"search": "even"})

    def ask():
        with catalog.source(flt) as source:
            try:
                outcomes.append(source.matching())
            except Exception as error:  # noqa: BLE001 - the outcome under test
                outcomes.append(error)

    threads = [threading.Thread(target=ask)]
    threads[0].start()
    assert catalog.entered.wait(30)
    threads += [threading.Thread(target=ask) for _ in range(count - 1)]
    for thread in threads[1:]:
        thread.start()
    condition = catalog.matching_set.cache_condition
    for _ in range(3000):  # bounded wait for a state, not for a race: every thread has arrived
        if len(condition._waiters) == count - 1:
            break
        threading.Event().wait(0.01)
    assert len(condition._waiters) == count - 1
    catalog.release.set()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_pages_needing_one_matching_set_read_it_once():
    catalog = BlockedCatalog(5_000)
    sets = read_from_threads(catalog)
    assert catalog.reads == [("even", 1, None)]
    assert len(sets) == 8 and all(found is sets[0] for found in sets)
    assert sets[0].keys.tolist() == list(range(2, 5_001, 2))


def test_a_failed_read_is_not_kept_and_the_next_page_reads_again():
    catalog = BlockedCatalog(5_000, fail=True)
    outcomes = read_from_threads(catalog, count=4)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    catalog.fail = False
    with catalog.source(content_filter("reels", {"search": "even"})) as source:
        assert len(source.matching().keys) == 2_500
    assert catalog.reads[-1] == ("even", 1, None)


def test_a_new_feed_of_a_deep_session_is_served_not_a_conflict():
    catalog = ListCatalog(140_000)
    service = make_service(MemorySessionStore(), catalog)
    for offset in range(900, 135_000, 1000):  # 135,000 items of the reels feed, by jumps of max_ahead
        serve(service, "s", offset, 100)
    keys, page = serve(service, "s", 0, 24, kind="posts")  # no concurrency at all
    assert len(keys) == 24 or not page.is_last_page


# --- a catalog state that lags in another process ---------------------------------------------------


def test_a_process_whose_catalog_state_lags_skips_no_item_of_a_new_epoch():
    store = MemorySessionStore()
    fresh, lagging = ListCatalog(100), ListCatalog(100)
    here, there = make_service(store, fresh), make_service(store, lagging)
    served = serve(here, "s", 0, 100)[0]
    fresh.grow(150)  # an import; the other process still remembers the state before it
    served += serve(here, "s", 100, 10)[0]  # here: the feed's new epoch
    served += serve(there, "s", 110, 10)[0]  # there: the old state, a page of the same feed
    lagging.grow(150)
    served += drain(here, "s", limit=50, start=len(served))[0]
    assert sorted(served) == list(range(1, 151))


# --- the HTTP envelopes of the limits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def small_catalog_url(tmp_path_factory):
    url = "sqlite:///" + str(tmp_path_factory.mktemp("limits") / "catalog.db")
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", "200", "--seed", "5"])
    assert result.exit_code == 0, result.output
    app.extensions["viralspot.catalog"].dispose()
    return url


@pytest.fixture
def limited_client(small_catalog_url):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": small_catalog_url, "RANDOM_MAX_AHEAD": 30,
                      "RANDOM_MAX_OFFSET": 60, "SESSION_MAX_FEEDS": 2, "SESSION_MAX_ITEMS": 50})
    yield app.test_client()
    app.extensions["viralspot.catalog"].dispose()


#: The limits test's random pages are of 10 items unless it says otherwise.
random_get = functools.partial(session_helpers.random_get, limit=10)


def assert_envelope(response, code, *names, status=400):
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["success"] is False and body["error_code"] == code, body
    assert body["troubleshooting"] and body["timestamp"]
    for name in names:
        assert name in body["detail"], body["detail"]


def test_the_limits_answer_400_envelopes_naming_them(limited_client):
    client = limited_client
    assert_envelope(random_get(client, "ahead", offset=31), "SESSION_NOT_FOUND", "session_id", "30",
                    "VIRALSPOT_RANDOM_MAX_AHEAD", "page it from offset 0", status=404)
    assert random_get(client, "ahead", offset=30).status_code == 200
    assert random_get(client, "paged", offset=0).status_code == 200
    assert_envelope(random_get(client, "paged", offset=41), "INVALID_PARAMETER", "VIRALSPOT_RANDOM_MAX_AHEAD",
                    "(10); page through it in order")
    assert_envelope(random_get(client, "paged", offset=31, path="/api/posts"), "INVALID_PARAMETER",
                    "this feed has been served nothing: start it at offset 0")
    # A session reset (or expired, or evicted) while its client was deep in the feed: the next page
    # says there is no session, whose feed starts again at 0, and there it does.
    assert client.post("/api/reset-session?session_id=ahead").status_code == 200
    assert_envelope(random_get(client, "ahead", offset=40), "SESSION_NOT_FOUND", "no session is stored",
                    "page it from offset 0", status=404)
    assert random_get(client, "ahead", offset=0).status_code == 200
    assert_envelope(random_get(client, "far", offset=61), "INVALID_PARAMETER", "offset",
                    "VIRALSPOT_RANDOM_MAX_OFFSET")
    assert random_get(client, "feeds", limit=5).status_code == 200
    assert random_get(client, "feeds", limit=5, path="/api/posts").status_code == 200
    assert_envelope(random_get(client, "feeds", limit=5, min_views=1), "SESSION_LIMIT",
                    "VIRALSPOT_SESSION_MAX_FEEDS")
    for offset in (0, 20):
        assert random_get(client, "items", offset=offset, limit=20).status_code == 200
    assert_envelope(random_get(client, "items", offset=40, limit=20), "SESSION_LIMIT", "VIRALSPOT_SESSION_MAX_ITEMS")
    assert random_get(client, "items", offset=40, limit=10).status_code == 200
    summary = client.get("/api/sessions/items").get_json()["data"]["session"]
    assert summary["served_items_count"] == 50
    assert client.post("/api/reset-session?session_id=items").status_code == 200
    assert random_get(client, "items", offset=0, limit=20).status_code == 200

