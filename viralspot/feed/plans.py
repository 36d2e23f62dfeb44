"""Feed plans: which permutation space a feed's cursor walks, and how a plan is chosen.

* ``WalkPlan(lo, hi)``: positions ``0..hi-lo`` map through the session's
  permutation to content keys ``lo..hi-1``; each candidate is checked against
  the filter in the database, in batches. Cost per page is ``limit / selectivity``
  key look-ups, flat in the catalog's size. When a walked feed is exhausted and
  the catalog has grown, the feed continues with ``WalkPlan(hi, new_hi)``.
* ``ListPlan(version, size)``: the sorted list of matching keys at catalog
  ``version``, built once per process and cached; positions ``0..size`` map
  through the permutation to list indices. A page then needs no filter check,
  only its items. When the catalog version changes the feed re-plans on the new
  list (the seen set keeps it free of repeats).

Which plan, one setting (``RANDOM_LIST_MAX_KEYS``): a list when the filter's
estimated matches are at most ``list_max_keys`` (4 bytes each, and within the
list cache), a walk otherwise, which needs no per-filter memory and no build,
whatever the catalog's size. The choice depends only on the filter and the catalog, so every
server makes the same one. Concurrent requests needing one list wait for one
build (single flight) rather than each reading the matching set.

A filter on the clock (``date_range``) matches fewer items as time passes. Its
list belongs to a window of ``WINDOW_SECONDS`` (an hour): it holds every key
matching at the window's start, with the second each stops matching, and a page
skips the keys that have stopped (an in-memory check, no query). Every server
builds the same list for a (version, window), and a feed re-plans on the next
window's list as it does on a catalog write.

A plan is stored in the session store as a short token (``w:1:1000001``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from ..catalog.tables import MAX_CONTENT_KEY
from ..lru import LruCache
from ..single_flight import SingleFlight
from .observer import UNOBSERVED, FeedObserver
from .permutation import KeyedPermutation, round_keys

PROBE_POSITIONS = 2048


class CandidateSource(Protocol):
    """What the feed needs from the catalog for one filter (``catalog/feed_source.py`` implements
    it over SQL; the tests, over a set)."""

    def catalog_state(self) -> tuple[int, int]:
        """(catalog version, largest content key): a ``CatalogState`` or any such pair."""

    def matching_among(self, keys: Sequence[int]) -> set[int]:
        """The keys among ``keys`` that match the feed's filter."""

    def count_matching(self, keys: Sequence[int]) -> int:
        """How many of ``keys`` match the feed's filter (for estimating selectivity)."""

    def matching_keys(self) -> tuple[int | None, np.ndarray]:
        """(catalog version, every matching key sorted), read from one catalog state: the version
        is None when no state could be read consistently (the catalog kept changing)."""

    def expiring_keys(self, at: int) -> tuple[int | None, np.ndarray, np.ndarray]:
        """For a filter on the clock: the catalog version, every key matching at epoch second
        ``at``, sorted, and the epoch second up to which each still matches, read from one catalog
        state like ``matching_keys`` (needed only when ``clock_dependent``)."""

    def page_items(self, keys: Sequence[int]) -> tuple[str | bytes, int]:
        """The rendered items of ``keys`` in order, joined by commas, and how many were found."""

    #: True when the filter depends on the clock (``date_range``); optional, False when absent.
    clock_dependent: bool


@dataclass(frozen=True)
class WalkPlan:
    lo: int
    hi: int
    selectivity: float = 1.0
    kind = "walk"
    #: Each candidate is checked against the filter in the database.
    checks_filter = True
    until = None

    @property
    def size(self) -> int:
        return self.hi - self.lo

    @property
    def token(self) -> str:
        return f"w:{self.lo}:{self.hi}:{self.selectivity:.4g}"

    def keys_at(self, permutation: KeyedPermutation, start: int, stop: int) -> np.ndarray:
        """The keys at positions ``start .. stop - 1``."""
        return permutation.map_range(start, stop) + self.lo


