"""The catalog's (version, largest id) as random feeds read it: one query per interval, not per page.

Each process keeps the answer for ``ttl`` seconds (``VIRALSPOT_CATALOG_STATE_TTL``, default 1), so a
seed or import by another process reaches random feeds within that interval; ``ttl=0`` asks every time.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from sqlalchemy import Connection

from .queries import catalog_state


class CatalogStateCache:
    """``catalog_state`` remembered for ``ttl`` seconds; thread-safe. One per app (its one engine)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0:
            raise ValueError("ttl must be zero or positive")
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entry: tuple[float, tuple[int, int]] | None = None

    def get(self, connection: Callable[[], Connection], fresh: bool = False) -> tuple[int, int]:
        """The state; ``connection()`` is called only when the database must be asked, or (``fresh``)
        to ask it now: the process then remembers that answer, unless it remembers one asked for
        later (readers racing: the later question has the newer answer)."""
        if not self.ttl:
            return catalog_state(connection())
        now = self._clock()
        with self._lock:
            entry = self._entry
        if not fresh and entry is not None and now - entry[0] < self.ttl:
            return entry[1]
        state = catalog_state(connection())
        with self._lock:
            if self._entry is None or self._entry[0] <= now:
                self._entry = (now, state)
        return state
