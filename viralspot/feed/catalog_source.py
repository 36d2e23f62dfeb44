"""The catalog as the random feed sees it: one filter's candidates over one connection.

Two things keep a walked page near the cost of a candidate-list page:

* the filtered statement is built once per filter (and per minute when a
  ``date_range`` makes it depend on the clock), so SQLAlchemy reuses its cache
  key and compiled form instead of rebuilding the conditions per batch;
* the filter check returns each matching candidate's rendered ``item_json``,
  so the page's items usually need no second query (``fragments``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Sequence

import numpy as np
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.sql import Select

from ..catalog import queries
from ..catalog.filters import ContentFilter
from ..catalog.queries import rows_for_keys
from ..catalog.rendering import item_fragments
from ..catalog.tables import content

_STATEMENTS: OrderedDict[tuple, Select] = OrderedDict()
_STATEMENTS_LOCK = threading.Lock()
STATEMENT_CACHE_SIZE = 256


def matching_fragments_statement(content_filter: ContentFilter) -> Select:
    """``SELECT id, item_json`` of the matching content among the ids bound to ``keys``."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    cache_key = (content_filter.signature(), now if content_filter.date_range else None)
    with _STATEMENTS_LOCK:
        statement = _STATEMENTS.get(cache_key)
        if statement is not None:
            _STATEMENTS.move_to_end(cache_key)
            return statement
    statement = (content_filter.where(select(content.c.id, content.c.item_json), now=now)
                 .where(content.c.id.in_(bindparam("keys", expanding=True))))
    with _STATEMENTS_LOCK:
        _STATEMENTS[cache_key] = statement
        while len(_STATEMENTS) > STATEMENT_CACHE_SIZE:
            _STATEMENTS.popitem(last=False)
    return statement


class SqlCandidateSource:
    """``CandidateSource`` over the SQL catalog for one ``ContentFilter``."""

    def __init__(self, connection: Connection, content_filter: ContentFilter) -> None:
        self.connection = connection
        self.content_filter = content_filter
        #: Rendered items of the candidates checked so far (None where not yet rendered).
        self.fragments: dict[int, str | None] = {}

    def catalog_state(self) -> tuple[int, int]:
        return queries.catalog_state(self.connection)

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        statement = matching_fragments_statement(self.content_filter)
        found: set[int] = set()
        for key, fragment in rows_for_keys(self.connection, statement, keys):
            found.add(key)
            self.fragments[key] = fragment
        return found

    def count_matching(self, keys: Sequence[int]) -> int:
        # Ids only: a selectivity probe needs no rendered items.
        return len(queries.matching_among(self.connection, self.content_filter, keys))

    def matching_keys(self) -> np.ndarray:
        return queries.matching_keys(self.connection, self.content_filter)

    def page_fragments(self, keys: Sequence[int]) -> list[str]:
        """The rendered items of ``keys`` in order, reusing what the filter check fetched."""
        known = self.fragments
        if all(known.get(key) is not None for key in keys):
            return [known[key] for key in keys]
        return item_fragments(self.connection, keys)
