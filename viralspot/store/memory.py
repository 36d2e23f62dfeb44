"""In-process session store: thread-safe, TTL-expiring, LRU-capped, compact.

Each feed's served sequence is an ``array('I')`` (4 bytes per key). A session's
seen keys are a sorted ``array('I')`` while there are few of them (4 bytes per
key, binary search), and a pyroaring ``BitMap`` beyond that, where its
per-container overhead has been amortized (1-3 bytes per key): a served item
costs at most 8 bytes at every session size. One lock guards everything: every operation is a few
microseconds of C-level set work, and holding one lock is what makes each
operation atomic, the same guarantee the Redis backend gets from Lua.

A reset removes the session and keeps a freshness record (the generation its
next order uses) for the TTL, capped like the sessions.

This store lives in one process. Under several gunicorn workers each worker
would hold its own; ``gunicorn.conf.py`` refuses that combination.
"""
from __future__ import annotations

import threading
import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from typing import Callable, Sequence

from pyroaring import BitMap

from .base import ClaimResult, FeedSummary, FeedView, ResetResult, SessionStoreBackend, SessionSummary


class SeenKeys:
    """The keys a session was served: a sorted array while small, a roaring bitmap beyond."""

    __slots__ = ("_small", "_bitmap")

    #: Above this many keys a bitmap is smaller than 4 bytes per key even on a sparse key space.
    SMALL = 256

    def __init__(self) -> None:
        self._small: array | None = array("I")
        self._bitmap: BitMap | None = None

    def __len__(self) -> int:
        return len(self._bitmap) if self._bitmap is not None else len(self._small)

    def __contains__(self, key: int) -> bool:
        if self._bitmap is not None:
            return key in self._bitmap
        small = self._small
        index = bisect_left(small, key)
        return index < len(small) and small[index] == key

    def update(self, keys: Sequence[int]) -> None:
        """Add every key of ``keys``."""
        if self._bitmap is None and len(self._small) + len(keys) > self.SMALL:
            self._bitmap, self._small = BitMap(self._small), None
        if self._bitmap is not None:
            self._bitmap.update(keys)
            return
        small = self._small
        for key in keys:
            index = bisect_left(small, key)
            if index == len(small) or small[index] != key:
                small.insert(index, key)

    def among(self, keys: Sequence[int]) -> list[int]:
        """The keys of ``keys`` that are in the set."""
        if self._bitmap is not None:
            return list(self._bitmap & BitMap(keys))
        small = self._small
        if not small:
            return []
        # A binary search per key: the array holds at most SMALL keys, a page asks about tens.
        size = len(small)
        found = []
        for key in keys:
            index = bisect_left(small, key)
            if index < size and small[index] == key:
                found.append(key)
        return found

    def nbytes(self) -> int:
        """Bytes of key storage (a bitmap counted at its serialized size)."""
        if self._bitmap is not None:
            return len(self._bitmap.serialize())
        return self._small.itemsize * len(self._small)


class _Feed:
    __slots__ = ("plan", "cursor", "served", "exhausted")

    def __init__(self) -> None:
        self.plan: str | None = None
        self.cursor = 0
        self.served = array("I")
        self.exhausted = False


class _Session:
    __slots__ = ("generation", "seen", "feeds", "created", "touched")

    def __init__(self, now: float, generation: int = 0) -> None:
        self.generation = generation
        self.seen = SeenKeys()
        self.feeds: OrderedDict[str, _Feed] = OrderedDict()
        self.created = now
        self.touched = now


