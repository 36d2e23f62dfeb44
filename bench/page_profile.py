"""Where a random page's CPU goes in a worker: thread CPU time of the feed path's steps.

    python -m bench.page_profile [--size 1000000] [--pages 3000] [--processes 3]

The cached catalog with its item snapshot, sessions in a redis-server of its own, and
``--processes`` apps in this process (each with its own store client and remembered views, as
gunicorn workers have), a session's pages going to a random one of them: sessions page 20 pages of
24 in order, with the query ``cpu_per_page`` loads them with. The same pages are then timed with the
feed service keeping no view (``RandomFeedService._remember`` a no-op), so every page starts as if
the session were new to the process: what the remembered views save. The steps below are wrapped
to add up their thread CPU time (``time.thread_time``; the wrapper's own cost, about a microsecond
a call, is included); a step the code no longer has is left out. Steps nest as indented. The
ceiling page (``/bench/fixed-page``), the floor page (``/bench/floor-page``, loaded as random pages
are) and the arguments page (``/bench/arguments-page``, the same queries: a random page's arguments
and decorators and a body of pre-rendered items, nothing read) are timed the same way, whole
requests through the Flask test client; the steps are those of the random pages.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib
import random
import time

from .common import ARGUMENTS_PATH, CEILING_PATH, FLOOR_PATH, PAGE_QUERY, catalog, redis_server, write_snapshot

#: (module, attribute path, label, depth of nesting) of the steps timed.
STEPS = (
    ("viralspot.feed.service", "RandomFeedService.serve", "RandomFeedService.serve", 0),
    ("viralspot.feed.service", "RandomFeedService._page", "_page (claim loop)", 1),
    ("viralspot.store.redis_store", "RedisSessionStore.serve_page", "RedisSessionStore.serve_page (client side)", 2),
    ("viralspot.feed.service", "candidates_from", "candidates_from", 2),
    ("viralspot.feed.order", "SessionOrder.__init__",
     "SessionOrder() (round keys, permutations; in _page and in serve)", 1),
    ("viralspot.feed.order", "SessionOrder.keys_at", "SessionOrder.keys_at (the page's keys)", 1),
    ("viralspot.catalog.feed_source", "FeedSource.page_items", "FeedSource.page_items (item snapshot)", 1),
    ("viralspot.content.routes", "page_response", "page_response (the body)", 0),
)


#: The step whose calls are the page's store round trips.
_STORE_CALL = "RedisSessionStore.serve_page (client side)"


@contextlib.contextmanager
def _no_views():
    """The feed service keeping no view of any session while inside."""
    from viralspot.feed.service import RandomFeedService
    remember = RandomFeedService._remember
    RandomFeedService._remember = lambda self, session_id, feed, view: None
    try:
        yield
    finally:
        RandomFeedService._remember = remember


def _wrap(totals: dict, counts: collections.Counter, module_name: str, path: str, label: str, undo: list) -> bool:
    try:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)
    except (ImportError, AttributeError):
        return False

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.thread_time() - started
            counts[label] += 1

    setattr(owner, name, timed)
    undo.append((owner, name, original))
    return True


def measure(size: int, pages: int, processes: int) -> dict:
    totals: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()
    undo: list = []
    try:
        steps = [(label, depth) for module, path, label, depth in STEPS
                 if _wrap(totals, counts, module, path, label, undo)]
        return _measure(size, pages, processes, totals, counts, steps)
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def _measure(size: int, pages: int, processes: int, totals: dict, counts: collections.Counter, steps: list) -> dict:
    from .bench_app import create_bench_app

    url = catalog(size)
    write_snapshot(url)
    with redis_server() as server:
        apps = [create_bench_app({"DATABASE_URL": url, "SESSION_STORE_URL": server.url}) for _ in range(processes)]
        clients = [app.test_client() for app in apps]
        rng = random.Random(1)

        def random_pages(count: int, prefix: str, path: str = "/api/reels") -> float:
            started = time.thread_time()
            for n in range(count):
                response = clients[rng.randrange(processes)].get(
                    f"{path}{PAGE_QUERY}&session_id={prefix}-{n // 20}&offset={(n % 20) * 24}")
                if response.status_code != 200:
                    raise RuntimeError(response.get_data()[:300])
            return (time.thread_time() - started) / count * 1000

        def ceiling_pages(count: int) -> float:
            started = time.thread_time()
            for n in range(count):
                if clients[n % processes].get(CEILING_PATH).status_code != 200:
                    raise RuntimeError("ceiling page failed")
            return (time.thread_time() - started) / count * 1000

        random_pages(300, "warm")
        random_pages(300, "warm", FLOOR_PATH)
        random_pages(300, "warm", ARGUMENTS_PATH)
        ceiling_pages(300)
        floor_ms = random_pages(pages, "floor", FLOOR_PATH)
        arguments_ms = random_pages(pages, "arguments", ARGUMENTS_PATH)
        ceiling_ms = ceiling_pages(pages)
        totals.clear()  # the steps are the random pages' only
        counts.clear()
        random_ms = random_pages(pages, "timed")
        steps_out = [{"label": label, "depth": depth, "calls": counts[label] / pages,
                      "ms": totals[label] / pages * 1000} for label, depth in steps]
        store_calls = counts[_STORE_CALL] / pages
        counts.clear()
        with _no_views():
            no_views_ms = random_pages(pages, "noviews")
        no_views_store_calls = counts[_STORE_CALL] / pages
        for app in apps:
            app.extensions["viralspot.session_store"].close()
            app.extensions["viralspot.catalog"].dispose()
    return {"size": size, "pages": pages, "processes": processes, "random_ms": random_ms, "ceiling_ms": ceiling_ms,
            "floor_ms": floor_ms, "arguments_ms": arguments_ms, "store_calls": store_calls, "no_views_ms": no_views_ms,
            "no_views_store_calls": no_views_store_calls, "steps": steps_out}


def markdown(result: dict) -> str:
    lines = [f"{result['size']:,}-item catalog, {result['processes']} apps in one process taking a session's pages "
             f"at random, {result['pages']:,} random pages of 24 (sessions of 20 pages); thread CPU, ms per page.\n",
             f"Whole request through the Flask test client: random page {result['random_ms']:.3f} ms, ceiling "
             f"page {result['ceiling_ms']:.3f} ms (difference {result['random_ms'] - result['ceiling_ms']:.3f} ms), "
             f"floor page (one store call, no feed work) {result['floor_ms']:.3f} ms, arguments page (the "
             f"random page's arguments and decorators, a body of pre-rendered items, nothing read) "
             f"{result['arguments_ms']:.3f} ms.\n",
             f"Store calls per random page {result['store_calls']:.2f}; with no view kept "
             f"{result['no_views_store_calls']:.2f}, and {result['no_views_ms']:.3f} ms a page "
             f"({result['no_views_ms'] / result['random_ms']:.2f} x).\n",
             "| step (nested steps indented) | calls per page | ms per page |", "|---|---:|---:|"]
    for step in result["steps"]:
        indent = "&nbsp;&nbsp;&nbsp;&nbsp;" * step["depth"]
        lines.append(f"| {indent}{step['label']} | {step['calls']:.2f} | {step['ms']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="catalog items")
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args(argv)
    result = measure(args.size, args.pages, args.processes)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
