"""The session store contract (``viralspot/store/base.py``), run on every backend.

``make_store`` (tests/redis_fixtures.py) builds a fresh backend of the current kind: the memory
store on a manual clock, the Redis store on a real, emptied redis-server, and the Redis store on a
real 3-master Redis Cluster. Each test drives ``serve_page`` by hand, as the feed service would:

* statuses: ``ABSENT`` (no session, no ``create``), ``STALE`` (another seed, bounds that are not
  the session's or one epoch longer, a cursor ahead of the feed's or a feed cursor past
  ``scanned_to``), ``BEYOND``, ``FEED_LIMIT``, ``ITEM_LIMIT``; nothing changes unless ``SERVED``;
* taking: the unseen candidates from the feed's cursor on, up to the page's end; the cursor
  moves to the first unseen leftover (``has_more``), else to ``scanned_to``; a caller whose cursor
  lags has the candidates before the feed's cursor dropped;
* replay: any ordinal range reads back the positions first served there;
* the seen set: no position is served twice across the feeds of a session;
* reset, inspection (``summary``, ``session_ids``, ``session_count``) and the idle TTL.

Last, a Hypothesis state machine runs random page sequences against the Redis store and the
memory store side by side (the memory store is the model) and requires identical ``PageResult``s,
with positions spread over several 65,536-position blocks so the Redis containers go from arrays
to bitmaps.
"""
from __future__ import annotations

import random
import threading
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from pyroaring import BitMap

from redis_fixtures import ManualClock
from viralspot.store.base import FeedSummary, FeedView, PageResult, PageStatus
from viralspot.store.memory import MemorySessionStore

SEED = b"\x01" * 8
OTHER_SEED = b"\x02" * 8
REELS = b"r" + bytes(range(8))
POSTS = b"p" + bytes(range(8))
THIRD = b"r" + bytes(range(8, 16))
BOUNDS = (1000,)
AHEAD = 1000
NOTHING = FeedView(b"", ())


def read(store, session="s", feed=REELS, offset=0, limit=100, *, seed=SEED, bounds=BOUNDS, max_ahead=AHEAD):
    """A page without candidates: what the feed holds of ``[offset, offset + limit)``."""
    return store.serve_page(session, feed, FeedView(seed, bounds), offset=offset, limit=limit, max_ahead=max_ahead)


def take(store, candidates, *, session="s", feed=REELS, cursor=None, offset=None, limit=None, scanned_to=None,
         seed=SEED, bounds=None, create=None, max_ahead=AHEAD) -> PageResult:
    """A page with ``candidates``. Left out, the view is the feed's current one (a read first),
    ``offset`` what the feed has served, ``limit`` the candidates' count, ``scanned_to`` one past
    the last candidate (or the cursor), and ``create`` whether the session is absent."""
    current = read(store, session, feed, 0, 0, seed=seed)
    known = current.view if current.status is PageStatus.SERVED else FeedView(seed, BOUNDS)
    cursor = known.cursor if cursor is None else cursor
    view = FeedView(seed, known.bounds if bounds is None else bounds, cursor)
    return store.serve_page(
        session, feed, view, offset=known.served if offset is None else offset,
        limit=len(candidates) if limit is None else limit, max_ahead=max_ahead, candidates=list(candidates),
        scanned_to=(candidates[-1] + 1 if candidates else cursor) if scanned_to is None else scanned_to,
        create=current.status is PageStatus.ABSENT if create is None else create)


def sequence(store, session="s", feed=REELS) -> list[int]:
    """Everything the feed has served, in order."""
    result = read(store, session, feed, 0, 10**6, max_ahead=10**6)
    assert result.status is PageStatus.SERVED
    return result.positions


def redis_client(make_store, store):
    """The store's redis-py client (plain or cluster); None for the memory backend."""
    return None if make_store.kind == "memory" else store.client


def another_process(make_store, store):
    """A store sharing ``store``'s sessions whose next page of any session touches the index: on
    Redis a second store object (a process touches a session's index entry at most once a second);
    the memory store is one process, so itself."""
    return store if make_store.kind == "memory" else make_store()


def next_moment(make_store) -> None:
    """Let the backend's clock move on: the memory store's by hand; Redis keeps server time in
    milliseconds, so wait out a few of them (a clock tick, not a race)."""
    if make_store.kind == "memory":
        make_store.advance(1.0)
    else:
        time.sleep(0.005)


# --- Statuses ------------------------------------------------------------------------------------


def test_a_page_of_no_session_is_absent_and_creates_nothing(make_store):
    store = make_store()
    assert read(store, "ghost") == PageResult(PageStatus.ABSENT, NOTHING)
    absent = take(store, [1, 2, 3], session="ghost", create=False)
    assert absent == PageResult(PageStatus.ABSENT, NOTHING)
    assert store.summary("ghost") is None
    assert read(store, "ghost").status is PageStatus.ABSENT


