"""The one place a random page is made: ``RandomFeedService.serve(kind, args)``.

A session's feed (one per endpoint and filter set) is the session's order (``order.py``)
restricted to the items matching the filter that no feed of the session has served. A page:

1. takes the feed's view (the session's seed and bounds, the feed's cursor) as this process last
   saw it, or that of a new session (also when the store heard the session was reset elsewhere);
2. finds the candidates: the positions from the cursor on whose keys match the filter, enough for
   the page plus one look-ahead item (which keeps ``isLastPage`` exact);
3. sends them in one ``serve_page`` (``store/base.py``), which takes the unseen ones atomically, or
   answers the session's view when this one was not current; then 2 and 3 again, a bounded
   number of times;
4. reads the page's items from the catalog.

When the catalog has grown past the session's bounds and the feed has examined every position,
the view adds an epoch (``order.py``): the new items follow. A weighted feed walks the session's
order of tickets instead (``weights.py``) and sends each candidate's position in the session's
order beside it (what is seen). Nothing here touches Flask.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from cachetools import LRUCache

from ..catalog.feed_source import FeedCatalog, FeedSource, MatchingSet
from ..catalog.filters import content_filter
from ..store import FeedView, PageStatus, SessionStoreBackend
from ..store.base import FEED_ID_BYTES, SEED_BYTES
from .errors import (BeyondServedPrefix, FeedConflict, OffsetTooLarge, SessionLimit, SessionNotStored,
                     WeightedOutOfRange)
from .order import SessionOrder
from .weights import MAX_TICKETS, MAX_WEIGHTED_KEY, Tickets, TicketSet, checked_exponent, ticket_keys

#: Store calls one page makes at most; and of those, answers that its view was stale (a concurrent
#: request of the session changed it) before the page answers 503 SESSION_CONFLICT.
MAX_ROUNDS = 64
MAX_STALE = 16
#: Sessions whose last view a process keeps, for a next page in one round trip: without them a page makes 1.95
#: store calls, not 1.10, and 1.29-1.34 x the worker's CPU (0.26 of 0.86 ms; bench.page_profile at e556f61, 3 runs).
VIEWS_KEPT = 100_000
#: Positions one batch of a scan maps at most.
MAX_BATCH = 65_536
#: What mapping one key back to its position costs, in positions mapped forward (``candidates_from``).
KEY_MAPPING_COST = 4
#: Candidates one store call carries at most: bounds the script's work whatever the feed.
MAX_CANDIDATES = 2_048


@dataclass(frozen=True)
class ServedPage:
    """A random page ready to send: its items' JSON joined by commas, how many, whether it is the
    feed's last page, and how it was made (for metrics)."""

    items_json: str | bytes
    count: int
    is_last_page: bool
    round_trips: int
    replayed: bool
    #: Whether the items came from an item snapshot (None: snapshots off, or no items).
    snapshot_hit: bool | None = None
    #: The session's order as a client sees it (``order_id``).
    order_id: str = ""
    #: Whether this page started the session (new, or expired, evicted, reset or lost since).
    started_session: bool = False


def order_id(seed: bytes) -> str:
    """What a client sees of a session's order: 16 hex digits of a hash of its seed, the same on
    every page of the session and new when the session starts anew (a reset, or a session lost)."""
    return hashlib.blake2b(seed, digest_size=8).hexdigest()


def feed_id(kind: str, filter_signature: str, weighted: bool = False) -> bytes:
    """The id of the feed of an endpoint kind and a filter: the kind's initial (a capital for a
    weighted feed) and 8 bytes of the filter's signature (a hex SHA-256)."""
    initial = kind[:1].upper() if weighted else kind[:1]
    return initial.encode() + bytes.fromhex(filter_signature[:2 * (FEED_ID_BYTES - 1)])


