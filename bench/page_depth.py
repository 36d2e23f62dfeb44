"""Random page latency by a session's depth: does a page cost more after many items served?

    python -m bench.page_depth [--size 1000000] [--depths 1000,10000,60000,200000,1000000]
                               [--sessions 6] [--pages 20] [--limit 100]

A 1,000,000-item SQLite catalog (``common.catalog``, with its item snapshot), sessions in a
redis-server of the benchmark's own, pages of 100 through the app in this process (the Flask
test client: what is timed is the app's work plus its Redis round trips, no HTTP server).

Per feed and depth, ``--sessions`` sessions each page ``--pages`` pages in order; a new session
starts at offset 0, a deep one where its depth leaves it. Every (feed, depth) takes turns page
by page, so a slower minute of this shared machine falls on all of them alike.

Getting a session deep fast: ``RedisSessionStore.serve_page`` is called directly with candidates
from ``viralspot.feed.service.candidates_from`` (the session's own order over the app's secret,
the feed's matching set), in chunks of 20,000 items: the session's hash then holds exactly what
pages would have left (the same positions, feed state and containers). The app's process has not
seen such a session, so its first page learns the session's view (one extra round trip); that
page is served but not timed, and the timed pages start after it.

Feeds: ``/api/reels?content_types=reel,post,story`` (every item of the catalog matches: the only
feed in which a session can be served 1,000,000 items of a 1,000,000-item catalog) and the plain
``/api/reels`` (the 700,619 reels). A depth at or past what a feed holds is measured on the feed's
last pages: "~1M" is the pages that take the session to the end of the catalog. 60,000 is in
the default depths because a feed keeps its served positions in blocks of 65,536 positions of the
order (``store/redis_store.py``): 60,000 items into the all-types feed is near the end of its
first block, where reading a page back from its block costs the most (``bench/claim_depth.py``).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from .common import catalog, percentile, redis_server, redis_version, warm_os_cache, write_snapshot

FEEDS = (
    ("all types", "/api/reels", {"content_types": "reel,post,story"}, {"content_types": ["reel", "post", "story"]}),
    ("reels", "/api/reels", {}, {}),
)
#: Items per store call while a session is brought to its depth.
CHUNK = 20_000


def _filter(args: dict):
    from viralspot.catalog.filters import content_filter

    return content_filter("reels", args)


def fast_forward(app, session_id: str, filter_args: dict, served_to: int) -> int:
    """Serve ``session_id``'s feed up to ``served_to`` items through the store API, as pages would;
    the items it was served."""
    from viralspot.feed.order import SessionOrder
    from viralspot.feed.service import candidates_from, feed_id
    from viralspot.store import FeedView, PageStatus
    from viralspot.store.base import SEED_BYTES

    service = app.extensions["viralspot.random_feeds"]
    flt = _filter(filter_args)
    feed = feed_id("reels", flt.signature())
    with app.app_context(), service.catalog.source(flt) as source:
        view = FeedView(os.urandom(SEED_BYTES), (source.catalog_state().largest_key,))
        order = SessionOrder(service.secret, session_id, view.seed, view.bounds)
        matching, now = source.matching(), source.now()
        create = True
        while view.served < served_to:
            limit = min(CHUNK, served_to - view.served)
            candidates, scanned_to, _work = candidates_from(order, matching, now, view.cursor, limit + 1, service.max_scan)
            result = service.store.serve_page(session_id, feed, view, offset=view.served, limit=limit,
                                              max_ahead=service.max_ahead, candidates=candidates,
                                              scanned_to=scanned_to, create=create)
            if result.status is not PageStatus.SERVED:
                raise RuntimeError(f"fast-forward of {session_id}: {result.status.name}")
            create = False
            view = result.view
            if not result.has_more:
                break
    return view.served


def _get(client, path: str, query: dict, session_id: str, offset: int, limit: int) -> tuple[float, int, bool]:
    started = time.perf_counter()
    response = client.get(path, query_string={"random_order": "true", "session_id": session_id, "offset": offset,
                                              "limit": limit, **query})
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{path} {query} offset {offset}: HTTP {response.status_code} {response.get_data()[:300]!r}")
    data = response.get_json()["data"]
    return elapsed, len(data["reels"]), data["isLastPage"]


def measure(size: int, depths: list[int], sessions: int, pages: int, limit: int) -> dict:
    from .bench_app import create_bench_app

    url = catalog(size)
    write_snapshot(url)
    warm_os_cache(url)
    with redis_server() as server:
        app = create_bench_app({"DATABASE_URL": url, "SESSION_STORE_URL": server.url})
        client = app.test_client()
        store = app.extensions["viralspot.session_store"]
        service = app.extensions["viralspot.random_feeds"]
        cases = []  # (feed name, label, path, query, session ids, first timed offset)
        forward_seconds = 0.0
        for name, path, query, filter_args in FEEDS:
            # Warm-up (not timed): the feed's matching set read, the snapshot mapped, scripts loaded.
            for page in range(3):
                _get(client, path, query, f"warm-{name}".replace(" ", "-"), page * limit, limit)
            with app.app_context(), service.catalog.source(_filter(filter_args)) as source:
                matching = len(source.matching().keys)
            cases.append((name, "new", path, query, [f"d-{name[0]}-new-{n}" for n in range(sessions)], 0))
            for depth in depths:
                last_pages = depth + (pages + 1) * limit > matching
                start = matching - (pages + 1) * limit if last_pages else depth
                if start < limit:
                    continue
                label = f"~{_short(matching)} (its last {pages} pages)" if last_pages else f"{depth:,}"
                if last_pages and any(case[0] == name and case[1] == label for case in cases):
                    continue
                ids = [f"d-{name[0]}-{depth}-{n}" for n in range(sessions)]
                started = time.perf_counter()
                for session_id in ids:
                    served = fast_forward(app, session_id, filter_args, start)
                    assert served == start, (session_id, served, start)
                    # The page that teaches this process the session's view: served, not timed.
                    _get(client, path, query, session_id, start, limit)
                forward_seconds += time.perf_counter() - started
                cases.append((name, label, path, query, ids, start + limit))
        timings: dict[tuple[str, str], list[float]] = {(case[0], case[1]): [] for case in cases}
        for page in range(pages):
            for name, label, path, query, ids, first in cases:
                for session_id in ids:
                    elapsed, count, is_last = _get(client, path, query, session_id, first + page * limit, limit)
                    if count != limit:
                        raise RuntimeError(f"{name} {label}: a page of {count} items")
                    timings[(name, label)].append(elapsed)
        version = redis_version(server.url)

        store.close()
        app.extensions["viralspot.catalog"].dispose()
    return {"size": size, "limit": limit, "sessions": sessions, "pages": pages, "redis": version,
            "forward_seconds": forward_seconds,
            "rows": [{"feed": name, "depth": label, "p50": statistics.median(values),
                      "p90": percentile(values, 0.90), "n": len(values)}
                     for (name, label), values in timings.items()]}


def _short(count: int) -> str:
    return f"{count / 1_000_000:.0f}M" if count >= 1_000_000 and count % 1_000_000 == 0 else f"{count:,}"


def markdown(result: dict) -> str:
    lines = [f"Catalog of {result['size']:,} items, pages of {result['limit']}, redis-server {result['redis']}, "
             f"Flask test client in one process; per row {result['sessions']} sessions x {result['pages']} pages "
             f"(rows taking turns page by page).\n",
             "| feed | items served before the page | pages | p50 ms | p90 ms | p50 / p50 of a new session |",
             "|---|---|---:|---:|---:|---:|"]
    new = {row["feed"]: row["p50"] for row in result["rows"] if row["depth"] == "new"}
    for row in result["rows"]:
        lines.append(f"| {row['feed']} | {row['depth']} | {row['n']} | {row['p50']:.2f} | {row['p90']:.2f} | "
                     f"{row['p50'] / new[row['feed']]:.2f} |")
    for feed, p50 in new.items():
        deep = [row for row in result["rows"] if row["feed"] == feed and row["depth"] == "200,000"]
        if deep:
            lines.append(f"\n{feed}: p50(200k) / p50(new) = **{deep[0]['p50'] / p50:.2f}** (target <= 1.25)")
    lines.append(f"\n(Sessions brought to their depths through the store API in {result['forward_seconds']:.0f} s.)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="catalog items")
    parser.add_argument("--depths", default="1000,10000,60000,200000,1000000")
    parser.add_argument("--sessions", type=int, default=6, help="sessions per feed and depth")
    parser.add_argument("--pages", type=int, default=20, help="timed pages per session")
    parser.add_argument("--limit", type=int, default=100, help="items per page")
    args = parser.parse_args(argv)
    result = measure(args.size, [int(d) for d in args.depths.split(",")], args.sessions, args.pages, args.limit)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
