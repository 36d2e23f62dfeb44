"""Load under real gunicorn: random-feed traffic from many sessions, 3 workers over Redis.

200 sessions over 16 client threads (each session driven by one thread at a time, each request on
a new connection so any worker may serve it), 3 generations each: page 1-6 pages of 24 in order,
reset, page again. Zero errors (a 503 included), zero repeats within a session's generation, every
page full until isLastPage, each reset's ``cleared_items_count`` equal to what was delivered since
the previous one, and a fresh order after each reset. Speed is printed, never asserted (the
benchmark, ``python -m bench.load``, reports it). The driver is bench/load.py's ``drive``.

A "generation" here is bench/load.py's round of pages ended by a reset, not the old state
model's generation counter (gone: a reset forgets the session whole, and its next page starts a
new one with a new seed, so the check that each round's first page differs from the previous
round's is the check that a reset gives a fresh order).
"""
from __future__ import annotations

import pytest

from gunicorn_servers import GunicornServer, call, cpu_ticks, seed_catalog  # first: puts the repo root on sys.path
from bench.load import drive

pytestmark = pytest.mark.redis

SESSIONS = 200
CLIENT_THREADS = 16
GENERATIONS = 3
MIN_PAGES, MAX_PAGES = 1, 6


def test_many_sessions_page_reset_and_page_again_over_three_workers(redis_clean, tmp_path, capsys):
    database_url = "sqlite:///" + str(tmp_path / "catalog.db")
    seed_catalog(database_url)
    with GunicornServer(tmp_path, database_url=database_url, store_url=redis_clean.url, workers=3, threads=4,
                        name="load") as server:
        workers = server.worker_pids()
        assert len(workers) == 3
        ticks_before = cpu_ticks(workers)

        sessions = [f"load-{n}" for n in range(SESSIONS)]
        report = drive(server.port, sessions, CLIENT_THREADS, generations=GENERATIONS, min_pages=MIN_PAGES,
                       max_pages=MAX_PAGES, timeout=90)
        with capsys.disabled():
            print(f"\n[load] 3 workers, {CLIENT_THREADS} client threads: {report.summary()}")

        # Every check held, on every request.
        assert report.failures == 0, report.failure_text()
        assert report.retired_sessions == 0
        assert report.sessions == SESSIONS
        assert report.generations == report.resets == SESSIONS * GENERATIONS
        assert SESSIONS * GENERATIONS * MIN_PAGES <= report.pages <= SESSIONS * GENERATIONS * MAX_PAGES
        assert report.items == 24 * report.pages  # the 1,500-item catalog never ran out: every page full

        # Each session's last generation ended in a reset: no session is left active.
        after = call(server.port, "POST", "/api/reset-session", {"session_id": "load-never-used"})
        assert after.status == 200, after
        assert after.data["session_reset"]["session_found"] is False
        assert after.data["server_info"]["total_active_sessions"] == 0, after.data["server_info"]

        # The traffic reached all three workers, and none died or was replaced under it.
        assert server.worker_pids() == workers, server.log_tail()
        ticks_after = cpu_ticks(workers)
        idle = [pid for pid in workers if ticks_after[pid] - ticks_before[pid] < 5]
        assert not idle, (f"workers {idle} served (almost) nothing", ticks_before, ticks_after)
