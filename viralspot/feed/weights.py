"""Weighted random feeds (``random_order=weighted``): items hold tickets by weight, and a weighted
feed walks a random order of the tickets, serving an item at the first of its tickets it meets.

The rule. An item's weight is ``outlier_score ** exponent`` (``VIRALSPOT_WEIGHT_EXPONENT``,
default 1; 0 weighs every item alike), rounded to whole tickets between 1 and ``MAX_TICKETS``.
The ticket space holds ``MAX_TICKETS`` tickets per key: ticket ``t`` (from 1) belongs to key
``(t - 1) // MAX_TICKETS + 1`` and is valid while its rank ``(t - 1) % MAX_TICKETS`` is below
the item's tickets. A weighted feed walks the session's own keyed order of the tickets
(``SessionOrder`` over the bounds scaled by ``MAX_TICKETS``, keyed apart from the uniform one),
so among the tickets of the matching items not yet served the next one met is uniformly random:
**each next item is drawn with probability proportional to its tickets among the matching items
not yet served** (Efraimidis-Spirakis sampling without replacement, with weights rounded to whole
tickets from 1 to 8). An item is served once, at its first valid ticket; its other tickets are
then seen. Every matching item has ticket rank 0, so the walk reaches each of them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..catalog.feed_source import MatchingSet

#: Tickets an item holds at most (weights above round down to it); the ticket space is this many
#: times the key space.
MAX_TICKETS = 8
#: Largest key a weighted order holds: its ticket positions must fit the store's uint32 positions.
MAX_WEIGHTED_KEY = (2 ** 32 - 1) // MAX_TICKETS
#: Largest weight exponent (``VIRALSPOT_WEIGHT_EXPONENT``); 0 weighs every item alike.
MAX_EXPONENT = 100


def checked_exponent(value) -> float:
    """``value`` as a weight exponent: a number from 0 to ``MAX_EXPONENT``, else ``ValueError``."""
    try:
        exponent = float(value)
    except (TypeError, ValueError):
        exponent = -1.0
    if not 0 <= exponent <= MAX_EXPONENT:
        raise ValueError(f"must be a number from 0 to {MAX_EXPONENT}")
    return exponent


class Tickets(NamedTuple):
    """Each key's tickets (``by_key[key]``; a key past its end, newer than it, holds 1) and their
    mean over the catalog's keys."""

    by_key: np.ndarray
    mean: float

    @classmethod
    def of_scores(cls, scores: np.ndarray, exponent: float) -> "Tickets":
        by_key = ticket_counts(scores, exponent)
        return cls(by_key, float(by_key.mean()) if len(by_key) else 1.0)


def ticket_counts(scores: np.ndarray, exponent: float) -> np.ndarray:
    """Tickets of items with outlier ``scores``: ``round(score ** exponent)`` within ``[1, MAX_TICKETS]``."""
    weights = np.power(np.maximum(np.asarray(scores, dtype=np.float64), 0.0), exponent)
    return np.clip(np.rint(weights), 1, MAX_TICKETS).astype(np.uint8)


def ticket_keys(tickets) -> np.ndarray:
    """The keys that tickets belong to, as int64."""
    return (np.asarray(tickets, dtype=np.int64) - 1) // MAX_TICKETS + 1


class TicketSet:
    """The valid tickets of a matching set's keys: what ``candidates_from`` scans a weighted order
    with. ``count`` estimates them from the catalog's mean (summing a set's tickets on every page
    cost 5.6 ms of a 7.4 ms page at 1M items); it only sizes the scan."""

    __slots__ = ("matching", "by_key", "count")

    def __init__(self, matching: MatchingSet, tickets: Tickets) -> None:
        self.matching = matching
        self.by_key = tickets.by_key
        self.count = max(1, round(matching.count * tickets.mean))

    def _tickets_of(self, keys: np.ndarray) -> np.ndarray:
        held = np.ones(len(keys), dtype=np.int64)
        inside = keys < len(self.by_key)
        held[inside] = self.by_key[keys[inside]]
        return held

    def matches(self, tickets: np.ndarray, now: float) -> np.ndarray:
        """Which ``tickets`` are valid tickets of matching keys at epoch second ``now``."""
        tickets = np.asarray(tickets, dtype=np.int64)
        keys = ticket_keys(tickets)
        return ((tickets - 1) % MAX_TICKETS < self._tickets_of(keys)) & self.matching.matches(keys, now)

    def keys_at(self, now: float) -> np.ndarray:
        """Every valid ticket of the keys matching at ``now``, ascending."""
        keys = self.matching.keys_at(now).astype(np.int64)
        held = self._tickets_of(keys)
        firsts = np.repeat((keys - 1) * MAX_TICKETS + 1, held)
        ranks = np.arange(len(firsts)) - np.repeat(np.cumsum(held) - held, held)
        return firsts + ranks
