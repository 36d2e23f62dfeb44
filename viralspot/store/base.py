"""The session store interface: what every backend (memory, Redis) does atomically.

A session is one record, kept whole or forgotten whole (TTL expiry, eviction, reset):

* its *seed*, 8 random bytes chosen when the session is created, which key its random order;
* its *bounds*, the ascending largest content keys of the epochs of its key space: epoch ``e``
  holds the keys ``(bounds[e-1], bounds[e]]`` and is permuted on its own, so the positions of
  the order are ``0 .. bounds[-1] - 1`` and a catalog that grew adds an epoch at the end;
* per feed (endpoint + filter set, an id of ``FEED_ID_BYTES``) a *cursor*, the next position
  of the order the feed examines, and the positions it has served, in order (a feed walks the
  order forward, so its served positions ascend);
* how many items it has been served, and when it was created.

A position served by any feed is *seen*: no feed of the session serves it again. A *weighted*
feed (an id whose first byte is a capital letter) walks an order of its own (of tickets,
``feed/weights.py``): its served positions are in that order, and each candidate comes with its
*canonical* position, the item's position in the session's order, which is what is seen. A page is one
atomic ``serve_page``: it answers the feed's page from what is served (a replay) and, given
candidates, first takes the unseen ones it needs. Every backend answers the same
``PageResult`` for the same calls; ``tests/test_store_contract.py`` holds them to it.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Sequence

#: Bytes of a feed id: the endpoint's initial and 8 bytes of the filter's signature.
FEED_ID_BYTES = 9
#: A session seed's bytes.
SEED_BYTES = 8
#: Largest content key (and so position) a session's order holds.
KEY_LIMIT = 2 ** 32 - 1


class StoreError(Exception):
    """Base class of session store failures."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; the API answers 503."""


class PageStatus(IntEnum):
    """What ``serve_page`` did; the codes are the Redis script's."""

    #: The page was answered (it may be short: see ``PageResult``).
    SERVED = 0
    #: The caller's view (seed, bounds, cursor) is not the session's: nothing changed; the result
    #: carries the session's view to compute candidates from.
    STALE = 1
    #: No session, and ``create`` was not asked.
    ABSENT = 2
    #: The page starts more than ``max_ahead`` items past what the feed has served.
    BEYOND = 3
    #: A new feed would pass the store's ``max_feeds``.
    FEED_LIMIT = 4
    #: The page would take the session past the store's ``max_items``.
    ITEM_LIMIT = 5


@dataclass(frozen=True)
class FeedView:
    """A session and one of its feeds as a page sees them. ``seed`` is b"" for no session."""

    seed: bytes
    bounds: tuple[int, ...]
    cursor: int = 0
    served: int = 0

    @property
    def end(self) -> int:
        """The number of positions in the order (the largest key the session's epochs hold)."""
        return self.bounds[-1] if self.bounds else 0


@dataclass(frozen=True)
class PageResult:
    status: PageStatus
    view: FeedView
    #: The positions served at the page's ordinals ``[offset, offset + limit)``: fewer when the feed has served fewer.
    positions: list[int] = field(default_factory=list)
    #: True when an unseen matching item is known to follow the page: the feed has served more
    #: than the page's end, or a candidate left over (the cursor then rests on it).
    has_more: bool = False


@dataclass(frozen=True)
class ResetResult:
    found: bool
    cleared_items_count: int
    #: None when the reset is done but the sessions cannot be counted (a cluster master down).
    total_active_sessions: int | None


@dataclass(frozen=True)
class FeedSummary:
    """One feed of a session, as inspection shows it."""

    served: int
    cursor: int


@dataclass(frozen=True)
class SessionSummary:
    """What inspection tools show of an active session. Times are epoch seconds."""

    session_id: str
    served_items_count: int
    created_at: float
    last_seen_at: float
    expires_in_seconds: float
    #: Feed id (bytes) -> its summary, in the order the feeds began.
    feeds: dict[bytes, FeedSummary]


