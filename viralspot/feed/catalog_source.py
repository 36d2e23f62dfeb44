"""The catalog as the random feed sees it: one filter's candidates over one connection."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import Connection

from ..catalog import queries
from ..catalog.filters import ContentFilter


class SqlCandidateSource:
    """``CandidateSource`` over the SQL catalog for one ``ContentFilter``."""

    def __init__(self, connection: Connection, content_filter: ContentFilter) -> None:
        self.connection = connection
        self.content_filter = content_filter

    def catalog_state(self) -> tuple[int, int]:
        return queries.catalog_state(self.connection)

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        return queries.matching_among(self.connection, self.content_filter, keys)

    def matching_keys(self) -> np.ndarray:
        return queries.matching_keys(self.connection, self.content_filter)
