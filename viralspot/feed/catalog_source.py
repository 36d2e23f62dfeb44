"""The catalog as the random feed sees it: one filter's candidates over one connection.

Two things keep a walked page near the cost of a candidate-list page:

* the filter check is a ``KeyLookup`` (``catalog/key_lookup.py``) built once per
  filter (and per minute when a ``date_range`` makes it depend on the clock):
  compiled once, the keys one bound parameter, one packed row back;
* it returns each matching candidate's rendered ``item_json`` with it, so the
  page's items usually need no second query (``fragments``, ``page_items``).

When the item snapshot of the catalog state is written (``catalog/item_snapshot.py``),
a page's items come from it instead of a query; and a page that needs no query
at all (a cached candidate list, a remembered state) takes no connection: the
source connects on first use.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.engine import Dialect

from ..catalog import queries
from ..catalog.filters import ContentFilter
from ..catalog.item_snapshot import ItemSnapshot
from ..catalog.key_lookup import KeyLookup, KeyLookupCache
from ..catalog.queries import PACKED_FRAGMENTS, PACKED_IDS, unpack_fragments
from ..catalog.rendering import joined_item_fragments

_LOOKUPS = KeyLookupCache(size=256)


def _matching_lookup(content_filter: ContentFilter, dialect: Dialect, packed, what: str,
                     now: datetime | None) -> KeyLookup:
    # Only a date_range depends on the clock: its cutoff moves by the minute.
    now = now.replace(second=0, microsecond=0) if content_filter.date_range and now is not None else None
    name = (content_filter.signature(), now, what)
    return _LOOKUPS.get(name, dialect, lambda: content_filter.where(select(packed), now=now))


def matching_fragments_lookup(content_filter: ContentFilter, dialect: Dialect,
                              now: datetime | None = None) -> KeyLookup:
    """The packed ``id, item_json`` of the content matching ``content_filter`` (a ``date_range``
    counting back from ``now``, to the minute) among a key list."""
    return _matching_lookup(content_filter, dialect, PACKED_FRAGMENTS, "fragments", now)


def matching_ids_lookup(content_filter: ContentFilter, dialect: Dialect,
                        now: datetime | None = None) -> KeyLookup:
    """The ids of the content matching ``content_filter`` among a key list, as one "3,1,7" string."""
    return _matching_lookup(content_filter, dialect, PACKED_IDS, "ids", now)


class SqlCandidateSource:
    """``CandidateSource`` over the SQL catalog for one ``ContentFilter``.

    ``connection`` is a connection, or a function giving one on first use (then
    ``close`` returns it); ``snapshot`` gives the item snapshot of a catalog state
    when there is one; ``clock`` (epoch seconds) is what a ``date_range`` counts back from.
    """

    def __init__(self, connection: Connection | Callable[[], Connection], content_filter: ContentFilter,
                 state: Callable[[Callable[[], Connection]], tuple[int, int]] | None = None,
                 snapshot: Callable[[tuple[int, int]], Optional[ItemSnapshot]] | None = None,
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
        self._last_state: tuple[int, int] | None = None
        #: Rendered items of the candidates checked so far (None where not yet rendered).
        self.fragments: dict[int, str | None] = {}

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

    def catalog_state(self) -> tuple[int, int]:
        if self._state is None:
            state = queries.catalog_state(self.connection)
        else:
            state = self._state(lambda: self.connection)
        self._last_state = state
        return state

    def item_snapshot(self) -> ItemSnapshot | None:
        """The item snapshot of the catalog state this source works on, if written."""
        if self._snapshot is None:
            return None
        return self._snapshot(self._last_state or self.catalog_state())

    def _now(self) -> datetime | None:
        """The moment a ``date_range`` counts back from (None for other filters)."""
        return datetime.fromtimestamp(self._clock(), timezone.utc) if self.clock_dependent else None

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        connection = self.connection
        now = self._now()
        if self.item_snapshot() is not None:
            # The page's items will come from the snapshot: the check needs the ids only.
            lookup = matching_ids_lookup(self.content_filter, connection.dialect, now)
            ((packed,),) = lookup.rows(connection, keys)
            return {int(key) for key in packed.split(",")} if packed else set()
        lookup = matching_fragments_lookup(self.content_filter, connection.dialect, now)
        found: set[int] = set()
        for key, fragment in unpack_fragments(lookup.rows(connection, keys)):
            found.add(key)
            self.fragments[key] = fragment
        return found

    def count_matching(self, keys: Sequence[int]) -> int:
        # Ids only: a selectivity probe needs no rendered items.
        return len(queries.matching_among(self.connection, self.content_filter, keys, self._now()))

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
        snapshot of the catalog state when there is one, else what the filter check fetched, else
        one query."""
        snapshot = self.item_snapshot() if keys else None
        if snapshot is not None:
            return snapshot.joined(keys)
        known = self.fragments
        if all(known.get(key) is not None for key in keys):
            return ",".join([known[key] for key in keys]), len(keys)
        return joined_item_fragments(self.connection, keys)
