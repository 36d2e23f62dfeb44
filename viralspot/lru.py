"""``LruCache``: a small thread-safe least-recently-used map, for the per-process caches of the feed.

Used for the planner's selectivities and candidate lists (``feed/plans.py``)
and the compiled key look-ups (``catalog/key_lookup.py``).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """At most ``size`` entries; a ``get`` hit makes an entry the most recent, a ``put`` beyond drops the oldest."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("an LRU cache needs a size of at least 1")
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