#: Seconds a list of a filter on the clock (date_range) is used before the next window's is built.
WINDOW_SECONDS = 3600
#: A position whose key no longer matches (``ListPlan.keys_at``).
EXPIRED = -1


@dataclass(frozen=True)
class ListPlan:
    version: int
    keys: np.ndarray
    #: For a filter on the clock: the window's start, each key's last matching second, and now.
    window: int | None = None
    until: np.ndarray | None = None
    now: float = 0.0
    kind = "list"
    #: Every key of the list matches: no check needed.
    checks_filter = False
    selectivity = 1.0

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def token(self) -> str:
        if self.window is None:
            return f"l:{self.version}:{self.size}"
        return f"l:{self.version}:{self.size}:{self.window}"

    def keys_at(self, permutation: KeyedPermutation, start: int, stop: int) -> np.ndarray:
        """The keys at positions ``start .. stop - 1``; ``EXPIRED`` where a key no longer matches."""
        indices = permutation.map_range(start, stop)
        keys = self.keys[indices].astype(np.int64)
        if self.until is not None:
            keys[self.until[indices] < self.now] = EXPIRED
        return keys


def parse_token(token: str) -> tuple[str, list[float]]:
    kind, *numbers = token.split(":")
    return kind, [float(n) for n in numbers]


