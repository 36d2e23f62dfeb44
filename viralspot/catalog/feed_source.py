"""The SQL catalog as pages read it: ``FeedCatalog``, and per page a ``FeedSource``.

A random page needs of the catalog its state (version, largest key), the set of keys matching
the page's filter, the page's rendered items (``page_items``, which plain pages use too), and for
a weighted feed every item's tickets. The matching set is read once per (filter, catalog version)
and kept per process, as its sorted keys and a bitmap of them (cachetools LRU weighed in 4-byte
keys). A ``date_range`` filter matches fewer items as the clock moves, so its set also belongs to
an hour: it holds every key matching at the hour's start with the second each stops matching, and
``matches`` drops the keys past it. Every process reads the same set for a (version, hour), so
every process serves the same pages. A page that needs no query (a cached set, a remembered
state, an item snapshot) takes no database connection.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np
from cachetools import LRUCache, cached
from sqlalchemy import Connection

from . import queries
from .filters import ContentFilter
from .item_snapshot import ItemSnapshot
from .queries import CatalogState
from .rendering import joined_item_fragments
from .tables import MAX_CONTENT_KEY

#: Seconds a matching set of a filter on the clock (``date_range``) is used before the next is read.
WINDOW_SECONDS = 3600


class MatchingSet(NamedTuple):
    """The keys matching a filter, ascending, and the same as a bitmap indexed by key (1 bit per
    key up to the largest); for a filter on the clock, with the epoch second up to which each
    key matches."""

    version: int | None
    keys: np.ndarray
    bits: np.ndarray
    until: np.ndarray | None = None

    @classmethod
    def of(cls, version: int | None, keys: np.ndarray, until: np.ndarray | None = None) -> "MatchingSet":
        keys = np.asarray(keys, dtype=np.uint32)
        present = np.zeros(int(keys[-1]) + 1 if len(keys) else 1, dtype=bool)
        present[keys] = True
        return cls(version, keys, np.packbits(present, bitorder="little"), until)

    @property
    def count(self) -> int:
        """How many keys match (at the set's hour, for a filter on the clock)."""
        return len(self.keys)

    @property
    def weight(self) -> int:
        """What the set costs, in keys (4 bytes each) for the cache: its keys, its bits, its times."""
        return max(1, len(self.keys) + len(self.bits) // 4 + (2 * len(self.keys) if self.until is not None else 0))

    def matches(self, keys: np.ndarray, now: float) -> np.ndarray:
        """Which of ``keys`` (ints >= 0) match at epoch second ``now``, as a bool array."""
        keys = np.asarray(keys, dtype=np.int64)
        inside = keys < len(self.bits) * 8
        found = np.zeros(len(keys), dtype=bool)
        probe = keys[inside]
        found[inside] = (self.bits[probe >> 3] >> (probe & 7).astype(np.uint8)) & 1 == 1
        if self.until is not None and found.any():
            where = np.nonzero(found)[0]
            found[where] = self.until[np.searchsorted(self.keys, keys[where].astype(self.keys.dtype))] >= now
        return found

    def keys_at(self, now: float) -> np.ndarray:
        """Every key matching at epoch second ``now``."""
        return self.keys if self.until is None else self.keys[self.until >= now]


class FeedSource:
    """The catalog for one page of one filter's feed; use it as a context manager.

    ``connect`` gives a connection on first use (returned on exit), ``state`` the remembered
    catalog state, ``snapshot`` the item snapshot of a state when there is one, ``clock`` the
    epoch seconds a ``date_range`` counts back from.
    """

    def __init__(self, catalog: "FeedCatalog", content_filter: ContentFilter) -> None:
        self._catalog = catalog
        self.content_filter = content_filter
        self._connection: Connection | None = None
        self._state: CatalogState | None = None
        #: Whether ``page_items`` read an item snapshot (None: snapshots are off, or no items).
        self.snapshot_hit: bool | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self._catalog.connect()
        return self._connection

    def __enter__(self) -> "FeedSource":
        return self

    def __exit__(self, *_exc) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def now(self) -> int:  # whole seconds, as a date_range counts back (filters.py)
        return int(self._catalog.clock())

    def catalog_state(self, fresh: bool = False) -> CatalogState:
        """The catalog state this page works on: remembered for ``CATALOG_STATE_TTL``, or (``fresh``)
        read from the database now, which the process then remembers."""
        if fresh or self._state is None:
            self._state = self._catalog.state(lambda: self.connection, fresh=fresh)
        return self._state

    def matching(self) -> MatchingSet:
        """The filter's matching set at the catalog state (and hour) of this page."""
        window = None
        if self.content_filter.date_range:
            window = int(self.now() // WINDOW_SECONDS) * WINDOW_SECONDS
        return self._catalog.matching_set(self, self.content_filter.signature(), self.catalog_state().version, window)

    def tickets(self, weigh: Callable[[np.ndarray], object]):
        """``weigh`` (hashable) of every item's outlier score, indexed by key: a weighted feed's
        tickets (``feed/weights.py``) at the catalog state of this page, read once per catalog
        version and ``weigh``, and kept per process."""
        return self._catalog.tickets(self, self.catalog_state().version, weigh)

    def read_scores(self) -> np.ndarray:
        """Every item's outlier score indexed by key (0 where no item), read from the database."""
        return queries.outlier_scores(self.connection)

    def read_matching(self, window: int | None) -> MatchingSet:
        """Read the matching set from the database, at one catalog version when it can."""
        until = None
        if window is None:
            version, keys = queries.read_at_one_version(
                self.connection, lambda conn: queries.matching_keys(conn, self.content_filter))
        else:
            moment = datetime.fromtimestamp(window, timezone.utc)
            version, (keys, until) = queries.read_at_one_version(
                self.connection, lambda conn: queries.matching_keys_until(conn, self.content_filter, moment))
        keep = keys <= MAX_CONTENT_KEY  # never created by our writers; the order stops below
        if until is not None:
            until = until[keep]
        return MatchingSet.of(version, keys[keep], until)

    def page_items(self, keys: Sequence[int]) -> tuple[str | bytes, int]:
        """The rendered items of ``keys`` in order, joined by commas, and how many: from the item
        snapshot of the catalog state when there is one, else joined by the database."""
        if not len(keys):
            return "", 0
        snapshot = self._catalog.snapshot(self.catalog_state()) if self._catalog.snapshot else None
        self.snapshot_hit = snapshot is not None if self._catalog.snapshot else None
        if snapshot is not None:
            joined, count = snapshot.joined(keys)
            if count == len(keys):
                return joined, count
            self.snapshot_hit = False  # an item newer than the snapshot (a remembered state that lags)
        return joined_item_fragments(self.connection, keys)


class FeedCatalog:
    """The catalog of the feed service (``feed/service.py``): a ``FeedSource`` per page, and the
    process's matching sets."""

    def __init__(self, connect: Callable[[], Connection],
                 state: Callable[..., CatalogState],
                 snapshot: Callable[[CatalogState], Optional[ItemSnapshot]] | None,
                 clock: Callable[[], float] = time.time, cache_keys: int = 16_000_000) -> None:
        self.connect = connect
        self.state = state
        self.snapshot = snapshot
        self.clock = clock
        lock = threading.RLock()
        self._sets: LRUCache = LRUCache(maxsize=cache_keys, getsizeof=lambda entry: entry.weight)
        #: ``matching_set(source, signature, version, window)``: the filter's set at a catalog version
        #: (and hour), kept per process; concurrent pages needing one set wait for one read.
        self.matching_set: Callable[..., MatchingSet] = cached(
            self._sets, key=lambda source, signature, version, window: (signature, version, window),
            lock=lock, condition=threading.Condition(lock))(
            lambda source, signature, version, window: source.read_matching(window))
        #: ``tickets(source, version, weigh)``: the weighted feeds' tickets by key for a catalog
        #: version, the newest and the one before kept (1 byte a key).
        self.tickets = cached(LRUCache(maxsize=2), key=lambda source, version, weigh: (version, weigh),
                              lock=lock, condition=threading.Condition(lock))(
            lambda source, version, weigh: weigh(source.read_scores()))

    def source(self, content_filter: ContentFilter) -> FeedSource:
        return FeedSource(self, content_filter)
