"""``SingleFlight``: one computation per key at a time, its outcome shared by every caller that asked meanwhile.

The feed planner builds a candidate list once however many requests need it at
once. Callers arriving while a key is being computed wait for that computation
and receive its value, or its exception: a failed build is not repeated by each
waiter in turn. The next caller after it finishes starts a new one.
"""
from __future__ import annotations

import threading
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class _Flight:
    __slots__ = ("done", "value", "error", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight(Generic[V]):
    """Thread-safe; ``run(key, compute)`` returns ``compute()``'s value or raises its exception."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            else:
                flight.waiters += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = compute()
        except BaseException as error:
            flight.error = error
            raise
        finally:
            # Removed before waking the waiters: they hold the flight itself, and a caller arriving
            # after this starts a computation of its own.
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value
