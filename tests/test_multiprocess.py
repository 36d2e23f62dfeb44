"""End-to-end tests under real gunicorn: random feeds over the Redis session store.

Every random-feed property holds exactly as on one process, whichever worker or host serves each
page: 4 workers over Redis (and over Redis Cluster: tests/test_redis_cluster.py); a reset seen by
every worker; two masters over one Redis; a worker SIGKILLed under traffic; Redis stopped and
restarted under traffic. Each request opens a new connection, so gunicorn hands each one to
whichever worker accepts it. Concurrency comes from real threads and barriers; states (server up,
worker replaced, Redis back) are waited for by bounded polls.

A session's order is keyed by a seed drawn when the session starts and kept in the store: two
hosts agree on a session's pages because they share its store (the old "the order is computed,
not stored" check, and generations, are gone with the old state model).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from gunicorn_servers import (CONNECTION_ERRORS, GunicornServer, Reply, call, cpu_ticks, items_of, join_all, page,
                              page_params, plain_ids, run_threads, seed_catalog, serving_connections,
                              start_threads)

pytestmark = pytest.mark.redis

REELS, POSTS = "/api/reels", "/api/posts"
FOOD = {"primary_categories": "Food"}
BOTH_TYPES = {"content_types": "reel,post"}


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory) -> str:
    """The sample catalog (1,500 items) in a SQLite file every server of the module reads."""
    url = "sqlite:///" + str(tmp_path_factory.mktemp("mp-catalog") / "catalog.db")
    seed_catalog(url)
    return url


@pytest.fixture(scope="module")
def matching(catalog_url, tmp_path_factory) -> dict:
    """The full matching sets, read by plain pages from a one-worker server over the memory store."""
    with GunicornServer(tmp_path_factory.mktemp("mp-plain"), database_url=catalog_url, store_url="memory://",
                        workers=1, threads=2, name="plain") as server:
        sets = {
            "reels": plain_ids(server.port, REELS),
            "posts": plain_ids(server.port, POSTS),
            "food": plain_ids(server.port, REELS, FOOD),
            "both": plain_ids(server.port, POSTS, BOTH_TYPES),
        }
    reels, posts = set(sets["reels"]), set(sets["posts"])
    assert len(reels) > 500 and len(posts) > 100 and not reels & posts
    assert set(sets["food"]) < reels and len(sets["food"]) > 24
    assert set(sets["both"]) == reels | posts
    return {name: set(ids) for name, ids in sets.items()}


def drain(port_of, path: str, session: str, limit: int, filters: dict | None = None,
          max_pages: int = 200) -> list[list[str]]:
    """Page one feed from offset 0 until isLastPage; ``port_of(n)`` picks the host of page n.
    Every page but the last is full."""
    pages: list[list[str]] = []
    offset = 0
    for number in range(max_pages):
        ids, last = page(port_of(number), path, session, offset, limit, filters)
        pages.append(ids)
        offset += len(ids)
        if last:
            return pages
        assert len(ids) == limit, f"{session} {path} page {number}: {len(ids)} items and not the last page"
    raise AssertionError(f"{session} {path} {filters}: no last page within {max_pages} pages")


def flat(pages: list[list[str]]) -> list[str]:
    return [item for ids in pages for item in ids]


def repeated(ids: list[str]) -> list[str]:
    return [item for item, count in Counter(ids).items() if count > 1]


def session_summary(port: int, session: str) -> Reply:
    return call(port, "GET", f"/api/sessions/{session}")


def served_count(port: int, session: str) -> int:
    reply = session_summary(port, session)
    assert reply.status == 200, reply
    return reply.data["session"]["served_items_count"]


def reset(port: int, session: str) -> dict:
    reply = call(port, "POST", "/api/reset-session", {"session_id": session})
    assert reply.status == 200, reply
    return reply.data


def check_a_reset_is_seen_by_every_worker(port: int, session: str, workers: int) -> None:
    """Page ``session`` over many connections (so that each worker holds its view of it), reset it
    through one, then ask its first page from many threads at once: every worker finds the old
    session gone, and all of them answer the one new session's first page, in a fresh order."""
    delivered = []
    for number in range(4 * workers):
        ids, _last = page(port, REELS, session, 24 * number, 24)
        delivered += ids
    assert len(delivered) == len(set(delivered)) == 4 * workers * 24
    outcome = reset(port, session)["session_reset"]
    assert outcome["session_found"] is True and outcome["cleared_items_count"] == len(delivered), outcome
    barrier = threading.Barrier(2 * workers)
    answers: list[list[str]] = []
    lock = threading.Lock()

    def first_page():
        barrier.wait(timeout=30)
        ids, _last = page(port, REELS, session, 0, 24)
        with lock:
            answers.append(ids)

    run_threads([first_page] * (2 * workers), timeout=60)
    assert len(answers) == 2 * workers and all(ids == answers[0] for ids in answers), answers
    assert len(set(answers[0]) & set(delivered[:24])) < 8, "the order after a reset is the old one"
    later = [item for number in range(1, 2 * workers) for item in page(port, REELS, session, 24 * number, 24)[0]]
    assert not repeated(answers[0] + later)
    assert served_count(port, session) == 24 * 2 * workers


