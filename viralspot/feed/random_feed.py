"""Serving a page of a session's random feed.

A feed (one per session, endpoint and filter set) is a sequence: the session's
keyed permutation of the plan's space, restricted to items matching the filter
and not already served to the session. The store keeps the served prefix, so a
page is either replayed from it (idempotent GET) or the prefix is extended by
one atomic ``claim_unseen``, a compare-and-set on (generation, cursor, plan):
when two requests race, one wins, the other goes on from the feed its failed claim
answered (a failed claim answers the feed as a read would) and replays.

Nothing here reads or sorts the whole matching set: a walk scans
``limit / selectivity`` positions per page; selective filters use a cached list.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..api_errors import ApiError
from ..lru import LruCache
from ..store import FeedView, SessionStoreBackend
from .permutation import KeyedPermutation, round_keys
from .observer import UNOBSERVED, FeedObserver
from .plans import EXPIRED, CandidateSource, FeedPlanner, batch_size

log = logging.getLogger(__name__)

#: Claims of one page that may lose a race before the page answers 503 SESSION_CONFLICT.
MAX_ATTEMPTS = 16
#: Rounds of one page in all (lost races, short claims, catalog growth): a bound, never reached
#: in practice, that keeps a page from looping.
MAX_ROUNDS = 256
#: The keys of a remembered feed view (it holds none): marks a view not read from the store.
REMEMBERED: list[int] = []
#: The keys of a presumed feed view (a feed this process has not seen, taken to be where a session
#: paging in order would have it): checked by the claim, never answered from.
PRESUMED: list[int] = []
#: Positions one filter check sends to the database at most.
MAX_BATCH = 8192
#: Sessions whose permutations a process keeps built (a session pages through its feed in a row).
PERMUTATION_CACHE_SIZE = 4096


class FeedConflict(ApiError):
    """Concurrent requests of one session kept winning the compare-and-set: 503 SESSION_CONFLICT."""

    def __init__(self) -> None:
        super().__init__("Too many concurrent requests for this session", "SESSION_CONFLICT")


class BeyondServedPrefix(ApiError):
    """A page reaching further past the served prefix than the caller allows: 400 INVALID_PARAMETER."""

    def __init__(self, served: int, max_ahead: int) -> None:
        super().__init__(
            f"offset: a random page may reach at most {max_ahead} items past what the session has been "
            f"served in this feed ({served}); page through it in order", "INVALID_PARAMETER")
        self.served = served
        self.max_ahead = max_ahead


@dataclass(frozen=True)
class RandomPage:
    keys: list[int]
    is_last_page: bool


def session_permutation(secret: bytes, session_id: str, generation: int, size: int) -> KeyedPermutation:
    """The permutation of ``range(size)`` for this session and generation."""
    return KeyedPermutation(round_keys(secret, "feed", session_id, generation), size)


def gather_candidates(plan, permutation: KeyedPermutation, start: int, needed: int,
                      source: CandidateSource, seen_among=None,
                      max_positions: int = 1 << 62) -> tuple[list[tuple[int, int]], int]:
    """Scan positions from ``start`` for ``needed`` matching keys, unseen ones when ``seen_among``
    (the store's advisory check) is given; the claim skips seen keys either way. At most
    ``max_positions`` positions are scanned, in batches of at most ``MAX_BATCH``.

    Returns the (position, key) candidates in position order and the position
    the scan covered up to: every unseen matching key in ``[start, scanned_to)``
    is among the candidates, which is what lets the store advance the cursor.
    """
    found: list[tuple[int, int]] = []
    position, size = start, min(plan.size, start + max_positions)
    rounds = 0
    while position < size and len(found) < needed:
        # Size each batch on what is still missing; grow it when batches keep coming up short
        # (items seen in other feeds, or a selectivity estimate that is off).
        batch = min(MAX_BATCH, batch_size(needed - len(found), plan.selectivity) << min(rounds, 8))
        rounds += 1
        end = min(size, position + batch)
        keys = plan.keys_at(permutation, position, end).tolist()
        # A page's batch is tens of keys: plain sets beat numpy's sort-based set operations here.
        pairs = list(zip(range(position, end), keys))
        if plan.until is not None:  # a list of a filter on the clock: skip the keys that stopped matching
            pairs = [pair for pair in pairs if pair[1] != EXPIRED]
            keys = [key for _position, key in pairs]
        seen = seen_among(keys) if seen_among is not None else None
        if seen:
            seen = set(seen)
            pairs = [pair for pair in pairs if pair[1] not in seen]
        if plan.checks_filter and pairs:
            matched = source.matching_among([key for _position, key in pairs])
            pairs = [pair for pair in pairs if pair[1] in matched]
        found.extend(pairs)
        position = end
    if len(found) > needed:
        del found[needed:]
        return found, found[-1][0] + 1
    return found, position


class RandomFeeds:
    """Pages of random feeds over a session store and a catalog source; safe to share across threads.

    ``max_scan`` bounds the permutation positions one page may scan: a page of a feed whose
    items the session has mostly seen elsewhere comes back short (not the last page) rather than
    send the database an unbounded key list; asking for the same offset again continues it.
    """

    def __init__(self, secret: bytes, planner: FeedPlanner, max_scan: int = 100_000,
                 observer: FeedObserver = UNOBSERVED) -> None:
        self.secret = secret
        self.planner = planner
        self.max_scan = max_scan
        self.observer = observer
        self._permutations: LruCache[KeyedPermutation] = LruCache(PERMUTATION_CACHE_SIZE)
        #: (store, session, feed) -> the feed's view after this process's last claim on it.
        self._views: LruCache[FeedView] = LruCache(PERMUTATION_CACHE_SIZE)

    def permutation(self, session_id: str, generation: int, size: int) -> KeyedPermutation:
        """``session_permutation`` for this secret, remembered per (session, generation, size)."""
        key = (session_id, generation, size)
        permutation = self._permutations.get(key)
        if permutation is None:
            permutation = session_permutation(self.secret, session_id, generation, size)
            self._permutations.put(key, permutation)
        return permutation

    def page(self, store: SessionStoreBackend, source: CandidateSource, session_id: str, feed_key: str,
             offset: int, limit: int, max_ahead: int | None = None) -> RandomPage:
        """Page ``[offset, offset + limit)`` of the feed; extends the served prefix as needed.

        With ``max_ahead``, a page ending more than that many items past the
        served prefix raises ``BeyondServedPrefix`` instead of claiming the gap.
        """
        need = offset + limit
        state = None
        # A store whose seen check is a round trip (Redis) leaves it to the claim: a page is then one
        # read and one claim. A claim that came up short (keys seen in other feeds) is progress, not
        # a conflict: the next round scans further ahead, twice as far each time.
        seen_among = (lambda keys: store.seen_among(session_id, keys)) if store.prefilter_seen else None
        # The feed as this process last left it after a claim: a page past it (the next page of a
        # session paging in order) claims at once, and the store's compare-and-set proves the view
        # is still the feed's (one round trip instead of two). Any answer that would rest on the
        # remembered view alone, not on a claim, reads the feed first. A view that lags on the same
        # plan (another process claimed meanwhile) costs nothing: the store's claim goes on from the
        # feed's own cursor (``SessionStoreBackend.claim_unseen``).
        remembered = self._views.get((id(store), session_id, feed_key))
        if remembered is not None and (offset < remembered.served_count or remembered.exhausted):
            remembered = None
        if remembered is None and store.presume_views:
            # A feed this process has not seen: presume it is where a session paging in order has it
            # (nothing served yet for a first page; else ``offset`` served, on the plan a new feed
            # gets, at generation 0) and claim at once. The claim checks all of it, served count
            # included; when it is wrong the store answers the feed as a read would, and the next
            # round claims on that: a wrong guess costs the round trip the read would have.
            state = source.catalog_state()
            plan_token = self.planner.new_plan(feed_key, source, state).token if offset else None
            remembered = FeedView(0, plan_token, offset, offset, False, PRESUMED)
        conflicts = ahead = scanned = 0
        for _round in range(MAX_ROUNDS):
            if conflicts >= MAX_ATTEMPTS:
                break
            view, remembered = remembered or store.read_feed(session_id, feed_key, offset, need), None
            unread = view.keys is REMEMBERED or view.keys is PRESUMED
            if view.served_count > need:
                self.observer.page("replay")
                return RandomPage(view.keys, False)
            if max_ahead is not None and need > view.served_count + max_ahead and not view.exhausted:
                if unread:
                    continue  # the remembered or presumed view may be wrong: ask the store
                raise BeyondServedPrefix(view.served_count, max_ahead)
            state = state or source.catalog_state()
            if view.plan is None:
                plan, start = self.planner.new_plan(feed_key, source, state), 0
            else:
                plan, rebased = self.planner.continue_plan(view.plan, view.exhausted, feed_key, source, state)
                if plan is None:
                    if unread:
                        continue
                    self.observer.page("replay")
                    return RandomPage(view.keys, True)
                start = 0 if rebased else view.cursor
            permutation = self.permutation(session_id, view.generation, plan.size) if plan.size else None
            want = max(0, need - view.served_count)
            candidates, scanned_to = gather_candidates(
                plan, permutation, start, (want + 1) << min(ahead, 6), source, seen_among,
                max_positions=max(1, self.max_scan - scanned))
            scanned += scanned_to - start
            self.observer.claim(plan.kind)
            result = store.claim_unseen(
                session_id, feed_key, generation=view.generation, expect_cursor=view.cursor,
                expect_plan=view.plan, plan=plan.token, domain=plan.size, candidates=candidates,
                scanned_to=scanned_to, want=want, page=(offset, need),
                expect_served=view.served_count if view.keys is PRESUMED else None)
            if not result.ok:
                if not unread:  # a remembered view that lagged, or a presumed one, is not a race
                    log.debug("feed claim lost a race; retrying")
                    self.observer.claim_conflict(plan.kind)
                    conflicts += 1
                remembered = result.view  # the feed as the store has it: the next round goes on from it
                continue
            # The claim's reply is the feed as it left it: a next round starts from it, not a read,
            # and a later page of this process from the same view without its keys.
            left = (view.generation, plan.token, result.cursor, result.served_count, result.exhausted)
            remembered = FeedView(*left, result.keys)
            self._views.put((id(store), session_id, feed_key), FeedView(*left, REMEMBERED))
            if len(result.claimed) < want:
                ahead += 1
                if scanned >= self.max_scan and not result.exhausted:
                    self.observer.page(plan.kind)  # short: the scan bound reached, the feed goes on
                    return RandomPage(result.keys, False)
            if result.has_more:
                self.observer.page(plan.kind)
                return RandomPage(result.keys, False)
            if result.exhausted:
                grown = plan.checks_filter and state[1] + 1 > getattr(plan, "hi", 0)
                if not grown:
                    self.observer.page(plan.kind)
                    return RandomPage(result.keys, True)
            # The look-ahead item was taken by a concurrent request, or the catalog grew: go again.
        log.warning("random feed claims kept conflicting; answering 503")
        raise FeedConflict()
