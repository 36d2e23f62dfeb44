"""Sentinel's announcements of a new master, heard by threads per client of a ``redis+sentinel://``
store, so a process stops writing to a master the sentinels replaced while it still answers (a
manual ``SENTINEL FAILOVER``, a partition) as soon as they announce it, not when it is demoted.

Each sentinel publishes ``+switch-master <name> <old ip> <old port> <new ip> <new port>`` when it
names a new master, the one that ran the failover about a second after the others. A thread per
sentinel subscribes to it (again a few seconds later when it cannot), and the first announcement
for the store's service calls ``on_switch`` once and ends them all: the store then retires the
client, and the client made next watches anew. Pages never wait for them; announcements missed
leave the process as it was without them (its writes go to the old master until it is demoted, and
READONLY moves them).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import redis

from .reset_notices import close_quietly

_log = logging.getLogger(__name__)

CHANNEL = "+switch-master"
#: Seconds between rounds of the sentinels when none could be subscribed to.
RETRY_SECONDS = 2.0
#: Seconds one wait for an announcement lasts before the thread checks whether it is stopped.
POLL_SECONDS = 0.5


class MasterSwitches:
    """Calls ``on_switch()`` once when a sentinel of ``sentinels`` announces a new master for
    ``service_name``; ``sentinel_kwargs`` are the redis-py options of a sentinel connection."""

    def __init__(self, sentinels: list[tuple[str, int]], service_name: str, sentinel_kwargs: dict[str, Any],
                 on_switch: Callable[[], object]) -> None:
        self._service = service_name.encode()
        self._sentinel_kwargs = dict(sentinel_kwargs)
        self._on_switch = on_switch
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._subscriptions = 0
        #: Set while at least one subscription is in place.
        self.subscribed = threading.Event()
        for host, port in sentinels:
            threading.Thread(target=self._listen, args=(host, port), name=f"viralspot-master-switches-{port}",
                             daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _count(self, change: int) -> None:
        with self._lock:
            self._subscriptions += change
            (self.subscribed.set if self._subscriptions else self.subscribed.clear)()

    def _heard(self, host: str, port: int, data: bytes) -> None:
        with self._lock:  # the first sentinel heard calls on_switch; the others then stop
            if self._stopped.is_set():
                return
            self._stopped.set()
        _log.warning("sentinel %s:%s named a new master of %s: %s", host, port, self._service.decode(),
                     data.decode(errors="replace"))
        self._on_switch()

    def _listen(self, host: str, port: int) -> None:
        stopped = self._stopped
        while not stopped.is_set():
            client = pubsub = None
            counted = False
            try:
                client = redis.Redis(host=host, port=port, **self._sentinel_kwargs)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                self._count(1)
                counted = True
                while not stopped.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None and message["type"] == "message" \
                            and message["data"].split(b" ", 1)[0] == self._service:
                        self._heard(host, port, message["data"])
                        return
            except Exception as error:  # noqa: BLE001 -- the thread outlives any failure; pages never wait on it
                _log.debug("master switches: sentinel %s:%s not subscribed (%s)", host, port, type(error).__name__)
            finally:
                if counted:
                    self._count(-1)
                close_quietly(pubsub, client)
            stopped.wait(RETRY_SECONDS)