def assert_store_unavailable(reply: Reply, what: str) -> None:
    assert reply.status == 503, (what, reply)
    body = reply.body
    assert body["success"] is False and body["error_code"] == "SESSION_STORE_UNAVAILABLE", (what, body)
    assert body["detail"] and body["timestamp"] and body["troubleshooting"], (what, body)


# --- 1. four workers over one Redis ---------------------------------------------------------------


def test_four_workers_share_every_feed_property(catalog_url, matching, redis_clean, tmp_path):
    with GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=4, threads=4,
                        name="four") as server:
        port = server.port
        workers = server.worker_pids()
        assert len(workers) == 4
        ticks_before = cpu_ticks(workers)

        # Six sessions drain their reels feed at once, 48 items a page, each page on a new connection.
        sessions = [f"drain-{n}" for n in range(6)]
        drained: dict[str, list[list[str]]] = {}

        def drainer(session):
            return lambda: drained.__setitem__(session, drain(lambda _n: port, REELS, session, 48))

        run_threads([drainer(session) for session in sessions], timeout=60)
        for session in sessions:
            items = flat(drained[session])
            assert not repeated(items), (session, repeated(items))
            assert set(items) == matching["reels"] and len(items) == len(matching["reels"])
        orders = {tuple(flat(drained[session])) for session in sessions}
        assert len(orders) == len(sessions), "two sessions got the same random order"

        # Served pages replay, concurrently and on any worker: the same items in the same order, for
        # the pages as served and for other windows inside the served prefix; nothing new is claimed.
        def replayer(session):
            def run():
                pages, items = drained[session], flat(drained[session])
                for number in sorted({0, 1, len(pages) // 2, len(pages) - 2, len(pages) - 1}):
                    ids, last = page(port, REELS, session, number * 48, 48)
                    assert ids == pages[number], (session, number)
                    assert last == (number == len(pages) - 1)
                for offset, limit in ((5, 40), (100, 100), (len(items) - 30, 30)):
                    ids, _last = page(port, REELS, session, offset, limit)
                    assert ids == items[offset:offset + limit], (session, offset, limit)
            return run

        run_threads([replayer(session) for session in sessions], timeout=60)
        for session in sessions:
            assert served_count(port, session) == len(matching["reels"])

        # One session, four feeds at once (reels, posts, Food reels, reels+posts): no item twice
        # across them, and together they serve the whole catalog of reels and posts exactly once.
        feeds = [(REELS, None), (POSTS, None), (REELS, FOOD), (POSTS, BOTH_TYPES)]
        served: dict[int, list[str]] = {}

        def feed_drainer(index, path, filters):
            return lambda: served.__setitem__(index, flat(drain(lambda _n: port, path, "mixed", 40, filters)))

        run_threads([feed_drainer(i, path, filters) for i, (path, filters) in enumerate(feeds)], timeout=60)
        everything = [item for index in sorted(served) for item in served[index]]
        assert not repeated(everything), repeated(everything)
        assert set(served[0]) <= matching["reels"] and set(served[1]) <= matching["posts"]
        assert set(served[2]) <= matching["food"] and set(served[3]) <= matching["both"]
        assert set(everything) == matching["reels"] | matching["posts"]
        assert served_count(port, "mixed") == len(everything)

        # Concurrent requests for the same page of one session, released together by a barrier from
        # six threads (six connections), all get the same page; consecutive pages never overlap.
        rounds = [(f"same-{s}", offset) for s in range(5) for offset in (0, 24, 48)]
        barrier = threading.Barrier(6)
        results: dict[tuple, list[list[str]]] = {key: [] for key in rounds}
        lock = threading.Lock()

        def prefetcher():
            for session, offset in rounds:
                barrier.wait(timeout=30)
                ids, _last = page(port, REELS, session, offset, 24)
                with lock:
                    results[(session, offset)].append(ids)

        run_threads([prefetcher] * 6, timeout=60)
        for s in range(5):
            session = f"same-{s}"
            pages = []
            for offset in (0, 24, 48):
                answers = results[(session, offset)]
                assert len(answers) == 6 and all(ids == answers[0] for ids in answers), (session, offset, answers)
                assert len(answers[0]) == 24
                pages.append(answers[0])
            assert not repeated(flat(pages)), (session, repeated(flat(pages)))
            assert served_count(port, session) == 72

        # A reset through one worker is seen by all of them.
        check_a_reset_is_seen_by_every_worker(port, "reset-everywhere", 4)

        # Several workers served (new connections spread over them), and none died.
        assert server.worker_pids() == workers, server.log_tail()
        ticks_after = cpu_ticks(workers)
        busy = {pid for pid in workers if ticks_after[pid] - ticks_before[pid] >= 5}
        assert len(busy) >= 3, (f"traffic reached only {len(busy)} of 4 workers", ticks_before, ticks_after)


# --- 2. two gunicorn masters over one Redis ----------------------------------------------------------


def test_two_masters_agree_on_orders_resets_and_counts(catalog_url, matching, redis_clean, tmp_path):
    a = GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=2, threads=4,
                       name="host-a")
    b = GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=2, threads=4,
                       name="host-b")
    try:
        a.launch()
        b.launch()
        a.wait_ready()
        b.wait_ready()
        hosts = (a.port, b.port)

        # The order is the session's, kept in the store: a first page on A is the first page on B.
        for session in ("stored-0", "stored-1"):
            on_a = page(a.port, REELS, session, 0, 24)[0]
            assert page(b.port, REELS, session, 0, 24)[0] == on_a, session
        with redis_clean.client() as client:
            client.flushall()

        # A new session's first page, asked of both hosts at the same instant, is one page; later
        # pages asked of one host replay identically on the other.
        barrier = threading.Barrier(2)
        first: dict[str, dict[int, list[str]]] = {f"new-{n}": {} for n in range(4)}

        def opener(port):
            def run():
                for session in first:
                    barrier.wait(timeout=30)
                    first[session][port] = page(port, REELS, session, 0, 24)[0]
            return run

        run_threads([opener(port) for port in hosts], timeout=60)
        for session, answers in first.items():
            assert answers[a.port] == answers[b.port] and len(answers[a.port]) == 24, (session, answers)
            second = page(b.port, REELS, session, 24, 24)[0]
            assert page(a.port, REELS, session, 24, 24)[0] == second
            assert page(a.port, REELS, session, 0, 24)[0] == answers[a.port]
            assert not set(second) & set(answers[a.port])
        assert len({tuple(answers[a.port]) for answers in first.values()}) == len(first)

        # Alternating hosts page by page: reels then posts of one session, never a repeat, everything
        # served.
        reels = drain(lambda n: hosts[n % 2], REELS, "alternating", 50)
        posts = drain(lambda n: hosts[(n + 1) % 2], POSTS, "alternating", 50)
        everything = flat(reels) + flat(posts)
        assert not repeated(everything), repeated(everything)
        assert set(flat(reels)) == matching["reels"] and set(flat(posts)) == matching["posts"]
        assert served_count(a.port, "alternating") == served_count(b.port, "alternating") == len(everything)

        # A reset on A is seen by B, and clears exactly what both hosts delivered.
        delivered = (page(a.port, REELS, "resetme", 0, 24)[0] + page(b.port, REELS, "resetme", 24, 24)[0]
                     + page(b.port, POSTS, "resetme", 0, 30)[0] + page(a.port, REELS, "resetme", 0, 20, FOOD)[0])
        assert not repeated(delivered)
        old_first_page = delivered[:24]
        summary = session_summary(b.port, "resetme")
        assert summary.status == 200 and summary.data["session"]["served_items_count"] == len(delivered)
        created = summary.data["session"]["created_at"]
        outcome = reset(a.port, "resetme")["session_reset"]
        assert outcome["session_found"] is True and outcome["cleared_items_count"] == len(delivered), outcome
        for port in (b.port, a.port):
            gone = session_summary(port, "resetme")
            assert gone.status == 404 and gone.error_code == "SESSION_NOT_FOUND", gone
        fresh = page(b.port, REELS, "resetme", 0, 24)[0]
        assert len(set(fresh) & set(old_first_page)) < 8, "the session's order after a reset is its old order"
        after = session_summary(a.port, "resetme")
        assert after.status == 200, after
        assert after.data["session"]["served_items_count"] == 24
        assert "generation" not in after.data["session"] and after.data["session"]["created_at"] >= created
        assert page(a.port, REELS, "resetme", 0, 24)[0] == fresh
        outcome = reset(b.port, "resetme")["session_reset"]
        assert outcome["session_found"] is True and outcome["cleared_items_count"] == 24, outcome

        # Both hosts count the same active sessions: the four new ones and "alternating".
        counts = [reset(port, f"unknown-{port}")["server_info"]["total_active_sessions"] for port in hosts]
        assert counts == [5, 5], counts
        assert a.worker_pids() and b.worker_pids()
    finally:
        a.stop()
        b.stop()


