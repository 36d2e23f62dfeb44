"""Redis session store: bytes per served item, and round trips per random page.

    python -m bench.redis_memory [--quick] [--sizes 24,240,2400,24000] [--no-app]

Starts its own ``redis-server`` (no persistence) on a free 127.0.0.1 port, then:

* Memory: sessions of N served items (random keys over a 1M key space) are served in pages of
  24, each page the way the random feed does it (one claim on the feed presumed where paging in
  order leaves it; a second on the view a failed claim answers). Reported per
  served item: ``MEMORY USAGE ... SAMPLES 0`` of one session's keys (the session hash and the
  seen-set hash), and the change in ``INFO memory`` ``used_memory`` over all the sessions of that
  size, which also counts the ``vs:active`` index entry, the key dictionaries and the TTLs.
* Round trips: counted on the client (every batch written to a Redis socket is one round trip;
  a pipeline is one), with the commands Redis ran (``INFO commandstats``), per page: for the
  store calls of a page (claim_unseen, a 4,800-item session) and, unless ``--no-app``, for whole random
  pages (``GET /api/reels?random_order=true``) through the Flask test client on a 10k catalog.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

KEY_SPACE = 1_000_000
PAGE = 24
#: The plan token of every benchmark feed.
PLAN = "w:1:1000001"
#: Sessions measured per size: enough served items in total for used_memory to be meaningful.
SESSIONS = {24: 400, 240: 100, 2400: 20, 24000: 4}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def redis_server(binary: str):
    """A throwaway redis-server; yields its URL, stops it by pid."""
    directory = tempfile.mkdtemp(prefix="vs-bench-redis-")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis(port=port, socket_timeout=1) as probe:
                    probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start; see {directory}/redis.log") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


class RoundTrips:
    """Counts batches written to Redis sockets (one per round trip) while installed."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def installed(self):
        from redis.connection import AbstractConnection

        original = AbstractConnection.send_packed_command

        def counting(connection, command, check_health=True):
            self.count += 1
            return original(connection, command, check_health)

        AbstractConnection.send_packed_command = counting
        try:
            yield self
        finally:
            AbstractConnection.send_packed_command = original


_SCRIPTS = ("cmdstat_evalsha", "cmdstat_eval")


def _commands(client) -> tuple[int, int, int]:
    """(scripts run, all commands run including those inside scripts, microseconds the server spent
    in scripts, the commands inside them included), INFO itself excluded."""
    stats = client.info("commandstats")
    scripts = sum(int(stats.get(name, {}).get("calls", 0)) for name in _SCRIPTS)
    total = sum(int(value["calls"]) for name, value in stats.items()
                if name not in ("cmdstat_info", "cmdstat_client|setinfo", "cmdstat_hello"))
    script_usec = sum(int(stats.get(name, {}).get("usec", 0)) for name in _SCRIPTS)
    return scripts, total, script_usec


def _per_page(client, before: tuple[int, int, int], counter: "RoundTrips", pages: int) -> dict:
    scripts, total, script_usec = _commands(client)
    return {"pages": pages, "round_trips": counter.count / pages, "scripts": (scripts - before[0]) / pages,
            "commands": (total - before[1]) / pages, "script_usec": (script_usec - before[2]) / pages}


def serve_page(store, session_id: str, keys: list[int], offset: int) -> None:
    """One page as the random feed serves it: a claim of the next keys (plus a look-ahead) on the
    feed presumed where paging in order leaves it, checked by ``expect_served``; when that is
    wrong, a second claim on the view the failed one answers."""
    from viralspot.store import FeedView

    view, expect_served = FeedView(0, PLAN if offset else None, offset, offset, False), offset
    for _attempt in range(2):
        batch = keys[view.cursor:view.cursor + PAGE + 1]
        result = store.claim_unseen(
            session_id, "feed", generation=view.generation, expect_cursor=view.cursor, expect_plan=view.plan,
            plan=PLAN, domain=len(keys), candidates=list(enumerate(batch, start=view.cursor)),
            scanned_to=view.cursor + len(batch), want=PAGE, page=(offset, offset + PAGE),
            expect_served=expect_served)
        if result.ok:
            return
        view, expect_served = result.view, None
    raise AssertionError("a lone client never loses the compare-and-set")