def candidates_from(order: SessionOrder, matching: MatchingSet | TicketSet, now: float, cursor: int, count: int,
                    max_positions: int, keys_out: dict[int, int] | None = None) -> tuple[list[int], int, int]:
    """The first ``count`` positions from ``cursor`` on whose keys match: (positions ascending,
    position examined up to, work in positions mapped). Every matching position in ``[cursor,
    examined_to)`` is among them. ``keys_out`` gets each position's key (so a page maps its new
    items' positions once).

    Two ways to the same answer, whichever costs fewer permutation evaluations: map the matching
    keys to their positions (a set smaller than the scan would be; its work is the set's, so it
    examines the whole order), or map positions to keys in batches and keep the matching ones,
    examining at most ``max_positions``.
    """
    if cursor >= order.end or count <= 0 or max_positions <= 0:
        return [], cursor, 0
    share = max(matching.count / max(order.end, 1), 1e-6)
    expected_scan = count / share
    if matching.count * KEY_MAPPING_COST <= expected_scan:
        keys = matching.keys_at(now)
        keys = keys[keys <= order.end].astype(np.int64)
        positions = order.positions_of(keys)
        ranked = np.argsort(positions)
        positions, keys = positions[ranked], keys[ranked]
        kept = positions >= cursor
        positions, keys = positions[kept][:count], keys[kept][:count]
        if keys_out is not None:
            keys_out.update(zip(positions.tolist(), keys.tolist()))
        examined_to = int(positions[-1]) + 1 if len(positions) == count else order.end
        return positions.tolist(), examined_to, KEY_MAPPING_COST * len(ranked)
    end = min(order.end, cursor + max_positions)
    found: list[int] = []
    position, rounds = cursor, 0
    while position < end and len(found) < count:
        batch = min(MAX_BATCH, int((count - len(found)) / share * 1.15) + 16 << min(rounds, 6))
        rounds += 1
        stop = min(end, position + batch)
        keys = order.keys_between(position, stop)
        hits = np.nonzero(matching.matches(keys, now))[0]
        found.extend((hits + position).tolist())
        if keys_out is not None:
            keys_out.update(zip((hits + position).tolist(), keys[hits].tolist()))
        position = stop
    if len(found) > count:
        del found[count:]
        return found, found[-1] + 1, position - cursor
    return found, position, position - cursor


def _new_session(source: FeedSource) -> FeedView:
    """The view of a session to create: a fresh random seed, one epoch up to the catalog's largest key."""
    return FeedView(os.urandom(SEED_BYTES), (source.catalog_state().largest_key,))