# --- 3. a worker SIGKILLed under traffic ---------------------------------------------------------------


def test_worker_sigkilled_under_traffic_loses_and_repeats_nothing(catalog_url, matching, redis_clean, tmp_path):
    pages_per_session = 16
    with GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=3, threads=4,
                        name="sigkill") as server:
        port = server.port
        workers = server.worker_pids()
        sessions = [f"kill-{n}" for n in range(6)]
        delivered: dict[str, list[str]] = {session: [] for session in sessions}
        failures = Counter()
        progress = threading.Condition()
        pages_done = [0]

        def client(session):
            def run():
                # The client asks for its next page until a 200 delivers it; a request the killed
                # worker held fails (connection error) and is asked again (a replay if it was claimed).
                for _page in range(pages_per_session):
                    for _attempt in range(10):
                        try:
                            reply = call(port, "GET", REELS, page_params(session, len(delivered[session]), 24))
                        except CONNECTION_ERRORS as error:
                            with progress:
                                failures[type(error).__name__] += 1
                            continue
                        if reply.status == 503 and reply.error_code == "SESSION_CONFLICT":
                            with progress:
                                failures["SESSION_CONFLICT"] += 1
                            continue
                        assert reply.status == 200, (session, reply)
                        ids = items_of(reply)
                        assert len(ids) == 24
                        delivered[session].extend(ids)
                        with progress:
                            pages_done[0] += 1
                            progress.notify_all()
                        break
                    else:
                        raise AssertionError(f"{session}: page {len(delivered[session]) // 24} failed 10 times")
            return run

        threads, errors = start_threads([client(session) for session in sessions])
        try:
            # Once traffic flows, SIGKILL a worker that holds a request (a connection on our port).
            with progress:
                assert progress.wait_for(lambda: pages_done[0] >= 18 or errors, timeout=30), "no traffic"
            victim = None
            deadline = time.monotonic() + 3
            while victim is None and time.monotonic() < deadline:
                victim = next((pid for pid in sorted(workers) if serving_connections(pid, port)), None)
            mid_request = victim is not None
            victim = victim or min(workers)
            os.kill(victim, signal.SIGKILL)
            replacement = server.wait_workers(3, exclude={victim}, timeout=30)
        finally:
            join_all(threads, timeout=60)
        if errors:
            raise errors[0]
        assert len(replacement - workers) == 1 and workers - replacement == {victim}, (workers, replacement)

        # Nothing delivered twice; the store remembers every delivered item; draining the rest (on the
        # replaced set of workers) never brings back a delivered item, and a reset clears them all.
        for session in sessions:
            items = delivered[session]
            assert len(items) == pages_per_session * 24
            assert not repeated(items), (session, repeated(items))
            assert served_count(port, session) >= len(items)
            rest = []
            for _page in range(20):
                ids, last = page(port, REELS, session, len(items) + len(rest), 100)
                rest += ids
                if last:
                    break
            assert not set(rest) & set(items), (session, set(rest) & set(items))
            assert not repeated(rest)
            assert set(items) | set(rest) == matching["reels"]
            served = served_count(port, session)
            assert served == len(matching["reels"])
            outcome = reset(port, session)["session_reset"]
            assert outcome["cleared_items_count"] == served, outcome
        assert server.worker_pids() == replacement
        print(f"\nSIGKILL test: victim mid-request={mid_request}, client failures={dict(failures)}")