def memory_rows(url: str, sizes, quick: bool) -> list[dict]:
    from viralspot.store.redis_store import RedisSessionStore, session_keys

    store = RedisSessionStore(url, ttl=86400)
    client = store.client
    rows = []
    for size in sizes:
        sessions = max(1, SESSIONS.get(size, max(1, 48_000 // size)) // (4 if quick else 1))
        # Warm up (scripts loaded, Lua and client buffers grown) outside the measurement.
        client.flushall()
        serve_page(store, "warm-up", list(range(1, PAGE + 2)), 0)
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        rng = random.Random(size)
        started = time.perf_counter()
        for number in range(sessions):
            keys = rng.sample(range(1, KEY_SPACE + 1), size + 1)
            for offset in range(0, size, PAGE):
                serve_page(store, f"bench-{size}-{number}", keys, offset)
        seconds = time.perf_counter() - started
        after = int(client.info("memory")["used_memory"])
        usage = [sum(client.memory_usage(key, samples=0) or 0 for key in session_keys(f"bench-{size}-{n}")[:2])
                 for n in range(sessions)]
        served = store.summary(f"bench-{size}-0").served_items_count
        assert served == size, (served, size)
        rows.append({"size": size, "sessions": sessions, "usage": sum(usage) / len(usage) / size,
                     "used_memory": (after - before) / (sessions * size),
                     "ms_per_page": 1000 * seconds / (sessions * -(-size // PAGE))})
    store.close()
    return rows


def store_round_trips(url: str, pages: int = 200) -> dict:
    from viralspot.store.redis_store import RedisSessionStore

    store = RedisSessionStore(url, ttl=86400)
    store.ping()  # connect outside the count
    keys = random.Random(1).sample(range(1, KEY_SPACE + 1), pages * PAGE + 1)
    serve_page(store, "warm-up", keys, 0)
    counter, before = RoundTrips(), _commands(store.client)
    with counter.installed():
        for page in range(pages):
            serve_page(store, "round-trips", keys, page * PAGE)
    row = _per_page(store.client, before, counter, pages)
    store.close()
    return row


def app_round_trips(url: str, sessions: int = 10, pages: int = 8, processes: int = 1) -> dict:
    """Whole pages through the app. With ``processes`` > 1, that many apps (each with its own store
    client and remembered feed views, as gunicorn workers have) serve a session's pages in turn."""
    from viralspot import create_app

    from .plain_page import build_catalog

    catalog_url, _seconds = build_catalog(10_000)
    apps = [create_app({"CONFIG": "production", "SECRET_KEY": "bench", "LOG_LEVEL": "WARNING",
                        "DATABASE_URL": catalog_url, "SESSION_STORE_URL": url, "ITEM_SNAPSHOT_DIR": ""})
            for _ in range(processes)]
    clients = [app.test_client() for app in apps]
    store = apps[0].extensions["viralspot.session_store"]

    def page(session: str, number: int) -> None:
        client = clients[number % len(clients)]
        response = client.get("/api/reels", query_string={"random_order": "true", "session_id": session,
                                                          "limit": PAGE, "offset": number * PAGE})
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    for number in range(processes):
        page("warm-up", number)
    counter, before = RoundTrips(), _commands(store.client)
    with counter.installed():
        for session in range(sessions):
            for number in range(pages):
                page(f"app{processes}-{session}", number)  # new sessions for each row
    row = _per_page(store.client, before, counter, sessions * pages)
    for app in apps:
        app.extensions["viralspot.session_store"].close()
        app.extensions["viralspot.catalog"].dispose()
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="24,240,2400,24000")
    parser.add_argument("--quick", action="store_true", help="fewer sessions per size")
    parser.add_argument("--no-app", action="store_true", help="skip the round trips of whole app pages")
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    args = parser.parse_args(argv)
    if not os.access(args.redis_server, os.X_OK):
        sys.exit(f"redis-server not found ({args.redis_server}); pass --redis-server PATH")
    sizes = [int(size) for size in args.sizes.split(",")]
    with redis_server(args.redis_server) as url:
        import redis

        with redis.Redis.from_url(url) as client:
            version = client.info("server")["redis_version"]
        print(f"### Redis session store (redis-server {version}, redis-py {redis.__version__})\n")
        print("Bytes of Redis memory per served item (random keys over a 1M key space, pages of 24):\n")
        print("| items per session | sessions | MEMORY USAGE of the session's keys | used_memory change "
              "(incl. index) | ms per page |")
        print("|---:|---:|---:|---:|---:|")
        for row in memory_rows(url, sizes, args.quick):
            print(f"| {row['size']:,} | {row['sessions']} | {row['usage']:.1f} B | {row['used_memory']:.1f} B "
                  f"| {row['ms_per_page']:.2f} |")
        rows = [("store calls of a page (claim_unseen), a 4,800-item session", store_round_trips(url))]
        if not args.no_app:
            rows.append(("GET /api/reels?random_order=true, 10k catalog, 10 sessions of 8 pages",
                         app_round_trips(url)))
            rows.append(("the same, each session's pages served by 3 processes in turn",
                         app_round_trips(url, processes=3)))
        print("\nRedis round trips and commands per random page:\n")
        print("| what | pages | round trips per page | scripts (EVALSHA) per page | commands per page, "
              "incl. inside scripts | Redis µs in scripts per page |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, row in rows:
            print(f"| {name} | {row['pages']} | {row['round_trips']:.2f} | {row['scripts']:.2f} "
                  f"| {row['commands']:.1f} | {row['script_usec']:.0f} |")


if __name__ == "__main__":
    main()