def test_pages_that_create_nothing_count_no_session(make_store):
    store = make_store(max_items=10)
    read(store, "ghost")
    take(store, [1, 2], session="ghost", create=False)
    take(store, [1, 2], session="far", offset=AHEAD + 1, create=True)  # BEYOND
    take(store, list(range(11)), session="big", create=True)  # ITEM_LIMIT
    take(store, [5], session="ahead", cursor=3, create=True)  # STALE: a new feed's cursor is 0
    assert store.session_count() == 0 and store.session_ids() == []


def test_a_creating_page_starts_the_session_from_the_views_seed_and_bounds(make_store):
    store = make_store()
    result = store.serve_page("s", REELS, FeedView(SEED, (500, 1000)), offset=0, limit=2, max_ahead=AHEAD,
                              candidates=[3, 5, 9, 12], scanned_to=20, create=True)
    assert result == PageResult(PageStatus.SERVED, FeedView(SEED, (500, 1000), 9, 2), [3, 5], True)
    summary = store.summary("s")
    assert summary.served_items_count == 2 and summary.feeds == {REELS: FeedSummary(served=2, cursor=9)}
    assert store.session_count() == 1 and store.session_ids() == ["s"]
    # ``create`` never replaces a session: another seed is STALE and answers the session's view.
    again = take(store, [1], seed=OTHER_SEED, create=True, cursor=0, bounds=BOUNDS)
    assert again == PageResult(PageStatus.STALE, FeedView(SEED, (500, 1000), 9, 2))
    assert sequence(store) == [3, 5]


def test_another_seed_is_stale_and_answers_the_sessions_view(make_store):
    store = make_store()
    take(store, [4, 6, 8], limit=2)
    session_view = FeedView(SEED, BOUNDS, 8, 2)
    assert read(store, seed=OTHER_SEED) == PageResult(PageStatus.STALE, session_view)
    assert take(store, [8, 9], seed=OTHER_SEED, cursor=8, offset=2, bounds=BOUNDS) == \
        PageResult(PageStatus.STALE, session_view)
    assert sequence(store) == [4, 6] and store.summary("s").served_items_count == 2


def test_a_page_past_max_ahead_is_beyond_and_changes_nothing(make_store):
    store = make_store()
    take(store, [1, 2, 3])
    assert read(store, offset=13, limit=5, max_ahead=10) == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 4, 3))
    beyond = PageResult(PageStatus.BEYOND, FeedView(SEED, BOUNDS, 4, 3))
    assert read(store, offset=14, limit=5, max_ahead=10) == beyond
    assert take(store, [5, 6, 7], offset=14, max_ahead=10) == beyond
    assert sequence(store) == [1, 2, 3]
    # A new session is not made by a page past max_ahead either.
    assert take(store, [5], session="new", offset=11, max_ahead=10, create=True).status is PageStatus.BEYOND
    assert store.summary("new") is None and read(store, "new").status is PageStatus.ABSENT


def test_a_new_feed_past_max_feeds_is_feed_limit(make_store):
    store = make_store(max_feeds=2)
    take(store, [1], feed=REELS)
    take(store, [2], feed=POSTS)
    assert take(store, [3], feed=THIRD) == PageResult(PageStatus.FEED_LIMIT, FeedView(SEED, BOUNDS, 0, 0))
    assert read(store, feed=THIRD) == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 0, 0))  # reads are fine
    assert list(store.summary("s").feeds) == [REELS, POSTS]
    assert take(store, [3], feed=REELS).positions == [3]  # the feeds there go on
    assert sequence(store) == [1, 3]


def test_a_page_taking_the_session_past_max_items_is_item_limit(make_store):
    store = make_store(max_items=5)
    assert take(store, [1, 2, 3]).positions == [1, 2, 3]
    # What the page would take counts, not what it asks for: one candidate for three wanted is taken.
    short = take(store, [4], limit=3)
    assert short.status is PageStatus.SERVED and short.positions == [4]
    assert take(store, [5, 6], feed=POSTS, limit=2).status is PageStatus.ITEM_LIMIT  # 6 > 5, across feeds
    assert sequence(store, feed=POSTS) == []  # nothing changed
    assert take(store, [5], feed=POSTS, limit=2).positions == [5]  # 5 items: the limit, not past it
    assert take(store, [7], limit=1).status is PageStatus.ITEM_LIMIT
    replay = take(store, [7], offset=0, limit=3)  # wants nothing new: served
    assert replay.status is PageStatus.SERVED and replay.positions == [1, 2, 3]
    assert store.summary("s").served_items_count == 5
    assert take(store, list(range(6)), session="big", limit=6, create=True).status is PageStatus.ITEM_LIMIT
    assert store.summary("big") is None


# --- Taking candidates, the cursor ---------------------------------------------------------------


