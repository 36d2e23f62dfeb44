"""The session store interface: what every backend (memory, Redis) must do atomically.

An active session holds:

* its generation, which keys the session's random order;
* the set of content keys (dense integer ids below 2**32) it has been served, the "seen" set;
* per random feed (endpoint + filter set) a replayable served sequence, the
  position in the permutation the feed has scanned to (the cursor), and the
  plan token naming the permutation space the cursor walks;
* when it was created and last used (epoch seconds); it expires after the
  store's TTL of idleness.

A reset ends the session: its data is freed and it no longer counts as active.
Only a *freshness record* stays behind, the generation the session's next order
must use (the old one plus one), kept for the TTL. It is not an active session:
``session_count``, ``session_ids`` and ``summary`` do not see it. A new session
starts at the generation of its freshness record (0 without one), so two servers
sharing a store compute the same order for it, and a reset session's next order
is fresh.

Every mutating operation is a single atomic step so that a Redis backend can run
it as one Lua script: ``claim_unseen`` is a compare-and-set on
(generation, cursor, plan) followed by "take the candidates not yet seen".
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence


class StoreError(Exception):
    """Base class of session store failures."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; the API answers 503."""


@dataclass(frozen=True)
class FeedView:
    """A consistent snapshot of one feed of one session."""

    generation: int
    plan: str | None
    cursor: int
    served_count: int
    exhausted: bool
    keys: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ClaimResult:
    """Outcome of ``claim_unseen``. ``ok`` is False when the compare-and-set failed."""

    ok: bool
    claimed: list[int] = field(default_factory=list)
    served_count: int = 0
    exhausted: bool = False
    has_more: bool = False
    keys: list[int] = field(default_factory=list)
    #: The feed's cursor after the claim.
    cursor: int = 0
    #: When the compare-and-set failed: the feed as ``read_feed`` answers it for the claim's page
    #: (a caller goes on from it without a read).
    view: FeedView | None = None


@dataclass(frozen=True)
class ResetResult:
    found: bool
    cleared_items_count: int
    generation: int
    total_active_sessions: int


@dataclass(frozen=True)
class FeedSummary:
    """One feed of a session, as inspection shows it."""

    served: int
    exhausted: bool
    cursor: int
    plan: str | None


@dataclass(frozen=True)
class SessionSummary:
    """What inspection tools show of an active session. Times are epoch seconds."""

    session_id: str
    generation: int
    served_items_count: int
    created_at: float
    last_seen_at: float
    expires_in_seconds: float
    feeds: dict[str, FeedSummary]


class SessionStoreBackend(abc.ABC):
    """Backend interface. Session ids reaching a backend are already validated."""

    #: Reported as ``server_info.session_storage_type``.
    storage_type: str = "unknown"
    #: Whether the feed should filter candidates with ``seen_among`` before claiming: True where the
    #: check is an in-process call; False where it costs a round trip (the claim skips seen keys).
    prefilter_seen: bool = True
    #: Whether other processes (workers, hosts, ``flask sessions``) see the same sessions.
    shared: bool = False
    #: Whether the feed should claim on a presumed view of a feed it has not read (checked with
    #: ``expect_served``) rather than read it first: True where a read costs a round trip.
    presume_views: bool = False

    @abc.abstractmethod
    def read_feed(self, session_id: str, feed_key: str, start: int, stop: int) -> FeedView:
        """Snapshot of a feed plus its served keys ``[start:stop]``. Creates nothing; an active
        session's idle TTL restarts. Without an active session: the freshness record's generation
        (0 without one), no plan, cursor 0, nothing served."""

    @abc.abstractmethod
    def seen_among(self, session_id: str, keys: Sequence[int]) -> list[int]:
        """The keys among ``keys`` the session has been served (advisory, read-only)."""

    @abc.abstractmethod
    def claim_unseen(
        self,
        session_id: str,
        feed_key: str,
        *,
        generation: int,
        expect_cursor: int,
        expect_plan: str | None,
        plan: str,
        domain: int,
        candidates: Sequence[tuple[int, int]],
        scanned_to: int,
        want: int,
        page: tuple[int, int],
        expect_served: int | None = None,
    ) -> ClaimResult:
        """Atomically extend a feed's served sequence.

        Fails (``ok=False``, nothing claimed) unless the session's generation is
        ``generation`` and the feed's cursor and plan are ``expect_cursor`` and
        ``expect_plan`` (a missing feed has cursor 0 and plan None), and, when
        ``expect_served`` is given, the feed has served exactly that many keys and
        its cursor is exactly ``expect_cursor``. A failed claim answers the feed
        as ``read_feed(session_id, feed_key, *page)`` would (``view``), restarting
        the idle TTL as that read does, so the caller goes on without a read. Otherwise it
        walks ``candidates`` (permutation position, key) in order, skips keys
        already seen, and appends up to ``want`` of the rest to the feed's served
        sequence and to the seen set. The new cursor is the position of the first unseen
        candidate left over, else ``scanned_to``; the feed is exhausted when that
        reaches ``domain``. The feed's plan becomes ``plan``.
        Returns the served keys ``[page[0]:page[1]]`` after the claim.

        **A cursor that moved ahead on the same plan is not a conflict** (unless
        ``expect_served`` is given). When
        ``plan`` is ``expect_plan`` and the feed's plan, and its cursor has moved
        past ``expect_cursor`` (another process claimed meanwhile) but not to
        ``scanned_to``, the candidates before the cursor are dropped and the claim
        goes on from there, taking at most ``page[1]`` minus the served count: the
        rest are exactly what a caller starting at that cursor would have sent,
        because candidates are a function of the plan and the position alone. So
        a process whose view of the feed lags still claims in one step.
        A claim on no active session creates it, at the generation of its
        freshness record (the memory store then drops the record; Redis keeps it
        until its TTL, so that a resent reset recognises itself).
        """

    @abc.abstractmethod
    def reset(self, session_id: str) -> ResetResult:
        """End an active session atomically: free its data and leave its freshness record
        (generation + 1). ``found`` is False, and nothing changes, when it is not active.
        ``total_active_sessions`` is counted after the reset."""

    @abc.abstractmethod
    def session_count(self) -> int:
        """Active sessions (freshness records not counted)."""

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
