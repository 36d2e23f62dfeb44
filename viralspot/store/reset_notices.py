"""Resets made by other processes, heard on a Redis channel, so a process drops its view of a
reset session before its next page instead of learning of the reset from that page.

``reset.lua`` publishes the reset session's seed and id on ``vs2:resets:<db>`` (one server and its
replicas, Sentinel's master, every node of a cluster: a cluster relays PUBLISH to all its nodes).
A ``ResetNotices`` thread per process subscribes and keeps, for a TTL, which seed each session
had when it was reset: a remembered view holding that seed is of the session that is gone, a
view of the session created after it holds another seed. A notice is a hint: one missed (the
channel was down, or the page came first) costs that page one more round trip, as a reset did
before, never a wrong page. The subscription is made and made again in the thread, a few seconds
apart while the server cannot be reached, so a page never waits for it; on a client of its own
(made by the store's ``make_client``), so it takes no connection of the pages' pool.
"""
from __future__ import annotations

import logging
import threading
import weakref
from types import MethodType
from typing import Callable

from cachetools import TTLCache

_log = logging.getLogger(__name__)
#: Seconds between attempts to subscribe again after the subscription failed.
RETRY_SECONDS = 2.0
#: Seconds one wait for a notice lasts before the thread checks whether it is stopped.
POLL_SECONDS = 0.5


class ResetNotices:
    """The resets heard on ``channel`` through a client from ``make_client`` (the store's method
    making a redis-py client of any topology): ``heard(session_id, seed)``; ``on_heard`` is called
    after each notice is kept (a metric's count). The thread ends after ``stop()``, or once the
    notices (and the store that made them) are no longer referenced."""

    def __init__(self, make_client: MethodType, channel: str, ttl: float, remembered: int = 100_000,
                 on_heard: Callable[[], object] | None = None) -> None:
        self._on_heard = on_heard
        self._seeds: TTLCache = TTLCache(remembered, ttl)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._stopped = threading.Event()
        #: Set each time the subscription is (again) in place.
        self.subscribed = threading.Event()
        # The thread holds weak references only: a store dropped without close() stops it too.
        threading.Thread(target=_listen, args=(weakref.ref(self), weakref.WeakMethod(make_client), channel,
                                               self._stopped, self.subscribed),
                         name="viralspot-reset-notices", daemon=True).start()

    def heard(self, session_id: str, seed: bytes) -> bool:
        """Whether the session ``session_id`` holding ``seed`` was reset, as far as this process heard."""
        with self._lock:
            return self._seeds.get(session_id) == seed

    def clear(self) -> None:
        """Forget every reset heard (a server flushed whole: no session a notice names is left)."""
        with self._lock:
            self._seeds.clear()

    def stop(self) -> None:
        self._stopped.set()

    def note(self, data: bytes) -> None:
        """A notice: the reset session's seed (8 bytes), then its id."""
        seed, session_id = data[:8], data[8:].decode("utf-8", "surrogatepass")
        with self._lock:
            self._seeds[session_id] = seed
        if self._on_heard is not None:
            self._on_heard()


def _listen(notices_ref, maker, channel: str, stopped: threading.Event, subscribed: threading.Event) -> None:
    while not stopped.is_set() and notices_ref() is not None:
        client = pubsub = None
        try:
            make_client = maker()
            if make_client is None:
                return
            client = make_client()
            del make_client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel)
            subscribed.set()
            while not stopped.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                notices = notices_ref()
                if notices is None:
                    return
                if message is not None and message["type"] == "message":
                    notices.note(message["data"])
                del notices
        except Exception as error:  # noqa: BLE001 -- the thread outlives any failure; pages never wait on it
            _log.debug("reset notices: subscription lost (%s); subscribing again", type(error).__name__)
        finally:
            subscribed.clear()
            close_quietly(pubsub, client)
        stopped.wait(RETRY_SECONDS)


def close_quietly(*closables) -> None:
    """Close a subscription and its client, whatever state they are in (None: never made)."""
    for closable in closables:
        try:
            if closable is not None:
                closable.close()
        except Exception:  # noqa: BLE001 -- closing what is already broken
            pass