def test_unseen_candidates_are_taken_up_to_the_page_end(make_store):
    store = make_store()
    first = take(store, [2, 3, 5, 7, 11, 13], limit=4, scanned_to=20)
    assert first == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 11, 4), [2, 3, 5, 7], True)
    second = take(store, [11, 13, 17], offset=4, limit=4, scanned_to=20)
    assert second == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 20, 7), [11, 13, 17], False)
    # A page further on takes what it needs to reach its end: the ordinals before it too.
    third = take(store, [21, 22, 23, 24, 25], offset=9, limit=2, scanned_to=30)
    assert third == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 25, 11), [23, 24], True)
    assert sequence(store) == [2, 3, 5, 7, 11, 13, 17, 21, 22, 23, 24]


def test_the_cursor_rests_on_the_first_unseen_leftover_else_on_scanned_to(make_store):
    store = make_store()
    take(store, [4, 6], feed=POSTS)  # seen by the session
    result = take(store, [2, 4, 6, 8, 9], limit=1, scanned_to=50)
    assert (result.positions, result.view.cursor, result.has_more) == ([2], 8, True)  # 4 and 6 were seen
    result = take(store, [8, 9], offset=1, limit=2, scanned_to=50)
    assert (result.positions, result.view.cursor, result.has_more) == ([8, 9], 50, False)
    take(store, [60, 70], feed=POSTS, cursor=7, offset=2, scanned_to=100)
    only_seen = take(store, [60, 70], offset=3, limit=5, scanned_to=80)
    assert (only_seen.positions, only_seen.view.cursor, only_seen.has_more) == ([], 80, False)
    nothing = take(store, [], offset=3, limit=5, scanned_to=95)
    assert (nothing.status, nothing.view.cursor, nothing.view.served) == (PageStatus.SERVED, 95, 3)


def test_a_page_wanting_nothing_new_moves_the_cursor_to_the_first_unseen_candidate(make_store):
    store = make_store()
    take(store, [1, 2, 3], scanned_to=10)
    take(store, [12], feed=POSTS)
    result = take(store, [11, 12, 13], offset=0, limit=3, scanned_to=20)
    assert result == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 11, 3), [1, 2, 3], True)
    assert sequence(store) == [1, 2, 3]


def test_a_caller_whose_cursor_lags_has_the_earlier_candidates_dropped(make_store):
    store = make_store()
    take(store, [1, 3, 5, 7], limit=2, scanned_to=10)  # served 1, 3; the cursor on 5
    # Another process's view: cursor 0. Its candidates before the feed's cursor (1, 3, and 4, which
    # was never served) are dropped; it goes on from 5.
    lagging = take(store, [1, 3, 4, 5, 7, 9], cursor=0, offset=0, limit=4, scanned_to=10)
    assert lagging == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 9, 4), [1, 3, 5, 7], True)
    at_scanned_to = take(store, [], cursor=0, offset=4, limit=1, scanned_to=9)  # cursor == scanned_to
    assert at_scanned_to == PageResult(PageStatus.SERVED, FeedView(SEED, BOUNDS, 9, 4), [], False)
    assert sequence(store) == [1, 3, 5, 7]


def test_a_cursor_ahead_of_the_feed_or_a_feed_cursor_past_scanned_to_is_stale(make_store):
    store = make_store()
    take(store, [1, 3, 5, 7], limit=2, scanned_to=10)  # cursor 5
    stale = PageResult(PageStatus.STALE, FeedView(SEED, BOUNDS, 5, 2))
    assert take(store, [6, 7], cursor=6, offset=2) == stale  # ahead of the feed: never
    assert take(store, [2, 3], cursor=0, offset=2, scanned_to=4) == stale  # scanned short of the feed's cursor
    assert take(store, [9], session="new", cursor=3, create=True) == \
        PageResult(PageStatus.STALE, FeedView(SEED, BOUNDS, 0, 0))  # a new feed's cursor is 0
    assert store.summary("new") is None
    assert sequence(store) == [1, 3] and store.summary("s").feeds[REELS] == FeedSummary(served=2, cursor=5)


def test_reads_replay_any_ordinal_range_as_first_served(make_store):
    store = make_store()
    rng = random.Random(5)
    served, position = [], 0
    for _ in range(12):
        candidates = []
        for _ in range(rng.randint(0, 30)):
            position += rng.choice((1, 2, 3, 50, 2000, 70_000))
            candidates.append(position)
        limit = rng.randint(0, 25)
        result = take(store, candidates, limit=limit, scanned_to=position + 1, bounds=(10**7,))
        assert result.status is PageStatus.SERVED
        start = len(served)
        served += candidates[:limit]  # one feed: every candidate from the cursor on is unseen
        assert result.positions == served[start:start + limit]
        position = max(position, result.view.cursor)
    assert sequence(store) == served and len(served) > 50
    for _ in range(60):
        first = rng.randint(0, len(served) + 3)
        limit = rng.randint(0, 40)
        result = read(store, offset=first, limit=limit)
        assert result.positions == served[first:first + limit]
        assert result.has_more == (len(served) > first + limit)
    # A page with candidates over a served range takes nothing and answers the same positions.
    again = take(store, [position + 5], offset=3, limit=10)
    assert again.positions == served[3:13] and sequence(store) == served