class RandomFeedService:
    """Serves pages of sessions' random feeds; one per app, safe to share across threads.

    ``max_ahead``: how far past what a feed has served a page may start; ``max_offset``: the
    largest offset; ``max_scan``: positions one page examines at most; ``weight_exponent``: the
    exponent of weighted feeds' weights (``weights.py``).
    """

    def __init__(self, secret: bytes, store: SessionStoreBackend, catalog: FeedCatalog, *, max_ahead: int,
                 max_offset: int, max_scan: int, weight_exponent: float = 1.0) -> None:
        #: Outlier scores to tickets (``weights.py``); also what keys the catalog's cache of them.
        self._weigh = functools.partial(Tickets.of_scores, exponent=checked_exponent(weight_exponent))
        self.secret = secret
        self.store = store
        self.catalog = catalog
        self.max_ahead = max_ahead
        self.max_offset = max_offset
        self.max_scan = max_scan
        self._views: LRUCache = LRUCache(VIEWS_KEPT)
        self._views_lock = threading.Lock()

    def serve(self, kind: str, args: Mapping[str, Any]) -> ServedPage:
        """The page ``[offset, offset + limit)`` of ``session_id``'s feed for endpoint ``kind``
        (``reels``, ``posts``) and the filter arguments in ``args``; ``sort_by`` is ignored."""
        offset, limit, session_id = args["offset"], args["limit"], args["session_id"]
        weighted = args.get("random_order") == "weighted"
        if offset > self.max_offset:
            raise OffsetTooLarge(self.max_offset)
        flt = content_filter(kind, args)
        with self.catalog.source(flt) as source:
            # The keys a page's candidates were mapped to serve its new items: mapping its positions again (the
            # permutation, the HMAC round keys) cost 0.09-0.17 of 1.15 ms (7-14%; bench.page_profile, 3 runs a way).
            known: dict[int, int] = {}
            view, positions, is_last, round_trips, replayed, started = self._page(
                source, session_id, feed_id(kind, flt.signature(), weighted), offset, limit, known, weighted)
            missing = [position for position in positions if position not in known]
            if missing:  # items served before this page: mapped now
                order = self._order(session_id, view.seed, view.bounds, weighted)
                known.update(zip(missing, order.keys_at(missing).tolist()))
            keys = [known[position] for position in positions]
            if weighted:
                keys = ticket_keys(keys).tolist()
            items_json, count = source.page_items(keys)
        return ServedPage(items_json, count, is_last, round_trips, replayed, source.snapshot_hit, order_id(view.seed),
                          started)

    def forget(self, session_id: str) -> None:
        """Drop this process's view of a session (after a reset, its next page starts a new one)."""
        with self._views_lock:
            self._views.pop(session_id, None)

    def _known_view(self, session_id: str, feed: bytes) -> FeedView | None:
        with self._views_lock:
            known = self._views.get(session_id)
        if known is None:
            return None
        seed, bounds, cursors = known
        if self.store.was_reset(session_id, seed):  # by another process: the next page starts anew
            self.forget(session_id)
            return None
        cursor, served = cursors.get(feed, (0, 0))
        return FeedView(seed, bounds, cursor, served)

    def _remember(self, session_id: str, feed: bytes, view: FeedView) -> None:
        with self._views_lock:
            known = self._views.get(session_id)
            cursors = known[2] if known is not None and known[0] == view.seed else {}
            cursors[feed] = (view.cursor, view.served)
            self._views[session_id] = (view.seed, view.bounds, cursors)

    def _order(self, session_id: str, seed: bytes, bounds: tuple[int, ...], weighted: bool) -> SessionOrder:
        """The session's order of keys, or for a weighted feed of tickets (``weights.py``)."""
        if weighted:
            return SessionOrder(self.secret, session_id, seed, tuple(bound * MAX_TICKETS for bound in bounds),
                                label="tickets")
        return SessionOrder(self.secret, session_id, seed, bounds)

    def _page(self, source: FeedSource, session_id: str, feed: bytes, offset: int, limit: int,
              known: dict[int, int], weighted: bool):
        """(view, positions, is_last_page, round trips, replayed, started the session) of the page;
        ``known`` gets the keys (a weighted feed's: tickets) of the positions it mapped."""
        need = offset + limit
        scale = MAX_TICKETS if weighted else 1
        view = self._known_view(session_id, feed)
        create = view is None
        if create:
            view = _new_session(source)
        examined = stale = short = 0
        result, started, refreshed = None, False, False
        for round_trip in range(1, MAX_ROUNDS + 1):
            if stale >= MAX_STALE:
                raise FeedConflict()
            candidates, canonical, scanned_to, sent = None, None, 0, view
            if view.served <= need:  # the page, or its look-ahead item, is not served yet
                if view.cursor == 0 and not refreshed:
                    # A feed starts on the catalog as it is now (docs/architecture.md, step 3).
                    source.catalog_state(fresh=True)
                    refreshed = True
                largest = source.catalog_state().largest_key
                if largest < view.end:
                    # Another process grew the order past this one's catalog state (step 3).
                    largest = source.catalog_state(fresh=True).largest_key
                    if largest < view.end:
                        result = self.store.serve_page(session_id, feed, view, offset=offset, limit=limit,
                                                       max_ahead=self.max_ahead)
                        if result.status is not PageStatus.SERVED:
                            raise FeedConflict()
                        return result.view, result.positions, False, round_trip, True, started
                bounds = view.bounds
                if view.cursor >= view.end * scale and largest > view.end:
                    bounds = (*bounds, largest)  # a grown catalog: a new epoch after the last
                if weighted and bounds[-1] > MAX_WEIGHTED_KEY:
                    raise WeightedOutOfRange(MAX_WEIGHTED_KEY)
                matching, wanted = source.matching(), need - view.served + 1
                if weighted:
                    matching = TicketSet(matching, source.tickets(self._weigh))
                    # Tickets of items the feed met before are refused: ask for more, by the share of
                    # the valid tickets behind the cursor that gave an item.
                    met = view.cursor * matching.count / max(1, view.end * scale)
                    wanted = int(wanted / min(1.0, max(0.1, view.served / met if met >= 1 else 1.0)) * 1.2) + 2
                candidates, scanned_to, work = candidates_from(
                    self._order(session_id, view.seed, bounds, weighted), matching, source.now(), view.cursor,
                    # Eight times as many after each short claim (items served in other feeds).
                    min(MAX_CANDIDATES, wanted << min(3 * short, 12)), max(1, self.max_scan - examined), known)
                if scanned_to >= bounds[-1] * scale and not refreshed:  # a claim to the end, a last page's promise:
                    refreshed, version = True, source.catalog_state().version  # on the catalog as it is now (step 3)
                    if source.catalog_state(fresh=True).version != version:
                        continue
                if weighted:  # each ticket's item by its position in the session's order: what is seen (two
                    # tickets of one item in a batch: the store takes the first)
                    canonical = self._order(session_id, view.seed, bounds, False).positions_of(
                        ticket_keys([known[position] for position in candidates])).tolist()
                sent = FeedView(view.seed, bounds, view.cursor, view.served)
            result = self.store.serve_page(session_id, feed, sent, offset=offset, limit=limit,
                                           max_ahead=self.max_ahead, candidates=candidates,
                                           scanned_to=scanned_to, create=create, canonical=canonical)
            status = result.status
            if status is PageStatus.SERVED and result.positions and max(result.positions) >= result.view.end * scale:
                self.store.reset(session_id)  # positions its order has not got (bounds damaged): gone
                status = PageStatus.ABSENT
            if status in (PageStatus.ABSENT, PageStatus.STALE):
                known.clear()  # mapped through an order that may not be the session's
            if status is PageStatus.ABSENT:  # reset, expired or damaged since this process saw it
                self.forget(session_id)
                view, create = _new_session(source), True
                continue
            created, create = create, False  # whether this call was asked to create the session
            started = started or (created and status is PageStatus.SERVED)  # nothing changes unless SERVED
            if status is PageStatus.STALE:
                view, stale = result.view, stale + 1
                continue
            if status is PageStatus.BEYOND:  # asked to create it: no session was stored
                raise SessionNotStored(self.max_ahead) if created else BeyondServedPrefix(
                    result.view.served, self.max_ahead, order_id(result.view.seed))
            if status is PageStatus.FEED_LIMIT:
                raise SessionLimit("feeds", self.store.max_feeds)
            if status is PageStatus.ITEM_LIMIT:
                raise SessionLimit("items", self.store.max_items)
            view = result.view
            self._remember(session_id, feed, view)
            if result.has_more:
                return view, result.positions, False, round_trip, candidates is None, started
            if candidates is None:
                continue  # a read that found the page without its look-ahead: claim
            examined += work
            short += 1
            at_end = view.cursor >= view.end * scale and source.catalog_state(not refreshed).largest_key <= view.end
            if at_end:
                return view, result.positions, True, round_trip, False, started
            if examined >= self.max_scan:
                return view, result.positions, False, round_trip, False, started  # the scan bound: maybe short
        # Every round made progress (items served in other feeds skipped): a short page, not the last.
        return view, result.positions if result is not None else [], False, MAX_ROUNDS, False, started
