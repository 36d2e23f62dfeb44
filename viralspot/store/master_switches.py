"""Sentinel's announcements of a new master, heard by a thread per client of a ``redis+sentinel://``
store, so a process stops writing to a master the sentinels replaced while it still answers (a
manual ``SENTINEL FAILOVER``, a partition) as soon as they announce it, not when it is demoted.

Each sentinel publishes ``+switch-master <name> <old ip> <old port> <new ip> <new port>`` when it
names a new master. The thread subscribes on one sentinel (the next in the list when one cannot be
reached, a few seconds apart when none can), and on the store's service calls ``on_switch`` once,
then ends: the store then retires the client, and the client made next watches anew. Pages never
wait for it; one announcement missed leaves the process as it was without the thread (its writes
go to the old master until it is demoted, and READONLY moves them).
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
        self._stopped = threading.Event()
        #: Set while a subscription is in place.
        self.subscribed = threading.Event()
        threading.Thread(target=_listen, args=(list(sentinels), service_name.encode(), dict(sentinel_kwargs),
                                               on_switch, self._stopped, self.subscribed),
                         name="viralspot-master-switches", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()


def _listen(sentinels, service: bytes, sentinel_kwargs: dict, on_switch: Callable[[], object],
            stopped: threading.Event, subscribed: threading.Event) -> None:
    while not stopped.is_set():
        for host, port in sentinels:
            client = pubsub = None
            try:
                client = redis.Redis(host=host, port=port, **sentinel_kwargs)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                subscribed.set()
                while not stopped.is_set():
                    message = pubsub.get_message(timeout=POLL_SECONDS)
                    if message is not None and message["type"] == "message" \
                            and message["data"].split(b" ", 1)[0] == service:
                        _log.warning("sentinel %s:%s named a new master of %s: %s", host, port, service.decode(),
                                     message["data"].decode(errors="replace"))
                        stopped.set()
                        on_switch()
                        return
            except Exception as error:  # noqa: BLE001 -- the thread outlives any failure; pages never wait on it
                _log.debug("master switches: sentinel %s:%s not subscribed (%s)", host, port, type(error).__name__)
            finally:
                subscribed.clear()
                close_quietly(pubsub, client)
            if stopped.is_set():
                return
        stopped.wait(RETRY_SECONDS)
