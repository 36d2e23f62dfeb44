"""``LruCache``: a small thread-safe least-recently-used map, for the per-process caches of the feed.

Used for the planner's selectivities and candidate lists (``feed/plans.py``),
the compiled key look-ups (``catalog/key_lookup.py``), the sessions'
permutations (``feed/random_feed.py``) and the narrowed argument schemas
(``args.py``). Entries can also be weighed (a candidate list by its keys), so a
cache holds at most ``size`` entries and, with ``max_weight``, at most that
total weight.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class LruCache(Generic[V]):
    """At most ``size`` entries (and ``max_weight`` total weight); a ``get`` hit makes an entry the most
    recent, a ``put`` beyond either limit drops the oldest. An entry heavier than ``max_weight`` is not kept."""

    def __init__(self, size: int, max_weight: int | None = None,
                 weigh: Callable[[V], int] | None = None) -> None:
        if size < 1:
            raise ValueError("an LRU cache needs a size of at least 1")
        if (max_weight is None) != (weigh is None):
            raise ValueError("max_weight and weigh go together")
        self.size = size
        self.max_weight = max_weight
        self._weigh = weigh
        self._weight = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: V) -> None:
        weight = self._weigh(value) if self._weigh is not None else 0
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._weight -= previous[1]
            if self.max_weight is not None and weight > self.max_weight:
                return
            self._entries[key] = (value, weight)
            self._weight += weight
            while len(self._entries) > self.size or (
                    self.max_weight is not None and self._weight > self.max_weight):
                _key, (_value, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped
