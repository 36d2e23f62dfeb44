"""The catalog as the random feed sees it: one filter's candidates over one connection.

Two things keep a walked page near the cost of a candidate-list page:

* the filter check is a ``KeyLookup`` (``catalog/key_lookup.py``) built once per
  filter (and per minute when a ``date_range`` makes it depend on the clock):
  compiled once, the keys one bound parameter, one packed row back;
* it returns each matching candidate's rendered ``item_json`` with it, so the
  page's items usually need no second query (``fragments``, ``page_items``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable, Sequence

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.engine import Dialect

from ..catalog import queries
from ..catalog.filters import ContentFilter
from ..catalog.key_lookup import KeyLookup, KeyLookupCache
from ..catalog.queries import PACKED_FRAGMENTS, unpack_fragments
from ..catalog.rendering import joined_item_fragments

_LOOKUPS = KeyLookupCache(size=256)


def matching_fragments_lookup(content_filter: ContentFilter, dialect: Dialect) -> KeyLookup:
    """The packed ``id, item_json`` of the content matching ``content_filter`` among a key list."""
    # Only a date_range depends on the clock: its cutoff moves by the minute.
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0) if content_filter.date_range else None
    name = (content_filter.signature(), now)
    return _LOOKUPS.get(name, dialect, lambda: content_filter.where(select(PACKED_FRAGMENTS), now=now))


class SqlCandidateSource:
    """``CandidateSource`` over the SQL catalog for one ``ContentFilter``."""

    def __init__(self, connection: Connection, content_filter: ContentFilter,
                 state: Callable[[Connection], tuple[int, int]] = queries.catalog_state) -> None:
        self.connection = connection
        self.content_filter = content_filter
        self.clock_dependent = bool(content_filter.date_range)
        self._state = state
        #: Rendered items of the candidates checked so far (None where not yet rendered).
        self.fragments: dict[int, str | None] = {}

    def catalog_state(self) -> tuple[int, int]:
        return self._state(self.connection)

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        lookup = matching_fragments_lookup(self.content_filter, self.connection.dialect)
        found: set[int] = set()
        for key, fragment in unpack_fragments(lookup.rows(self.connection, keys)):
            found.add(key)
            self.fragments[key] = fragment
        return found

    def count_matching(self, keys: Sequence[int]) -> int:
        # Ids only: a selectivity probe needs no rendered items.
        return len(queries.matching_among(self.connection, self.content_filter, keys))

    def matching_keys(self) -> np.ndarray:
        return queries.matching_keys(self.connection, self.content_filter)

    def page_items(self, keys: Sequence[int]) -> tuple[str, int]:
        """The rendered items of ``keys`` in order, joined by commas, and how many; reuses what the
        filter check fetched."""
        known = self.fragments
        if all(known.get(key) is not None for key in keys):
            return ",".join([known[key] for key in keys]), len(keys)
        return joined_item_fragments(self.connection, keys)