def test_no_position_is_served_twice_across_the_feeds_of_a_session(make_store):
    store = make_store()
    rng = random.Random(11)
    pool = range(0, 1000)
    feeds = {REELS: lambda p: True, POSTS: lambda p: p % 2 == 0, THIRD: lambda p: p % 3 == 0}
    for _ in range(30):
        feed = rng.choice(list(feeds))
        view = read(store, feed=feed, limit=0)
        cursor = view.view.cursor if view.status is PageStatus.SERVED else 0
        candidates = [p for p in pool[cursor:cursor + 200] if feeds[feed](p)]
        take(store, candidates, feed=feed, limit=rng.randint(1, 40), scanned_to=min(1000, cursor + 200))
    served = {feed: sequence(store, feed=feed) for feed in feeds}
    everything = [p for positions in served.values() for p in positions]
    assert len(everything) == len(set(everything)) and len(everything) > 100
    assert store.summary("s").served_items_count == len(everything)
    for feed, positions in served.items():
        assert positions == sorted(positions) and all(feeds[feed](p) for p in positions)
    # Sessions are independent: another session is served the same positions.
    assert take(store, served[REELS][:5], session="other").positions == served[REELS][:5]


def test_a_weighted_feed_is_seen_by_canonical_position_and_takes_one_ticket_of_an_item(make_store):
    """A weighted feed's candidates (ticket positions) carry their items' canonical positions: an item
    a uniform feed served is refused, of two tickets of one item in a call the first is taken, and a
    uniform feed then refuses what the weighted one served; the weighted feed replays its tickets."""
    store = make_store()
    weighted = b"R" + bytes(range(8))
    take(store, [1, 2, 3])  # the uniform feed serves canonical positions 1, 2 and 3
    view = read(store, feed=weighted, limit=0).view
    result = store.serve_page("s", weighted, FeedView(SEED, view.bounds), offset=0, limit=4, max_ahead=AHEAD,
                              candidates=[10, 11, 12, 13, 14, 15], scanned_to=16,
                              canonical=[2, 7, 7, 8, 3, 9])
    assert result.status is PageStatus.SERVED
    assert result.positions == [11, 13, 15] and not result.has_more  # 10 and 14 seen, 12 a second ticket of 7
    assert sequence(store, feed=weighted) == [11, 13, 15]
    assert store.summary("s").served_items_count == 6
    assert take(store, [4, 7, 8, 9, 10], limit=5).positions == [4, 10]


# --- Bounds --------------------------------------------------------------------------------------


def test_bounds_grow_by_exactly_one_epoch_and_change_no_other_way(make_store):
    store = make_store()
    take(store, [10, 20], scanned_to=1000, bounds=(1000,))
    grown = take(store, [1001, 1005], bounds=(1000, 1500))
    assert grown.status is PageStatus.SERVED and grown.view.bounds == (1000, 1500)
    assert grown.positions == [1001, 1005]
    session = FeedView(SEED, (1000, 1500), 1006, 4)
    for bounds in [(1000,), (1000, 1600), (1000, 1500, 1500), (1000, 1500, 1400), (1000, 1500, 1800, 2000),
                   (999, 1500, 2000), ()]:
        assert take(store, [1007], bounds=bounds) == PageResult(PageStatus.STALE, session), bounds
    # The other feeds of the session see the new bounds; reads are answered whatever bounds they carry.
    assert take(store, [1100], feed=POSTS, bounds=(1000,)).status is PageStatus.STALE
    assert take(store, [1100], feed=POSTS, bounds=(1000, 1500)).positions == [1100]
    assert read(store, bounds=(7,)).positions == [10, 20, 1001, 1005]
    assert take(store, [1501], bounds=(1000, 1500, 1600)).view.bounds == (1000, 1500, 1600)


# --- Reset ---------------------------------------------------------------------------------------


def test_reset_forgets_the_session_whole(make_store):
    store = make_store()
    take(store, [1, 2, 3], feed=REELS)
    take(store, [4, 5], feed=POSTS)
    take(store, [1], session="other")
    result = store.reset("s")
    assert (result.found, result.cleared_items_count, result.total_active_sessions) == (True, 5, 1)
    assert store.summary("s") is None and store.session_ids() == ["other"] and store.session_count() == 1
    assert read(store).status is PageStatus.ABSENT and read(store, feed=POSTS).status is PageStatus.ABSENT
    assert take(store, [6], create=False, cursor=0).status is PageStatus.ABSENT
    # A new session of the same id: a fresh seed, nothing seen, every feed from 0.
    fresh = store.serve_page("s", POSTS, FeedView(OTHER_SEED, BOUNDS), offset=0, limit=5, max_ahead=AHEAD,
                             candidates=[1, 2, 3, 4, 5], scanned_to=6, create=True)
    assert fresh == PageResult(PageStatus.SERVED, FeedView(OTHER_SEED, BOUNDS, 6, 5), [1, 2, 3, 4, 5], False)
    assert store.summary("s").feeds == {POSTS: FeedSummary(served=5, cursor=6)}
    assert store.session_count() == 2


