"""The SQL catalog as the random feed sees it: ``SqlFeedCatalog``, and per request and filter a
``SqlCandidateSource`` (the feed's ``CandidateSource`` protocol, ``feed/plans.py``).

The feed knows nothing of SQL or Flask; the app builds one ``SqlFeedCatalog`` from app-free
callables (take a connection, the remembered catalog state, the item snapshot of a state, the
service's clock), and the feed service asks it for a source per page. A source reads, over one
connection taken on first use:

* the catalog state, (version, largest key), remembered per ``CATALOG_STATE_TTL``;
* which candidates match the filter: one compiled ``KeyLookup`` (``key_lookup.py``) per filter
  (and per minute when a ``date_range`` makes it depend on the clock), the keys one bound
  parameter, the matching ids back as one packed string;
* the keys of a candidate list, read at one catalog version (``queries.read_at_one_version``);
* the page's items, one way: from the item snapshot of the catalog state when it is written
  (``item_snapshot.py``), else joined by the database (``rendering.joined_item_fragments``).

A page that needs no query at all (a cached candidate list, a remembered state, a snapshot)
takes no connection.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.engine import Dialect

from . import queries
from .filters import ContentFilter
from .item_snapshot import ItemSnapshot
from .key_lookup import KeyLookup, KeyLookupCache
from .queries import PACKED_IDS, CatalogState
from .rendering import joined_item_fragments

_LOOKUPS = KeyLookupCache(size=256)


def matching_ids_lookup(content_filter: ContentFilter, dialect: Dialect, now: datetime | None = None) -> KeyLookup:
    """The ids of the content matching ``content_filter`` (a ``date_range`` counting back from ``now``,
    to the minute) among a key list, as one "3,1,7" string: the one key-list look-up of the feed."""
    # Only a date_range depends on the clock: its cutoff moves by the minute.
    now = now.replace(second=0, microsecond=0) if content_filter.date_range and now is not None else None
    name = (content_filter.signature(), now)
    return _LOOKUPS.get(name, dialect, lambda: content_filter.where(select(PACKED_IDS), now=now))


class SqlCandidateSource:
    """``CandidateSource`` over the SQL catalog for one ``ContentFilter``.

    ``connection`` is a connection, or a function giving one on first use (then ``close``
    returns it); ``state`` gives the catalog state (from a connection provider), ``snapshot``
    the item snapshot of a state when there is one; ``clock`` (epoch seconds) is what a
    ``date_range`` counts back from.
    """

    def __init__(self, connection: Connection | Callable[[], Connection], content_filter: ContentFilter,
                 state: Callable[[Callable[[], Connection]], CatalogState] | None = None,
                 snapshot: Callable[[CatalogState], Optional[ItemSnapshot]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if isinstance(connection, Connection):
            self._connection: Connection | None = connection
            self._connect = None
        else:
            self._connection, self._connect = None, connection
        self.content_filter = content_filter
        self.clock_dependent = bool(content_filter.date_range)
        self._state = state
        self._snapshot = snapshot
        self._clock = clock
        self._last_state: CatalogState | None = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = self._connect()
        return self._connection

    def close(self) -> None:
        """Return the connection taken on first use, if any."""
        if self._connect is not None and self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> "SqlCandidateSource":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def catalog_state(self) -> CatalogState:
        if self._state is None:
            state = queries.catalog_state(self.connection)
        else:
            state = self._state(lambda: self.connection)
        self._last_state = state
        return state

    def _item_snapshot(self) -> ItemSnapshot | None:
        """The item snapshot of the catalog state this source works on, if written."""
        if self._snapshot is None:
            return None
        return self._snapshot(self._last_state or self.catalog_state())

    def _now(self) -> datetime | None:
        """The moment a ``date_range`` counts back from (None for other filters)."""
        return datetime.fromtimestamp(self._clock(), timezone.utc) if self.clock_dependent else None

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        connection = self.connection
        lookup = matching_ids_lookup(self.content_filter, connection.dialect, self._now())
        ((packed,),) = lookup.rows(connection, keys)
        return {int(key) for key in packed.split(",")} if packed else set()

    def count_matching(self, keys: Sequence[int]) -> int:
        return len(self.matching_among(keys))

    def matching_keys(self) -> tuple[int | None, np.ndarray]:
        return queries.read_at_one_version(
            self.connection, lambda conn: queries.matching_keys(conn, self.content_filter))

    def expiring_keys(self, at: int) -> tuple[int | None, np.ndarray, np.ndarray]:
        moment = datetime.fromtimestamp(at, timezone.utc)
        version, (keys, until) = queries.read_at_one_version(
            self.connection, lambda conn: queries.matching_keys_until(conn, self.content_filter, moment))
        return version, keys, until

    def page_items(self, keys: Sequence[int]) -> tuple[str | bytes, int]:
        """The rendered items of ``keys`` in order, joined by commas, and how many: from the item
        snapshot of the catalog state when there is one, else joined by the database."""
        if not keys:
            return "", 0
        snapshot = self._item_snapshot()
        if snapshot is not None:
            return snapshot.joined(keys)
        return joined_item_fragments(self.connection, keys)


class SqlFeedCatalog:
    """The ``FeedCatalog`` of the feed service (``feed/service.py``): a source per filter."""

    def __init__(self, connect: Callable[[], Connection],
                 state: Callable[[Callable[[], Connection]], CatalogState],
                 snapshot: Callable[[CatalogState], Optional[ItemSnapshot]] | None,
                 clock: Callable[[], float]) -> None:
        self._connect = connect
        self._state = state
        self._snapshot = snapshot
        self._clock = clock

    def source(self, content_filter: ContentFilter) -> SqlCandidateSource:
        """A source for one page of ``content_filter``'s feed; use it as a context manager."""
        return SqlCandidateSource(self._connect, content_filter, self._state, self._snapshot, self._clock)
