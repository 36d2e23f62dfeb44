"""A session's random order of the catalog's key space, shared by all its feeds.

The order is a function of (secret, session id, seed, bounds) alone, so every worker and host
computes the same one. The key space is cut into epochs by the session's bounds: epoch ``e``
holds the keys ``(bounds[e-1], bounds[e]]`` (``bounds[-1]`` taken as 0) at the positions
``[bounds[e-1], bounds[e])``, in the order of its own keyed permutation (``permutation.py``).
A catalog that grew adds an epoch at the end, and nothing before it moves: a feed goes on where
it was, and the new items come after the ones that were there when it started.
"""
from __future__ import annotations

import numpy as np

from .permutation import KeyedPermutation, round_keys


class SessionOrder:
    """Positions to keys and back for one session's seed and bounds (``label`` keys an order of
    another space apart, as the weighted feeds' order of tickets, ``weights.py``)."""

    __slots__ = ("bounds", "_starts", "_permutations")

    def __init__(self, secret: bytes, session_id: str, seed: bytes, bounds: tuple[int, ...],
                 label: str = "order") -> None:
        self.bounds = bounds
        self._starts = np.array((0, *bounds), dtype=np.int64)
        self._permutations = [
            KeyedPermutation(round_keys(secret, label, session_id, seed.hex(), epoch), stop - start)
            if stop > start else None
            for epoch, (start, stop) in enumerate(zip((0, *bounds), bounds))]

    @property
    def end(self) -> int:
        """The number of positions (the largest key the order holds)."""
        return self.bounds[-1] if self.bounds else 0

    def keys_at(self, positions) -> np.ndarray:
        """The keys at ``positions`` (ints in ``[0, end)``), as int64."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(self._permutations) == 1 and self._permutations[0] is not None:
            return self._permutations[0](positions) + 1
        keys = np.empty_like(positions)
        epochs = np.searchsorted(self._starts, positions, side="right") - 1
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            start = self._starts[epoch]
            keys[chosen] = self._permutations[epoch](positions[chosen] - start) + start + 1
        return keys

    def keys_between(self, start: int, stop: int) -> np.ndarray:
        """The keys at positions ``start .. stop - 1``, as int64: epoch by epoch, each a slice."""
        parts = []
        for epoch, permutation in enumerate(self._permutations):
            first, last = int(self._starts[epoch]), int(self._starts[epoch + 1])
            low, high = max(start, first), min(stop, last)
            if low < high:
                keys = permutation(np.arange(low - first, high - first, dtype=np.int64))
                keys += first + 1
                parts.append(keys)
        return parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def positions_of(self, keys) -> np.ndarray:
        """The positions of ``keys`` (ints in ``[1, end]``), as int64."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(self._permutations) == 1 and self._permutations[0] is not None:
            return self._permutations[0].inverse(keys - 1)
        positions = np.empty_like(keys)
        epochs = np.searchsorted(self._starts, keys - 1, side="right") - 1
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            start = self._starts[epoch]
            positions[chosen] = self._permutations[epoch].inverse(keys[chosen] - start - 1) + start
        return positions
