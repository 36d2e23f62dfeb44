"""What the feed reports as it serves pages (counted by ``metrics.py`` in the app), as a protocol.

The feed calls an observer it was given, so it needs no metrics library and no app; the default
observes nothing.
"""
from __future__ import annotations

from typing import Protocol


class FeedObserver(Protocol):
    def page(self, how: str) -> None:
        """A random page answered: ``list`` or ``walk`` (by a claim on such a plan) or ``replay``."""

    def claim(self, plan_kind: str) -> None:
        """A claim (compare-and-set) sent to the session store."""

    def claim_conflict(self, plan_kind: str) -> None:
        """A claim that lost its compare-and-set to a concurrent request of the same session."""

    def list_build(self) -> None:
        """A candidate list read from the catalog."""


class Unobserved:
    """The observer that counts nothing."""

    def page(self, how: str) -> None:
        pass

    def claim(self, plan_kind: str) -> None:
        pass

    def claim_conflict(self, plan_kind: str) -> None:
        pass

    def list_build(self) -> None:
        pass


UNOBSERVED = Unobserved()
