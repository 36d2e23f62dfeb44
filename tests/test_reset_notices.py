"""A reset made by one process, heard by the others (``store/reset_notices.py``; issue 24, point 7).

Two stores and feed services on one Redis stand for two workers. A session pages through
"here", is reset through "there": once "here" has heard the notice, its next page starts the new
session in one round trip, as a session's very first page does, instead of two (finding the old
session gone first). Checked on one server, through Sentinel and on Redis Cluster, with the
control that the same page costs two round trips when nothing is heard; a notice names the seed
of the session that was reset, so it never drops the view of the session created after it; and
the subscription comes back by itself after the server restarts. Under real gunicorn, two masters
of one worker each: the worker's metrics show when it has heard a reset made on the other, and its
next page of the session then costs one store call.
"""
from __future__ import annotations

import time

import pytest

from test_failover import SERVICE, SentinelProcess, replicated_pair, require_sentinel, wait_for, wait_synced
from test_feed_algorithm import ListCatalog, make_service, serve
from viralspot.store.redis_store import RESETS_CHANNEL, RedisSessionStore, session_key

CHANNEL = RESETS_CHANNEL.format(db=0)  # the fixtures' database


class TwoProcesses:
    """Stores and services "here" and "there" on one Redis URL."""

    def __init__(self, url: str) -> None:
        catalog = ListCatalog(5_000)
        self.here_store, self.there_store = RedisSessionStore(url, ttl=600), RedisSessionStore(url, ttl=600)
        self.here, self.there = make_service(self.here_store, catalog), make_service(self.there_store, catalog)

    def listening(self):
        """Here's notices, once subscribed (reading them connects the store, which starts them)."""
        notices = self.here_store.reset_notices
        wait_for(notices.subscribed.is_set, 15, "here subscribed to reset notices", 0.01)
        return notices

    def seed(self, session_id: str) -> bytes:
        return self.there_store.client.hget(session_key(session_id), "s")

    def close(self) -> None:
        self.here_store.close()
        self.there_store.close()


def page_after_reset_elsewhere(processes: TwoProcesses, session_id: str, hear: bool):
    """Two pages here, a reset there, then (once heard, when ``hear``) the next page here:
    (the page's keys, the page, the keys served before the reset)."""
    before = serve(processes.here, session_id, 0, 24)[0] + serve(processes.here, session_id, 24, 24)[0]
    seed = processes.seed(session_id)
    assert processes.there_store.reset(session_id).cleared_items_count == 48
    processes.there.forget(session_id)
    if hear:
        wait_for(lambda: processes.here_store.was_reset(session_id, seed), 10, "the reset heard here")
    keys, page = serve(processes.here, session_id, 0, 24)
    assert not page.replayed and len(keys) == 24 and len(set(keys) & set(before)) < 5  # a fresh order
    return keys, page, before


def check_notices(url: str) -> None:
    processes = TwoProcesses(url)
    try:
        notices = processes.listening()
        keys, page, _ = page_after_reset_elsewhere(processes, "heard", hear=True)
        assert page.round_trips == 1
        # The notice names the old session's seed: the new session's view here is kept.
        assert serve(processes.here, "heard", 24, 24)[1].round_trips == 1
        assert serve(processes.there, "heard", 0, 24)[0] == keys  # there sees the same new session
        assert processes.there_store.summary("heard").served_items_count == 48
        # Control: with nothing heard, the same page costs a round trip more (the session found gone).
        notices.stop()
        wait_for(lambda: not notices.subscribed.is_set(), 10, "here's subscription ended", 0.01)
        assert page_after_reset_elsewhere(processes, "unheard", hear=False)[1].round_trips == 2
    finally:
        processes.close()


def test_a_reset_heard_on_one_server_makes_the_next_page_one_round_trip(redis_clean):
    check_notices(redis_clean.url)


def test_a_reset_heard_on_redis_cluster_makes_the_next_page_one_round_trip(redis_cluster_clean):
    check_notices(redis_cluster_clean.url())