class MemorySessionStore(SessionStoreBackend):
    storage_type = "in_memory_dict"

    def __init__(
        self,
        ttl: float = 86400,
        max_sessions: int = 100_000,
        max_feeds: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0 or max_sessions <= 0 or max_feeds <= 0:
            raise ValueError("ttl, max_sessions and max_feeds must be positive")
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.max_feeds = max_feeds
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        #: Freshness records of reset sessions: id -> (generation the next order uses, when reset).
        self._fresh: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    # -- internal helpers (call with the lock held) ---------------------------------

    def _expire(self, now: float) -> None:
        # Sessions are kept in least-recently-used order, so the expired ones are at the front;
        # freshness records in the order of their resets.
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if now - oldest.touched < self.ttl:
                break
            sessions.popitem(last=False)
            self.expired += 1
        fresh = self._fresh
        while fresh and now - next(iter(fresh.values()))[1] >= self.ttl:
            fresh.popitem(last=False)

    def _generation(self, session_id: str) -> int:
        """The generation a new session ``session_id`` starts at: its freshness record's, else 0."""
        record = self._fresh.get(session_id)
        return record[0] if record is not None else 0

    def _lookup(self, session_id: str, now: float) -> _Session | None:
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is not None:
            session.touched = now
            self._sessions.move_to_end(session_id)
        return session

    def _create(self, session_id: str, now: float) -> _Session:
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
            self.evicted += 1
        record = self._fresh.pop(session_id, None)
        session = self._sessions[session_id] = _Session(now, record[0] if record is not None else 0)
        return session

    # -- SessionStore ---------------------------------------------------------------

    def read_feed(self, session_id: str, feed_key: str, start: int, stop: int) -> FeedView:
        with self._lock:
            return self._read_feed(self._lookup(session_id, self._clock()), session_id, feed_key, start, stop)

    def _read_feed(self, session: _Session | None, session_id: str, feed_key: str, start: int,
                   stop: int) -> FeedView:
        """``read_feed`` of a session already looked up, under the lock."""
        if session is None:
            return FeedView(self._generation(session_id), None, 0, 0, False, [])
        feed = session.feeds.get(feed_key)
        if feed is None:
            return FeedView(session.generation, None, 0, 0, False, [])
        session.feeds.move_to_end(feed_key)
        return FeedView(
            session.generation, feed.plan, feed.cursor, len(feed.served),
            feed.exhausted, feed.served[start:stop].tolist(),
        )

    def seen_among(self, session_id: str, keys: Sequence[int]) -> list[int]:
        with self._lock:
            session = self._lookup(session_id, self._clock())
            if session is None or not len(session.seen):
                return []
            return session.seen.among(keys)

    def claim_unseen(self, session_id, feed_key, *, generation, expect_cursor, expect_plan,
                     plan, domain, candidates, scanned_to, want, page, expect_served=None) -> ClaimResult:
        with self._lock:
            now = self._clock()
            session = self._lookup(session_id, now)
            current_generation = session.generation if session else self._generation(session_id)
            feed = session.feeds.get(feed_key) if session else None
            cursor, current_plan = (feed.cursor, feed.plan) if feed else (0, None)
            moved_on = expect_served is None and plan == expect_plan and expect_cursor < cursor < scanned_to
            if (current_generation, current_plan) != (generation, expect_plan) or not (
                    cursor == expect_cursor or moved_on) or (
                    expect_served is not None and (len(feed.served) if feed else 0) != expect_served):
                return ClaimResult(ok=False, view=self._read_feed(session, session_id, feed_key, *page))
            if cursor != expect_cursor:  # moved ahead on this plan: go on from the feed's cursor
                candidates = [pair for pair in candidates if pair[0] >= cursor]
            if session is None:
                session = self._create(session_id, now)
            if feed is None:
                feed = session.feeds[feed_key] = _Feed()
                while len(session.feeds) > self.max_feeds:
                    session.feeds.popitem(last=False)
            seen, served = session.seen, feed.served
            if cursor != expect_cursor:  # the caller counted from a served count that lags
                want = max(0, min(want, page[1] - len(served)))
            taken = seen.among([key for _position, key in candidates]) if len(seen) else ()
            if taken:
                taken = set(taken)
                candidates = [pair for pair in candidates if pair[1] not in taken]
            new_cursor, has_more = scanned_to, False
            if len(candidates) > want:
                new_cursor, has_more = candidates[want][0], True
                candidates = candidates[:want]
            claimed = [key for _position, key in candidates]
            seen.update(claimed)
            served.extend(claimed)
            feed.plan = plan
            feed.cursor = new_cursor
            feed.exhausted = new_cursor >= domain
            return ClaimResult(
                ok=True, claimed=claimed, served_count=len(served), exhausted=feed.exhausted,
                has_more=has_more, keys=served[page[0]:page[1]].tolist(), cursor=new_cursor,
            )

    def reset(self, session_id: str) -> ResetResult:
        with self._lock:
            now = self._clock()
            session = self._lookup(session_id, now)
            if session is None:
                return ResetResult(False, 0, self._generation(session_id), len(self._sessions))
            del self._sessions[session_id]
            generation = session.generation + 1
            self._fresh[session_id] = (generation, now)
            # At most as many records as sessions: the oldest go first (their sessions then start
            # again at generation 0, as an expired session does).
            while len(self._fresh) > self.max_sessions:
                self._fresh.popitem(last=False)
            return ResetResult(True, len(session.seen), generation, len(self._sessions))

    def session_count(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._sessions)

    def summary(self, session_id: str) -> SessionSummary | None:
        with self._lock:
            now = self._clock()
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None:
                return None
            feeds = {key: FeedSummary(len(feed.served), feed.exhausted, feed.cursor, feed.plan)
                     for key, feed in session.feeds.items()}
            return SessionSummary(session_id, session.generation, len(session.seen), session.created,
                                  session.touched, round(session.touched + self.ttl - now, 3), feeds)

    def session_ids(self, limit: int = 100) -> list[str]:
        with self._lock:
            self._expire(self._clock())
            ids = []
            for session_id in reversed(self._sessions):
                if len(ids) >= limit:
                    break
                ids.append(session_id)
            return ids

    def stats(self) -> dict:
        return {**super().stats(), "max_sessions": self.max_sessions, "evicted": self.evicted,
                "expired": self.expired, "served_bytes": self.served_bytes()}

    def served_bytes(self) -> int:
        """Bytes held by seen sets and served sequences (for the memory benchmark)."""
        with self._lock:
            total = 0
            for session in self._sessions.values():
                total += session.seen.nbytes()
                total += sum(feed.served.itemsize * len(feed.served) for feed in session.feeds.values())
            return total