def test_reset_of_an_unknown_session_finds_nothing(make_store):
    store = make_store()
    take(store, [1], session="other")
    assert store.reset("ghost") == store.reset("ghost")
    result = store.reset("ghost")
    assert (result.found, result.cleared_items_count, result.total_active_sessions) == (False, 0, 1)
    assert store.summary("ghost") is None and store.session_ids() == ["other"]
    store.reset("other")
    again = store.reset("other")
    assert (again.found, again.cleared_items_count, again.total_active_sessions) == (False, 0, 0)


# --- Inspection ----------------------------------------------------------------------------------


def test_summary_shows_the_session_and_its_feeds_in_the_order_they_began(make_store):
    store = make_store(ttl=600)
    before = make_store.now()
    take(store, [3, 4, 5], feed=POSTS, scanned_to=9)
    take(store, [1, 2, 3, 7], feed=REELS, limit=1, scanned_to=9)
    after = make_store.now()
    summary = store.summary("s")
    assert summary.session_id == "s" and summary.served_items_count == 4
    assert before - 1 <= summary.created_at <= summary.last_seen_at <= after + 1
    assert 590 <= summary.expires_in_seconds <= 600
    assert list(summary.feeds.items()) == [(POSTS, FeedSummary(served=3, cursor=9)),
                                           (REELS, FeedSummary(served=1, cursor=2))]
    assert store.summary("ghost") is None


def test_session_ids_most_recently_used_first_and_session_count(make_store):
    """Redis: to within a second, per process (a process touches an index entry once a second)."""
    store = make_store()
    for name in ("a", "b", "c"):
        take(store, [1], session=name)
        next_moment(make_store)
    assert store.session_ids() == ["c", "b", "a"] and store.session_count() == 3
    read(another_process(make_store, store), "a")
    assert store.session_ids() == ["a", "c", "b"]
    assert store.session_ids(limit=2) == ["a", "c"] and store.session_ids(limit=0) == []
    store.reset("c")
    assert store.session_ids() == ["a", "b"] and store.session_count() == 2


# --- Idle TTL ------------------------------------------------------------------------------------


def expire(make_store, store, session_id: str) -> None:
    """Make ``session_id`` idle past the TTL. Memory: the manual clock moves on. Redis: what expiry
    does, now: the hash's expiry time put in the past (Redis deletes it) and its index entry aged."""
    if make_store.kind == "memory":
        make_store.advance(store.ttl)
        return
    from viralspot.store.redis_store import index_keys, index_shard, session_key

    client = store.client
    client.pexpireat(session_key(session_id), 1)
    shards = index_keys(len(store.index_keys))
    client.zadd(shards[index_shard(session_id, len(shards))], {session_id: 1})


def test_every_page_restarts_the_idle_ttl_and_inspection_does_not(make_store):
    store = make_store(ttl=60)
    take(store, [1, 2])
    client = redis_client(make_store, store)
    if client is None:
        make_store.advance(50)
        read(store)
        make_store.advance(50)
        take(store, [3])
        make_store.advance(50)
        assert store.summary("s").served_items_count == 3
        make_store.advance(9)
        store.summary("s")  # inspection: no restart
        make_store.advance(1)
        assert store.summary("s") is None
        return
    from viralspot.store.redis_store import session_key

    key = session_key("s")
    assert 59_000 < client.pttl(key) <= 60_000
    for page in (lambda: read(store), lambda: take(store, [3])):
        client.pexpire(key, 5_000)
        page()
        assert 59_000 < client.pttl(key) <= 60_000
    client.pexpire(key, 5_000)
    summary = store.summary("s")
    assert client.pttl(key) <= 5_000 and 0 < summary.expires_in_seconds <= 5


def test_a_page_answered_stale_or_beyond_also_restarts_the_idle_ttl(make_store):
    store = make_store(ttl=60)
    take(store, [1, 2])
    client = redis_client(make_store, store)
    for page in (lambda: read(store, seed=OTHER_SEED), lambda: read(store, offset=AHEAD + 3)):
        if client is None:
            read(store)  # touched now
            make_store.advance(50)
            page()
            make_store.advance(50)
            assert store.summary("s") is not None
        else:
            from viralspot.store.redis_store import session_key

            client.pexpire(session_key("s"), 5_000)
            page()
            assert client.pttl(session_key("s")) > 59_000