class SessionStoreBackend(abc.ABC):
    """Backend interface. Session ids reaching a backend are already validated.

    ``max_feeds`` bounds a session's feeds and ``max_items`` the items it is served
    (``VIRALSPOT_SESSION_MAX_FEEDS``, ``VIRALSPOT_SESSION_MAX_ITEMS``).
    """

    #: Reported as ``server_info.session_storage_type``.
    storage_type: str = "unknown"
    #: Whether other processes (workers, hosts, ``flask sessions``) see the same sessions.
    shared: bool = False
    #: Called once for each reset notice this process hears (``was_reset``), when set before the
    #: store's first use: the metrics count them. A store of one process hears none.
    on_reset_heard: Callable[[], object] | None = None

    def __init__(self, ttl: float, max_feeds: int, max_items: int) -> None:
        if ttl <= 0 or max_feeds <= 0 or max_items <= 0:
            raise ValueError("ttl, max_feeds and max_items must be positive")
        self.ttl = ttl
        self.max_feeds = max_feeds
        self.max_items = max_items

    @abc.abstractmethod
    def serve_page(self, session_id: str, feed_id: bytes, view: FeedView, *, offset: int, limit: int,
                   max_ahead: int, candidates: Sequence[int] | None = None, scanned_to: int = 0,
                   create: bool = False, canonical: Sequence[int] | None = None) -> PageResult:
        """One page of a feed, atomically; every call restarts the session's idle TTL.

        ``view`` is the caller's idea of the session (seed, bounds) and of the feed (cursor).
        Without a session: ``ABSENT``, unless ``create``, which starts one with ``view``'s seed
        and bounds. With another seed: ``STALE``. A page starting past the feed's served count
        plus ``max_ahead``: ``BEYOND``.

        Without ``candidates`` (a read): ``SERVED`` with what the feed holds of the page.
        With ``candidates``, the ascending positions in ``[view.cursor, scanned_to)`` that match
        the feed's filter, computed on ``view``'s bounds, which may add one epoch to the
        session's (a larger last bound): ``STALE`` unless the bounds are the session's or that
        one step longer, and unless ``view.cursor <= cursor <= scanned_to`` for the feed's own
        cursor (a caller behind the feed sends candidates it drops). The unseen candidates
        from the cursor on are taken, up to the page's end; the cursor moves to the first unseen
        candidate left over (``has_more``), else to ``scanned_to``. A new feed past
        ``max_feeds`` is ``FEED_LIMIT``; a page that would take the session's items past
        ``max_items`` is ``ITEM_LIMIT``. Nothing changes unless the answer is ``SERVED``.
        A weighted feed's call gives each candidate's ``canonical`` position: a candidate is
        unseen when that is, and of two candidates with one canonical position the first is taken.
        """

    @abc.abstractmethod
    def reset(self, session_id: str) -> ResetResult:
        """Forget a session whole. ``found`` is False, and nothing changes, when there is none.
        ``total_active_sessions`` is counted after the reset."""

    def was_reset(self, session_id: str, seed: bytes) -> bool:
        """Whether this process has heard that the session holding ``seed`` was reset by another
        process (a shared store's notice, ``reset_notices.py``): a view of it is of a session that
        is gone. A hint only; a store of one process hears nothing."""
        return False

    @abc.abstractmethod
    def session_count(self) -> int:
        """Active sessions (used within the TTL)."""

    @abc.abstractmethod
    def summary(self, session_id: str) -> SessionSummary | None:
        """Inspection view of one active session, or None (unknown, expired or reset)."""

    @abc.abstractmethod
    def session_ids(self, limit: int = 100) -> list[str]:
        """Up to ``limit`` active session ids, most recently used first (Redis: to within a second)."""

    def stats(self) -> dict:
        """Figures for ``flask sessions stats``: the backend kind and its active sessions, plus what
        the backend knows of its own (memory use, evictions)."""
        return {"storage_type": self.storage_type, "active_sessions": self.session_count()}

    def ping(self) -> bool:
        """True when the backend answers."""
        return True

    def close(self) -> None:
        """Release connections."""