# --- 4. Redis stopped and restarted under traffic ---------------------------------------------------------


def test_redis_outage_answers_503_fast_and_service_resumes(catalog_url, matching, redis_server_factory, tmp_path):
    redis = redis_server_factory()
    with GunicornServer(tmp_path, database_url=catalog_url, store_url=redis.url, workers=2, threads=4,
                        name="outage", extra_env={"VIRALSPOT_SESSION_STORE_CONNECT_TIMEOUT": "0.5",
                                                  "VIRALSPOT_SESSION_STORE_SOCKET_TIMEOUT": "0.5",
                                                  "VIRALSPOT_SESSION_STORE_RETRIES": "2"}) as server:
        port = server.port
        workers = server.worker_pids()
        stop = threading.Event()
        phase = ["up"]  # "up" -> "down" -> "back"
        state = threading.Condition()
        # per client: sessions it used, in order, each with its delivered items and the phase it began
        # in; counts of 200s and 503s per phase
        lanes = [{"sessions": [], "ok": Counter(), "unavailable": Counter(), "replies": []} for _ in range(4)]

        def client(lane_index):
            lane = lanes[lane_index]

            def new_session():
                lane["sessions"].append({"id": f"out-{lane_index}-{len(lane['sessions'])}", "items": [],
                                         "began": phase[0]})

            def run():
                new_session()
                for _request in range(3000):
                    if stop.is_set():
                        return
                    session = lane["sessions"][-1]
                    current = phase[0]
                    reply = call(port, "GET", REELS, page_params(session["id"], len(session["items"]), 24),
                                 timeout=10)
                    with state:
                        if reply.status == 200:
                            session["items"].extend(items_of(reply))
                            lane["ok"][current] += 1
                        else:
                            lane["replies"].append(reply)
                            lane["unavailable"][current] += 1
                            # the store lost (or may lose) this session: go on with a new one
                            new_session()
                        state.notify_all()
                    if reply.status not in (200, 503):
                        return
                raise AssertionError("client loop reached its bound")
            return run

        threads, errors = start_threads([client(i) for i in range(4)])

        def wait(predicate, timeout, what):
            with state:
                assert state.wait_for(lambda: predicate() or errors, timeout=timeout), what
            assert not errors, errors[0]

        try:
            wait(lambda: all(lane["ok"]["up"] >= 3 for lane in lanes), 30, "traffic before the outage")
            with state:
                phase[0] = "down"
            redis.stop()
            wait(lambda: all(lane["unavailable"]["down"] >= 3 for lane in lanes), 30, "503s during the outage")

            # During the outage: sessions and resets answer 503 envelopes, plain pages still serve.
            assert_store_unavailable(call(port, "GET", "/health"), "health")
            assert_store_unavailable(call(port, "POST", "/api/reset-session", {"session_id": "x"}), "reset")
            assert_store_unavailable(call(port, "GET", "/api/sessions/x"), "session summary")
            plain = call(port, "GET", REELS, {"limit": 5})
            assert plain.status == 200 and len(items_of(plain)) == 5, plain
            assert server.worker_pids() == workers, server.log_tail()

            redis.start()  # same port, empty
            with state:
                phase[0] = "back"
            wait(lambda: all(lane["ok"]["back"] >= 3 for lane in lanes), 30, "200s after Redis came back")
        finally:
            stop.set()
            join_all(threads, timeout=30)
        assert not errors, errors[0]

        # Every non-200 was a quick 503 SESSION_STORE_UNAVAILABLE envelope; no worker died.
        replies = [reply for lane in lanes for reply in lane["replies"]]
        assert replies
        for reply in replies:
            assert_store_unavailable(reply, "random page")
            assert reply.seconds < 3.0, reply
        assert server.worker_pids() == workers, server.log_tail()

        # Within each session (a session is dropped at its first 503, so each one's pages come from
        # one Redis lifetime), no item repeats; the sessions begun after the restart serve reels.
        for lane in lanes:
            for session in lane["sessions"]:
                assert not repeated(session["items"]), (session["id"], repeated(session["items"]))
                assert set(session["items"]) <= matching["reels"]
        resumed = [session for lane in lanes for session in lane["sessions"] if session["items"]
                   and session["began"] != "up"]
        assert resumed and sum(len(session["items"]) for session in resumed) >= 4 * 3 * 24
        for session in resumed:
            assert served_count(port, session["id"]) == len(session["items"])
        print(f"\nRedis outage: {len(replies)} 503s, slowest {max(r.seconds for r in replies):.3f} s")