def test_an_expired_session_is_gone_whole(make_store):
    store = make_store(ttl=60)
    take(store, [1, 2, 3], session="old")
    take(store, [4], session="old", feed=POSTS)
    created = store.summary("old").created_at
    expire(make_store, store, "old")
    take(store, [1], session="young")
    assert store.session_count() == 1 and store.session_ids() == ["young"]
    assert store.summary("old") is None and read(store, "old").status is PageStatus.ABSENT
    assert store.reset("old").found is False
    next_moment(make_store)
    again = take(store, [1, 2, 3, 4], session="old", feed=POSTS, create=True)
    assert again.positions == [1, 2, 3, 4]  # expired: its positions may be served again
    assert store.summary("old").created_at > created


# --- Concurrency ---------------------------------------------------------------------------------


def test_threads_paging_one_session_never_serve_a_position_twice(make_store):
    """Six threads page three feeds of one session, each retrying on STALE from the view the store
    answers (the feed service's loop): every page a thread got is its slice of the feed's final
    sequence, and no position is in two feeds."""
    store = make_store()
    predicates = {REELS: lambda p: True, POSTS: lambda p: p % 2 == 0, THIRD: lambda p: p % 5 < 3}
    pages, lock = [], threading.Lock()
    errors = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(25):
                feed = rng.choice(list(predicates))
                result = read(store, feed=feed, limit=0)
                view = result.view if result.status is PageStatus.SERVED else FeedView(SEED, BOUNDS)
                offset, limit = view.served, rng.randint(1, 8)
                for _attempt in range(200):
                    candidates = [p for p in range(view.cursor, min(view.cursor + 40, 1000)) if predicates[feed](p)]
                    result = store.serve_page("s", feed, FeedView(SEED, BOUNDS, view.cursor), offset=offset,
                                              limit=limit, max_ahead=AHEAD, candidates=candidates,
                                              scanned_to=min(view.cursor + 40, 1000),
                                              create=result.status is PageStatus.ABSENT)
                    if result.status is PageStatus.SERVED and (result.has_more or result.view.cursor >= 1000
                                                               or len(result.positions) == limit):
                        break
                    if result.status is PageStatus.SERVED:  # short: scan on from the cursor
                        view = result.view
                    elif result.status is PageStatus.STALE:
                        view = result.view
                    # ABSENT: another thread is creating it; go again with create
                else:
                    raise AssertionError("no page after 200 attempts")
                with lock:
                    pages.append((feed, offset, result.positions))
        except Exception as error:  # noqa: BLE001 -- reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    final = {feed: sequence(store, feed=feed) for feed in predicates}
    everything = [p for positions in final.values() for p in positions]
    assert len(everything) == len(set(everything)) == store.summary("s").served_items_count
    for feed, offset, positions in pages:
        assert final[feed][offset:offset + len(positions)] == positions
    assert len(pages) == 150


# --- The Redis store against the memory store, side by side --------------------------------------

BLOCK = 65_536
#: The first epoch's end: positions spread over six 64 Ki-position blocks.
END = 6 * BLOCK
MACHINE_SESSIONS = ("s0", "s1")
#: Four feeds and room for three: FEED_LIMIT is reachable.
MACHINE_FEEDS = (REELS, POSTS, THIRD, b"p" + bytes(range(8, 16)))
MACHINE_MAX_FEEDS = 3
MACHINE_MAX_ITEMS = 2000
MACHINE_AHEAD = 60
#: Gaps between candidates: dense runs (bitmap containers), medium (arrays that later turn into
#: bitmaps), sparse and block-jumping ones.
GAPS = {"dense": (1, 2), "medium": (1, 40), "sparse": (50, 4000), "jumps": (1, 3 * BLOCK)}
MACHINE_SETTINGS = settings(max_examples=40, stateful_step_count=40, derandomize=True, database=None,
                            deadline=None, suppress_health_check=list(HealthCheck), print_blob=False)
#: Container encodings the machine saw in Redis, over all examples: each must occur, and an array
#: container must be seen turning into a bitmap.
_encodings_seen: set[str] = set()


