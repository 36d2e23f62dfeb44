"""In-process session store: thread-safe, TTL-expiring, LRU-capped in sessions and items held.

A session is one ``_Session`` object in one ``OrderedDict`` (least recently used first), so it
is kept or dropped whole. Each feed's served positions are an ``array('I')`` in the order served
(4 bytes an item); the seen set is a pyroaring ``BitMap`` of (canonical) positions (1-2 bytes an
item). One lock guards everything: each operation is a few microseconds of set work, and holding
the lock is what makes it atomic, the guarantee the Redis backend gets from Lua.

This store lives in one process. Under several gunicorn workers each worker would hold its own;
``gunicorn.conf.py`` refuses that combination.
"""
from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict
from typing import Callable, Sequence

from pyroaring import BitMap

from .base import (FeedSummary, FeedView, PageResult, PageStatus, ResetResult, SessionStoreBackend,
                   SessionSummary)


class _Feed:
    __slots__ = ("cursor", "served")

    def __init__(self) -> None:
        self.cursor = 0
        self.served = array("I")


class _Session:
    __slots__ = ("seed", "bounds", "seen", "feeds", "created", "touched")

    def __init__(self, seed: bytes, bounds: tuple[int, ...], now: float) -> None:
        self.seed = seed
        self.bounds = bounds
        self.seen = BitMap()
        self.feeds: dict[bytes, _Feed] = {}
        self.created = now
        self.touched = now


class MemorySessionStore(SessionStoreBackend):
    storage_type = "in_memory_dict"

    def __init__(self, ttl: float = 86400, max_sessions: int = 100_000, max_feeds: int = 64,
                 max_items: int = 1_000_000, clock: Callable[[], float] = time.time,
                 max_total_items: int = 20_000_000) -> None:
        super().__init__(ttl, max_feeds, max_items)
        if max_sessions <= 0 or max_total_items <= 0:
            raise ValueError("max_sessions and max_total_items must be positive")
        self.max_sessions, self.max_total_items, self.total_items = max_sessions, max_total_items, 0
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def _expire(self, now: float) -> None:
        sessions = self._sessions
        while sessions and now - next(iter(sessions.values())).touched >= self.ttl:
            self._drop_oldest()
            self.expired += 1

    def _drop_oldest(self) -> None:
        self.total_items -= len(self._sessions.popitem(last=False)[1].seen)

    def _lookup(self, session_id: str, now: float) -> _Session | None:
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is not None:
            session.touched = now
            self._sessions.move_to_end(session_id)
        return session

    def serve_page(self, session_id: str, feed_id: bytes, view: FeedView, *, offset: int, limit: int,
                   max_ahead: int, candidates: Sequence[int] | None = None, scanned_to: int = 0,
                   create: bool = False, canonical: Sequence[int] | None = None) -> PageResult:
        with self._lock:
            now = self._clock()
            session = self._lookup(session_id, now)
            if session is None:
                if not create:
                    return PageResult(PageStatus.ABSENT, FeedView(b"", ()))
                session = _Session(view.seed, tuple(view.bounds), now)
                fresh = True
            else:
                fresh = False
            feed = session.feeds.get(feed_id)
            cursor, served = (feed.cursor, feed.served) if feed is not None else (0, array("I"))
            current = FeedView(session.seed, session.bounds, cursor, len(served))
            need = offset + limit
            if session.seed != view.seed:
                return PageResult(PageStatus.STALE, current)
            if offset > len(served) + max_ahead:
                return PageResult(PageStatus.BEYOND, current)
            if candidates is None:
                return PageResult(PageStatus.SERVED, current, served[offset:need].tolist(), len(served) > need)
            bounds = tuple(view.bounds)
            grows = (len(bounds) == len(session.bounds) + 1 and bounds[:-1] == session.bounds
                     and bounds[-1] > current.end)
            if (bounds != session.bounds and not grows) or not view.cursor <= cursor <= scanned_to:
                return PageResult(PageStatus.STALE, current)
            want = max(0, need - len(served))
            if feed is None and len(session.feeds) >= self.max_feeds:
                return PageResult(PageStatus.FEED_LIMIT, current)
            seen = session.seen
            items = candidates if canonical is None else canonical
            taken, taken_items, new_cursor, has_more = [], BitMap(), scanned_to, False
            for position, item in zip(candidates, items):
                if position < cursor or item in seen or item in taken_items:
                    continue
                if len(taken) == want:
                    new_cursor, has_more = position, True
                    break
                taken.append(position)
                taken_items.add(item)
            if len(seen) + len(taken) > self.max_items:
                return PageResult(PageStatus.ITEM_LIMIT, current)
            while ((fresh and len(self._sessions) >= self.max_sessions)
                   or self.total_items + len(taken) > self.max_total_items) \
                    and next(iter(self._sessions), session_id) != session_id:
                self._drop_oldest()
                self.evicted += 1
            if fresh:
                self._sessions[session_id] = session
            if feed is None:
                feed = session.feeds[feed_id] = _Feed()
                feed.served = served
            session.bounds = bounds
            seen |= taken_items
            self.total_items += len(taken)
            served.extend(taken)
            feed.cursor = new_cursor
            result_view = FeedView(session.seed, bounds, new_cursor, len(served))
            return PageResult(PageStatus.SERVED, result_view, served[offset:need].tolist(),
                              has_more or len(served) > need)

    def reset(self, session_id: str) -> ResetResult:
        with self._lock:
            session = self._lookup(session_id, self._clock())
            if session is None:
                return ResetResult(False, 0, len(self._sessions))
            del self._sessions[session_id]
            self.total_items -= len(session.seen)
            return ResetResult(True, len(session.seen), len(self._sessions))

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
            feeds = {key: FeedSummary(len(feed.served), feed.cursor) for key, feed in session.feeds.items()}
            return SessionSummary(session_id, len(session.seen), session.created, session.touched,
                                  round(session.touched + self.ttl - now, 3), feeds)

    def session_ids(self, limit: int = 100) -> list[str]:
        with self._lock:
            self._expire(self._clock())
            return list(reversed(self._sessions))[:max(0, limit)]

    def stats(self) -> dict:
        return {**super().stats(), "max_sessions": self.max_sessions, "evicted": self.evicted,
                "expired": self.expired, "items_held": self.total_items, "max_total_items": self.max_total_items}