# --- 5. weighted feeds under four workers ----------------------------------------------------------


def test_four_workers_serve_weighted_feeds_whole_once_and_alike(catalog_url, matching, redis_clean, tmp_path):
    """random_order=weighted keeps every property of the random feed whichever worker serves a page:
    concurrent drains serve each reel once, replays are the same on any worker, a weighted and a
    uniform feed of one session share nothing and together cover the catalog, a reset clears it."""
    weighted = {"random_order": "weighted"}
    with GunicornServer(tmp_path, database_url=catalog_url, store_url=redis_clean.url, workers=4, threads=4,
                        name="weighted") as server:
        port = server.port
        sessions = [f"weighted-{n}" for n in range(4)]
        drained: dict[str, list[list[str]]] = {}

        def drainer(session):
            return lambda: drained.__setitem__(session, drain(lambda _n: port, REELS, session, 48, weighted))

        run_threads([drainer(session) for session in sessions], timeout=60)
        for session in sessions:
            items = flat(drained[session])
            assert not repeated(items) and set(items) == matching["reels"] and len(items) == len(matching["reels"])
        assert len({tuple(flat(drained[session])) for session in sessions}) == len(sessions)
        for session in sessions[:2]:
            pages = drained[session]
            for number in sorted({0, len(pages) // 2, len(pages) - 1}):
                for _connection in range(4):  # new connections: any worker
                    assert page(port, REELS, session, number * 48, 48, weighted)[0] == pages[number]

        served: dict[str, list[str]] = {}
        run_threads([lambda: served.__setitem__("weighted", flat(drain(lambda _n: port, REELS, "mixed", 40, weighted))),
                     lambda: served.__setitem__("uniform", flat(drain(lambda _n: port, POSTS, "mixed", 40, BOTH_TYPES)))],
                    timeout=60)
        everything = served["weighted"] + served["uniform"]
        assert not repeated(everything), repeated(everything)
        assert set(everything) == matching["reels"] | matching["posts"]

        outcome = reset(port, sessions[0])["session_reset"]
        assert outcome["cleared_items_count"] == len(matching["reels"])
        fresh, _last = page(port, REELS, sessions[0], 0, 48, weighted)
        # (Both orders put heavy items early, so they may share items; the same 48 in the same order
        # would take the same seed.)
        assert len(fresh) == 48 and fresh != drained[sessions[0]][0], "the weighted order after a reset is the old one"