class StoresAgree(RuleBasedStateMachine):
    """Each rule sends the same call to the memory store (the model) and the Redis store and
    requires the same answer. Set ``redis_store`` and ``flush`` on a subclass."""

    redis_store = None
    flush = None
    client = None

    def __init__(self) -> None:
        super().__init__()
        type(self).flush()
        self.model = MemorySessionStore(ttl=10**6, max_feeds=MACHINE_MAX_FEEDS, max_items=MACHINE_MAX_ITEMS,
                                        clock=ManualClock())
        self.real = type(self).redis_store
        self.seeds = {session: bytes([index + 1]) * 8 for index, session in enumerate(MACHINE_SESSIONS)}
        self.resets = 0
        #: Redis container field -> its encodings seen, in order.
        self.containers: dict[tuple[str, str], list[str]] = {}

    def both(self, session, feed, view, **kwargs) -> PageResult:
        expected = self.model.serve_page(session, feed, view, **kwargs)
        actual = self.real.serve_page(session, feed, view, **kwargs)
        assert actual == expected, f"pages differ: {session} {feed!r} {view} {kwargs}: {actual} != {expected}"
        return expected

    def current(self, session, feed) -> FeedView | None:
        """The session's view of the feed, from the model (None: no session)."""
        result = self.model.serve_page(session, feed, FeedView(self.seeds[session], ()), offset=0, limit=0,
                                       max_ahead=10**9)
        return None if result.status is PageStatus.ABSENT else result.view

    def served_by_model(self, session, feed) -> list[int]:
        state = self.model._sessions.get(session)
        feed_state = state.feeds.get(feed) if state is not None else None
        return feed_state.served.tolist() if feed_state is not None else []

    @initialize(first=st.integers(0, 5 * BLOCK))
    def array_then_bitmap(self, first):
        """Every example starts with a session whose first container is an array that the next
        page turns into a bitmap: sparse positions in a block, then dense ones after them."""
        sparse = list(range(first, first + 30 * 40, 30))
        view = FeedView(self.seeds["s0"], (END,))
        result = self.both("s0", REELS, view, offset=0, limit=40, max_ahead=MACHINE_AHEAD, candidates=sparse,
                           scanned_to=sparse[-1] + 1, create=True)
        assert result.positions == sparse
        self.note_containers("s0", REELS, [])
        dense = list(range(sparse[-1] + 1, sparse[-1] + 201))
        result = self.both("s0", REELS, result.view, offset=40, limit=200, max_ahead=MACHINE_AHEAD,
                           candidates=dense, scanned_to=dense[-1] + 1)
        assert result.positions == dense
        self.note_containers("s0", REELS, sparse)

    @rule(session=st.sampled_from(MACHINE_SESSIONS), feed=st.sampled_from(MACHINE_FEEDS), data=st.data())
    def page(self, session, feed, data):
        self.random_page(session, feed, data, ("next",) * 8 + ("lagging", "ahead", "past_scan", "grow",
                                                               "bad_bounds", "other_seed", "far_offset"))

    @rule(session=st.sampled_from(MACHINE_SESSIONS), feed=st.sampled_from(MACHINE_FEEDS), data=st.data())
    def next_page(self, session, feed, data):
        self.random_page(session, feed, data, ("next",))

    def random_page(self, session, feed, data, kinds):
        view = self.current(session, feed)
        create = view is None
        if view is None:
            view = FeedView(self.seeds[session], (END,))
        kind = data.draw(st.sampled_from(kinds), label="kind")
        seed, bounds, cursor = view.seed, view.bounds, view.cursor
        offset = view.served
        if kind == "lagging":
            cursor = data.draw(st.integers(0, cursor), label="lagging cursor")
        elif kind == "ahead":
            cursor += data.draw(st.integers(1, 500), label="ahead by")
        elif kind == "grow" or (kind == "next" and cursor >= view.end):
            bounds = (*bounds, view.end + data.draw(st.integers(1, 2 * BLOCK), label="epoch"))
        elif kind == "bad_bounds":
            bounds = data.draw(st.sampled_from([bounds[:-1], (*bounds[:-1], bounds[-1] + 7),
                                                (*bounds, bounds[-1] + 5, bounds[-1] + 9), (*bounds, bounds[-1])]))
        elif kind == "other_seed":
            seed = bytes([0xEE]) * 8
        elif kind == "far_offset":
            offset += data.draw(st.integers(-offset, MACHINE_AHEAD + 5), label="offset shift")
        end = bounds[-1] if bounds else END
        gaps = GAPS[data.draw(st.sampled_from(sorted(GAPS)), label="gaps")]
        count = data.draw(st.integers(0, 300), label="candidates")
        rng = random.Random(data.draw(st.integers(0, 2**32), label="rng"))
        candidates, position = [], cursor - 1
        for _ in range(count):
            position += rng.randint(*gaps)
            if position >= end:
                break
            candidates.append(position)
        scanned_to = min(end, max(position, cursor - 1) + 1 + data.draw(st.integers(0, 50), label="extra"))
        if kind == "past_scan":
            scanned_to = data.draw(st.integers(0, max(0, cursor)), label="scanned short")
            candidates = [p for p in candidates if p < scanned_to]
        limit = data.draw(st.integers(0, 250), label="limit")
        before = self.served_by_model(session, feed)
        result = self.both(session, feed, FeedView(seed, bounds, cursor), offset=max(0, offset), limit=limit,
                           max_ahead=MACHINE_AHEAD, candidates=candidates, scanned_to=scanned_to, create=create)
        if result.status is PageStatus.SERVED:
            self.note_containers(session, feed, before)

    def note_containers(self, session, feed, before):
        """Record the Redis encoding of the containers this page wrote."""
        from viralspot.store.redis_store import session_key

        if self.client is None:
            return
        after = self.served_by_model(session, feed)
        blocks = sorted({p // BLOCK for p in after[len(before):]})
        if not blocks:
            return
        number = list(self.model._sessions[session].feeds).index(feed) + 1
        fields = [f"{number}.{block}" for block in blocks]
        for name, value in zip(fields, self.client.hmget(session_key(session), fields)):
            assert value, (session, name)
            encoding = chr(value[0])
            history = self.containers.setdefault((session, name), [])
            if not history or history[-1] != encoding:
                history.append(encoding)
            _encodings_seen.add(encoding)
            if history[:2] == ["a", "b"]:
                _encodings_seen.add("a->b")
            assert history in (["a"], ["b"], ["a", "b"]), history  # a bitmap never turns back

    @rule(session=st.sampled_from(MACHINE_SESSIONS), feed=st.sampled_from(MACHINE_FEEDS),
          offset=st.integers(0, 400), limit=st.integers(0, 120), other_seed=st.booleans())
    def read_any(self, session, feed, offset, limit, other_seed):
        view = self.current(session, feed) or FeedView(self.seeds[session], (END,))
        seed = bytes([0xEE]) * 8 if other_seed else view.seed
        self.both(session, feed, FeedView(seed, view.bounds), offset=offset, limit=limit, max_ahead=MACHINE_AHEAD)

    @rule(session=st.sampled_from(MACHINE_SESSIONS), feed=st.sampled_from(MACHINE_FEEDS), data=st.data())
    def replay(self, session, feed, data):
        served = self.served_by_model(session, feed)
        first = data.draw(st.integers(0, len(served)), label="first")
        limit = data.draw(st.integers(0, len(served) - first + 2), label="limit")
        view = self.current(session, feed) or FeedView(self.seeds[session], (END,))
        result = self.both(session, feed, view, offset=first, limit=limit, max_ahead=10**9)
        if served:
            assert result.positions == served[first:first + limit]

    @rule(session=st.sampled_from(MACHINE_SESSIONS))
    def reset(self, session):
        expected = self.model.reset(session)
        actual = self.real.reset(session)
        assert (actual.found, actual.cleared_items_count) == (expected.found, expected.cleared_items_count)
        self.resets += 1
        self.seeds[session] = bytes([0x10 + self.resets % 200]) * 8
        self.containers = {key: value for key, value in self.containers.items() if key[0] != session}

    @invariant()
    def sessions_never_repeat_and_feeds_ascend(self):
        for session in MACHINE_SESSIONS:
            state = self.model._sessions.get(session)
            if state is None:
                continue
            everything = []
            for feed_state in state.feeds.values():
                served = feed_state.served.tolist()
                assert served == sorted(served) and all(p < feed_state.cursor for p in served)
                everything += served
            assert len(everything) == len(set(everything)) == len(state.seen)


@pytest.mark.redis
def test_the_redis_store_answers_every_page_as_the_memory_store_does(redis_clean):
    from viralspot.store.redis_store import RedisSessionStore

    store = RedisSessionStore(redis_clean.url, ttl=10**6, max_feeds=MACHINE_MAX_FEEDS, max_items=MACHINE_MAX_ITEMS)
    client = redis_clean.client()
    try:
        machine = type("StoresAgreeOnRedis", (StoresAgree,), {
            "redis_store": store, "client": client, "flush": staticmethod(client.flushall)})
        _encodings_seen.clear()
        run_state_machine_as_test(machine, settings=MACHINE_SETTINGS)
        assert {"a", "b", "a->b"} <= _encodings_seen, _encodings_seen
    finally:
        store.close()
        client.close()


class ForgetsOtherFeeds(MemorySessionStore):
    """A broken store: each page forgets what the session's other feeds were served."""

    def serve_page(self, session_id, feed_id, view, **kwargs):
        session = self._sessions.get(session_id)
        if session is None:
            return super().serve_page(session_id, feed_id, view, **kwargs)
        feed = session.feeds.get(feed_id)
        session.seen = BitMap(feed.served if feed is not None else ())
        try:
            return super().serve_page(session_id, feed_id, view, **kwargs)
        finally:  # counted right again: only the page was blind
            session.seen = BitMap()
            for each in session.feeds.values():
                session.seen.update(each.served)


def test_the_side_by_side_machine_catches_a_store_that_serves_a_position_twice():
    """The machine is not vacuous: a store blind to the session's other feeds answers differently."""
    broken = ForgetsOtherFeeds(ttl=10**6, max_feeds=MACHINE_MAX_FEEDS, max_items=MACHINE_MAX_ITEMS,
                               clock=ManualClock())

    def flush():
        broken._sessions.clear()

    machine = type("StoresAgreeOnBroken", (StoresAgree,), {"redis_store": broken, "flush": staticmethod(flush)})
    with pytest.raises(AssertionError, match="pages differ"):
        run_state_machine_as_test(machine, settings=settings(MACHINE_SETTINGS, phases=[Phase.generate],
                                                             report_multiple_bugs=False))