class FeedPlanner:
    """Chooses plans and caches, per process, filter selectivities and candidate lists.

    Entries are keyed by (feed key, catalog version), so a catalog
    write (which bumps the version) retires them. At most ``cache_size`` lists
    are kept, holding at most ``list_cache_keys`` keys in all.
    """

    def __init__(self, secret: bytes, list_max_keys: int = 1_000_000, cache_size: int = 64,
                 list_cache_keys: int = 16_000_000, clock: Callable[[], float] = time.time,
                 observer: FeedObserver = UNOBSERVED) -> None:
        self.list_max_keys = min(list_max_keys, list_cache_keys)
        self.list_cache_keys = list_cache_keys
        self.clock = clock
        self.observer = observer
        self._probe_keys = round_keys(secret, "selectivity-probe")
        self._selectivity: LruCache[float] = LruCache(cache_size)
        # A list of a filter on the clock also holds 8 bytes per key (its last matching second).
        self._lists: LruCache[tuple] = LruCache(cache_size, max_weight=list_cache_keys,
                                                weigh=lambda entry: len(entry[1]) * (1 if entry[2] is None else 3))
        self._builds: SingleFlight[tuple] = SingleFlight()

    def window(self, source: CandidateSource) -> int | None:
        """The current window's start for a filter on the clock, else None."""
        if not getattr(source, "clock_dependent", False):
            return None
        return int(self.clock() // WINDOW_SECONDS) * WINDOW_SECONDS

    def selectivity(self, feed_key: str, version: int, max_key: int, source: CandidateSource) -> float:
        """Share of keys ``1..max_key`` matching the filter, estimated on a fixed sample."""
        cached = self._selectivity.get((feed_key, version))
        if cached is not None:
            return cached
        probe = KeyedPermutation(self._probe_keys, max_key)
        sample = min(PROBE_POSITIONS, max_key)
        keys = probe(np.arange(sample)) + 1
        value = source.count_matching(keys.tolist()) / sample
        self._selectivity.put((feed_key, version), value)
        return value

    def candidate_list(self, feed_key: str, version: int, source: CandidateSource,
                       window: int | None) -> ListPlan:
        """The filter's list for catalog ``version`` and ``window`` (``self.window(source)``, read once
        by the caller): cached, else built once however many requests ask at once.

        The list carries the version it was read at, which is ``version`` or, when this process's
        idea of the catalog state is behind (``CATALOG_STATE_TTL``), a newer one.
        """
        key = (feed_key, version, window)
        entry = self._lists.get(key)
        if entry is None:
            entry = self._builds.run(key, lambda: self._lists.get(key) or self._build_list(key, source))
        list_version, keys, until = entry
        if window is None:
            return ListPlan(list_version, keys)
        return ListPlan(list_version, keys, window, until, self.clock())

    def _build_list(self, key: tuple, source: CandidateSource) -> tuple:
        """Read the list of ``key`` = (feed_key, version, window) and cache it under the version it
        was read at (and under ``key``, the state that asked for it); a list read while the catalog
        kept changing is used once, not kept."""
        feed_key, _version, window = key
        self.observer.list_build()
        until = None
        if window is None:
            read_version, keys = source.matching_keys()
            keys = np.asarray(keys, dtype=np.int64)
        else:
            read_version, keys, until = source.expiring_keys(window)
            keys, until = np.asarray(keys, dtype=np.int64), np.asarray(until, dtype=np.int64)
        if keys.size and keys[-1] > MAX_CONTENT_KEY:  # never created by our writers; feeds stop below
            keep = keys <= MAX_CONTENT_KEY
            keys, until = keys[keep], (until[keep] if until is not None else None)
        keys = keys.astype(np.uint32)  # 4 bytes per cached key
        if read_version is None:
            return key[1], keys, until
        entry = (read_version, keys, until)
        self._lists.put((feed_key, read_version, window), entry)
        if read_version != key[1]:
            self._lists.put(key, entry)
        return entry

    def new_plan(self, feed_key: str, source: CandidateSource, state: tuple[int, int]):
        """The plan of a new feed."""
        version, max_key = state
        max_key = min(max_key, MAX_CONTENT_KEY)
        window = self.window(source)
        if max_key <= self.list_max_keys:  # the whole catalog would fit: no estimate needed
            return self.candidate_list(feed_key, version, source, window)
        share = self.selectivity(feed_key, version, max_key, source)
        if share * max_key <= self.list_max_keys:
            return self.candidate_list(feed_key, version, source, window)
        return WalkPlan(1, max_key + 1, max(share, 1e-4))

    def continue_plan(self, token: str, exhausted: bool, feed_key: str, source: CandidateSource,
                      state: tuple[int, int]):
        """(plan, rebased) for an existing feed: the same plan, a re-based one, or (None, False) when done.

        A list feed moves to a new list (from its start: the seen set keeps it free of repeats)
        when the catalog version or the window changed, or when the list at hand differs from the
        one the feed started on; a feed on a newer version than this process's remembered state
        stays on it.
        """
        version, max_key = state
        max_key = min(max_key, MAX_CONTENT_KEY)
        kind, numbers = parse_token(token)
        if kind == "w":
            lo, hi, share = int(numbers[0]), int(numbers[1]), numbers[2]
            if not exhausted:
                return WalkPlan(lo, hi, share), False
            if max_key + 1 > hi:
                return WalkPlan(hi, max_key + 1, share), True
            return None, False
        list_version, size = int(numbers[0]), int(numbers[1])
        list_window = int(numbers[2]) if len(numbers) > 2 else None
        # Catalog versions only grow: a feed on a newer one than the remembered state is current.
        version = max(version, list_version)
        # One reading of the clock decides both whether the window moved and which list is used:
        # read twice, a page at the turn of the hour could compare one window and load the next.
        window = self.window(source)
        if list_version != version or list_window != window:
            # A catalog write, or the next window of a filter on the clock: the new list, from its start.
            return self.candidate_list(feed_key, version, source, window), True
        if exhausted:
            return None, False
        plan = self.candidate_list(feed_key, version, source, window)
        if (plan.version, plan.size) != (list_version, size):
            # A list read at another state than the feed's (a process whose remembered state lagged,
            # a list rebuilt after eviction): continue on it from its start.
            return plan, True
        return plan, False


def batch_size(needed: int, selectivity: float, maximum: int = 8192) -> int:
    """Positions to scan to find ``needed`` more matches at ``selectivity``.

    Each position is a key look-up, so the margin is small (15% + 8): a short
    batch costs one more, smaller query, which is cheaper than over-fetching on
    every page.
    """
    return int(min(maximum, max(16, math.ceil(needed / max(selectivity, 1e-3) * 1.15) + 8)))