def test_a_reset_heard_through_sentinel_makes_the_next_page_one_round_trip(redis_server_factory, tmp_path):
    command = require_sentinel()
    master, replica = replicated_pair(redis_server_factory)
    wait_synced(master, replica)
    sentinels = [SentinelProcess(command, str(tmp_path), number) for number in range(3)]
    try:
        for sentinel in sentinels:
            sentinel.start(master.port, replica.port, sentinels, quorum=2)
        wait_for(lambda: all(sentinel.master().get("port") == master.port for sentinel in sentinels), 15,
                 "the sentinels naming the master", 0.02)
        check_notices("redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in sentinels) + f"/{SERVICE}/0")
    finally:
        for sentinel in sentinels:
            sentinel.stop()


def test_notices_are_heard_again_after_the_server_restarts(redis_server_factory):
    server = redis_server_factory()
    processes = TwoProcesses(server.url)
    try:
        notices = processes.listening()
        server.stop()
        wait_for(lambda: not notices.subscribed.is_set(), 10, "the subscription lost with the server", 0.01)
        server.start()  # the same port, empty (no persistence)
        wait_for(notices.subscribed.is_set, 15, "here subscribed again", 0.01)
        processes.here.forget("s")  # its view is of a session the restart lost
        assert page_after_reset_elsewhere(processes, "s", hear=True)[1].round_trips == 1
    finally:
        processes.close()


@pytest.mark.parametrize("found", [False, True])
def test_only_a_reset_that_found_a_session_is_announced(redis_clean, found):
    """The notice is the session's seed and id; a reset that found nothing announces nothing (a
    marker published after the reset ends the reading: a channel delivers in order)."""
    with redis_clean.client() as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(CHANNEL)
        store = RedisSessionStore(redis_clean.url, ttl=600)
        try:
            expected = []
            if found:
                serve(make_service(store, ListCatalog(1_000)), "s", 0, 24)
                expected = [client.hget(session_key("s"), "s") + b"s"]
            assert store.reset("s").found is found
            client.publish(CHANNEL, b"end")
            heard, deadline = [], time.monotonic() + 10
            while not heard or heard[-1] != b"end":
                assert time.monotonic() < deadline, f"the marker did not arrive: {heard}"
                message = pubsub.get_message(timeout=1)  # None also for the subscription's own reply
                if message is not None:
                    heard.append(message["data"])
            assert heard == [*expected, b"end"]
        finally:
            pubsub.close()
            store.close()


def test_resets_are_announced_on_their_databases_channel_only(redis_clean):
    """Pub/Sub is server-wide, whatever the database: two deployments on databases 7 and 8 of one
    server (no other test's) each listen on their own channel, and each reset is announced on its
    database's."""
    stores = {db: RedisSessionStore(redis_clean.url[:-1] + str(db), ttl=600) for db in (7, 8)}
    with redis_clean.client() as client:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe("vs2:resets*")
        try:
            for db, store in stores.items():
                serve(make_service(store, ListCatalog(1_000)), f"s{db}", 0, 24)
                wait_for(store.reset_notices.subscribed.is_set, 15, f"database {db}'s store subscribed", 0.01)
            assert client.pubsub_numsub("vs2:resets:7", "vs2:resets:8") == [(b"vs2:resets:7", 1), (b"vs2:resets:8", 1)]
            assert stores[8].reset("s8").found and stores[7].reset("s7").found
            client.publish("vs2:resets-end", b"end")
            heard, deadline = [], time.monotonic() + 10
            while not heard or heard[-1][0] != b"vs2:resets-end":
                assert time.monotonic() < deadline, f"the marker did not arrive: {heard}"
                message = pubsub.get_message(timeout=1)
                if message is not None:
                    heard.append((message["channel"], message["data"]))
            # Each notice is the session's seed (8 bytes) and its id.
            assert [(channel, len(data), data[8:]) for channel, data in heard] == [
                (b"vs2:resets:8", 10, b"s8"), (b"vs2:resets:7", 10, b"s7"), (b"vs2:resets-end", 3, b"")]
        finally:
            pubsub.close()
            for store in stores.values():
                store.client.flushdb()
                store.close()


# --- under real gunicorn -------------------------------------------------------------------------------

@pytest.mark.redis
def test_under_gunicorn_a_worker_that_heard_a_reset_pages_the_new_session_in_one_round_trip(redis_clean, tmp_path):
    """Two gunicorn masters of one worker each on one Redis: a session paged on A is reset on B. A's
    metrics show when A has heard the notice (``viralspot_session_reset_notices_total``), and A's
    next page of the session then costs one store call (``viralspot_random_feed_round_trips_total``),
    as a new session's first page does, where a page unaware of the reset costs two."""
    from gunicorn_servers import GunicornServer, page, seed_catalog
    from test_metrics import parse, request, value
    from test_multiprocess import reset, served_count

    catalog_url = f"sqlite:///{tmp_path}/catalog.db"
    seed_catalog(catalog_url)
    hosts = [GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=1, threads=2,
                            name=name) for name in ("notices-a", "notices-b")]
    a, b = hosts

    def count_on_a(name: str) -> float:
        status, _headers, body = request(a.port, "/metrics")
        assert status == 200
        return value(parse(body.decode()), name)

    try:
        for host in hosts:
            host.launch()
        for host in hosts:
            host.wait_ready()
        old_first = page(a.port, "/api/reels", "gu", 0, 24)[0]
        page(a.port, "/api/reels", "gu", 24, 24)  # A's worker holds the session's view
        # Each worker subscribes in a thread of its own once it has used the store (A's pages, the
        # readiness checks): both listening is two subscribers on the channel.
        with redis_clean.client() as client:
            wait_for(lambda: client.pubsub_numsub(CHANNEL)[0][1] == 2, 20, "both workers listening", 0.02)
        heard = count_on_a("viralspot_session_reset_notices_total")
        assert heard == 0

        assert reset(b.port, "gu")["session_reset"]["cleared_items_count"] == 48
        wait_for(lambda: count_on_a("viralspot_session_reset_notices_total") == heard + 1, 20, "A heard the reset",
                 0.02)
        trips = count_on_a("viralspot_random_feed_round_trips_total")
        fresh = page(a.port, "/api/reels", "gu", 0, 24)[0]
        assert count_on_a("viralspot_random_feed_round_trips_total") - trips == 1
        assert served_count(b.port, "gu") == 24 and len(set(fresh) & set(old_first)) < 8
        # The next page keeps the new session's view: one call again.
        page(a.port, "/api/reels", "gu", 24, 24)
        assert count_on_a("viralspot_random_feed_round_trips_total") - trips == 2
    finally:
        for host in hosts:
            host.stop()
