"""Weighted against uniform random pages: what does ``random_order=weighted`` cost over ``true``?

    python -m bench.weighted_page [--sizes 10000,1000000] [--limits 24,100] [--sessions 8]
                                  [--pages 20] [--fresh-apps 3] [--memory-sessions 3]

The cached catalogs (``common.catalog``, with their item snapshots), sessions in a redis-server of
the benchmark's own, pages of the plain ``/api/reels`` feed through the app in this process (the
Flask test client: what is timed is the app's work plus its Redis round trips, no HTTP server).

Per catalog size, one row per (mode, page size): ``random_order=true`` and
``random_order=weighted``, pages of 24 and 100. Each row's ``--sessions`` sessions page
``--pages`` pages in order (offset 0, limit, 2 * limit, ...), then the next session starts; the
rows take turns page by page (their order reversed every other turn), so a slower minute of this
shared machine falls on all of them alike. Per page: wall time (``time.perf_counter``) and the
thread's CPU time (``time.thread_time``) around the request. The ratio is weighted p50 / uniform
p50 of the same size and page size.

One-off reads: a process reads a feed's matching set once per (filter, catalog version), and a
weighted feed also reads every item's outlier score once per catalog version
(``FeedSource.tickets``). Before the timed rows, a first session of each (mode, page size) is
served 2 pages untimed, so the timed pages are the steady state. The one-off score read is
measured on its own, ``--fresh-apps`` times: in a fresh app, a uniform page (which reads the
matching set: "first uniform page"), then the first weighted page of a new session ("first
weighted page": the outlier scores read, weighed into tickets, and the page). Its excess over the
weighted p50 (pages of 24) is the one-off read.

As a check that the weighted rows are weighted, the mean ``outlier_score`` of the items each row
served is reported beside it.

Memory: ``--memory-sessions`` sessions of each mode are served ``MEMORY_ITEMS`` items in pages of 100,
then ``MEMORY USAGE`` (``SAMPLES 0``) of each session's hash is read: a weighted session keeps its
ticket positions and the session-wide ``w.`` containers, a uniform one its served positions.
"""
from __future__ import annotations

import argparse
import statistics
import time

from .common import catalog, load_average, percentile, redis_server, redis_version, warm_os_cache, write_snapshot

PATH = "/api/reels"
MODES = (("uniform", "true"), ("weighted", "weighted"))
#: Untimed pages of each (mode, page size)'s first session in the timed app.
WARM_PAGES = 2
#: The target (weighted p50 at most 1.5 x uniform p50) is set at this catalog size.
TARGET_SIZE = 1_000_000
#: Items served to each session whose memory is measured, in pages of ``MEMORY_PAGE``.
MEMORY_ITEMS, MEMORY_PAGE = 2_000, 100


def _get(client, mode: str, session_id: str, offset: int, limit: int) -> tuple[float, float, list[float]]:
    """(wall ms, thread CPU ms, outlier scores of the items) of one page."""
    query = {"random_order": mode, "session_id": session_id, "offset": offset, "limit": limit}
    started, started_cpu = time.perf_counter(), time.thread_time()
    response = client.get(PATH, query_string=query)
    cpu = (time.thread_time() - started_cpu) * 1000
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{PATH} {query}: HTTP {response.status_code} {response.get_data()[:300]!r}")
    items = response.get_json()["data"]["reels"]
    if len(items) != limit:
        raise RuntimeError(f"{PATH} {query}: a page of {len(items)} items")
    return elapsed, cpu, [item["outlier_score"] for item in items]


def _close(app) -> None:
    app.extensions["viralspot.session_store"].close()
    app.extensions["viralspot.catalog"].dispose()


def _one_off(url: str, store_url: str, size: int, limit: int, run: int) -> dict:
    """A fresh app: its first uniform page (matching set read), then its first weighted page
    (outlier scores read), in ms."""
    from viralspot.catalog.feed_source import FeedSource

    from .bench_app import create_bench_app

    reads: list[float] = []
    original = FeedSource.read_scores

    def timed_read(source):
        started = time.perf_counter()
        try:
            return original(source)
        finally:
            reads.append((time.perf_counter() - started) * 1000)

    app = create_bench_app({"DATABASE_URL": url, "SESSION_STORE_URL": store_url})
    FeedSource.read_scores = timed_read
    try:
        client = app.test_client()
        uniform, _, _ = _get(client, "true", f"fresh-{size}-{run}-u", 0, limit)
        weighted, weighted_cpu, _ = _get(client, "weighted", f"fresh-{size}-{run}-w", 0, limit)
    finally:
        FeedSource.read_scores = original
        _close(app)
    return {"uniform_ms": uniform, "weighted_ms": weighted, "weighted_cpu_ms": weighted_cpu, "read_ms": sum(reads)}


def _memory(client, redis_client, size: int, sessions: int) -> dict:
    """Mode -> MEMORY USAGE in bytes of each of ``sessions`` sessions served ``MEMORY_ITEMS`` items."""
    from viralspot.store.redis_store import session_key

    usage = {}
    for name, mode in MODES:
        usage[name] = []
        for n in range(sessions):
            session_id = f"memory-{size}-{name}-{n}"
            for offset in range(0, MEMORY_ITEMS, MEMORY_PAGE):
                _get(client, mode, session_id, offset, MEMORY_PAGE)
            usage[name].append(redis_client.memory_usage(session_key(session_id), samples=0))
    return usage


def measure_size(size: int, limits: list[int], sessions: int, pages: int, fresh_apps: int,
                 memory_sessions: int = 3) -> dict:
    from .bench_app import create_bench_app

    url = catalog(size)
    write_snapshot(url)
    warm_os_cache(url)
    with redis_server() as server:
        one_off = [_one_off(url, server.url, size, limits[0], run) for run in range(fresh_apps)]

        app = create_bench_app({"DATABASE_URL": url, "SESSION_STORE_URL": server.url})
        try:
            client = app.test_client()
            rows = [(name, mode, limit) for limit in limits for name, mode in MODES]
            # Each (mode, page size)'s first session: the one-off reads and the scripts' loading, untimed.
            for name, mode, limit in rows:
                for page in range(WARM_PAGES):
                    _get(client, mode, f"warm-{size}-{name}-{limit}", page * limit, limit)
            walls = {row: [] for row in rows}
            cpus = {row: [] for row in rows}
            scores = {row: [] for row in rows}
            turn = 0
            for n in range(sessions):
                for page in range(pages):
                    for row in (rows if turn % 2 == 0 else rows[::-1]):
                        name, mode, limit = row
                        wall, cpu, served = _get(client, mode, f"t-{size}-{name}-{limit}-{n}", page * limit, limit)
                        walls[row].append(wall)
                        cpus[row].append(cpu)
                        scores[row].extend(served)
                    turn += 1
            memory = _memory(client, app.extensions["viralspot.session_store"].client, size, memory_sessions)
            version = redis_version(server.url)
        finally:
            _close(app)
    return {"size": size, "redis": version, "one_off": one_off, "memory": memory,
            "rows": [{"mode": row[0], "limit": row[2], "n": len(walls[row]),
                      "p50": statistics.median(walls[row]), "p90": percentile(walls[row], 0.90),
                      "cpu_p50": statistics.median(cpus[row]), "cpu_p90": percentile(cpus[row], 0.90),
                      "mean_score": statistics.fmean(scores[row])} for row in rows]}


def measure(sizes: list[int], limits: list[int], sessions: int, pages: int, fresh_apps: int,
            memory_sessions: int = 3) -> dict:
    started, load_before = time.perf_counter(), load_average()
    results = [measure_size(size, limits, sessions, pages, fresh_apps, memory_sessions) for size in sizes]
    return {"sizes": results, "limits": limits, "sessions": sessions, "pages": pages, "fresh_apps": fresh_apps,
            "load_before": load_before, "load_after": load_average(), "seconds": time.perf_counter() - started}


def _row(result: dict, mode: str, limit: int) -> dict:
    return next(row for row in result["rows"] if row["mode"] == mode and row["limit"] == limit)


def markdown(result: dict) -> str:
    first = result["sizes"][0]
    lines = [f"Plain `{PATH}` feed, redis-server {first['redis']}, Flask test client in one process; per row "
             f"{result['sessions']} sessions x {result['pages']} pages in order, rows taking turns page by page. "
             f"Load average {result['load_before']} at the start, {result['load_after']} at the end.\n",
             "| items | page | mode | pages | p50 ms | p90 ms | CPU p50 ms | CPU p90 ms | mean outlier_score served "
             "| weighted / uniform p50 (CPU p50) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sized in result["sizes"]:
        for limit in result["limits"]:
            uniform = _row(sized, "uniform", limit)
            for row in (uniform, _row(sized, "weighted", limit)):
                ratio = ""
                if row is not uniform:
                    ratio = f"**{row['p50'] / uniform['p50']:.2f}** ({row['cpu_p50'] / uniform['cpu_p50']:.2f})"
                lines.append(f"| {sized['size']:,} | {limit} | {row['mode']} | {row['n']} | {row['p50']:.2f} | "
                             f"{row['p90']:.2f} | {row['cpu_p50']:.2f} | {row['cpu_p90']:.2f} | "
                             f"{row['mean_score']:.2f} | {ratio} |")
    limit = result["limits"][0]
    lines += ["", f"One-off reads, each in a fresh app ({result['fresh_apps']} apps per size), pages of {limit}:\n",
              "| items | first uniform page ms (matching set read) | first weighted page ms (outlier scores read) "
              "| of which `read_scores` (SQL), ms | first weighted page - weighted p50, ms (median) |",
              "|---:|---|---|---|---:|"]

    def listed(values) -> str:
        return ", ".join(f"{value:.0f}" for value in values)

    for sized in result["sizes"]:
        firsts = [run["weighted_ms"] for run in sized["one_off"]]
        excess = statistics.median(firsts) - _row(sized, "weighted", limit)["p50"]
        lines.append(f"| {sized['size']:,} | {listed(run['uniform_ms'] for run in sized['one_off'])} | "
                     f"{listed(firsts)} | {listed(run['read_ms'] for run in sized['one_off'])} | **{excess:.0f}** |")
    lines += ["", f"Memory of a session served {MEMORY_ITEMS:,} items in pages of {MEMORY_PAGE} (`MEMORY USAGE` of its "
              "hash; each session's figure):\n",
              "| catalog items | mode | bytes | bytes per served item |", "|---:|---|---|---:|"]
    for sized in result["sizes"]:
        for name, _mode in MODES:
            usage = sized["memory"][name]
            lines.append(f"| {sized['size']:,} | {name} | {', '.join(f'{value:,}' for value in usage)} | "
                         f"{statistics.median(usage) / MEMORY_ITEMS:.2f} |")
    lines.append("")
    for sized in result["sizes"]:
        for limit in result["limits"]:
            ratio = _row(sized, "weighted", limit)["p50"] / _row(sized, "uniform", limit)["p50"]
            verdict = f" (target <= 1.5: {'met' if ratio <= 1.5 else 'missed'})" if sized["size"] >= TARGET_SIZE else ""
            lines.append(f"{sized['size']:,} items, pages of {limit}: weighted p50 / uniform p50 = "
                         f"**{ratio:.2f}**{verdict}.")
    lines.append(f"\n(Measured in {result['seconds']:.0f} s.)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="catalog sizes, comma-separated")
    parser.add_argument("--limits", default="24,100", help="items per page, comma-separated")
    parser.add_argument("--sessions", type=int, default=8, help="sessions per row")
    parser.add_argument("--pages", type=int, default=20, help="pages per session")
    parser.add_argument("--fresh-apps", type=int, default=3, help="fresh apps timing the one-off reads, per size")
    parser.add_argument("--memory-sessions", type=int, default=3, help="sessions per mode whose memory is read")
    args = parser.parse_args(argv)
    result = measure([int(size) for size in args.sizes.split(",")], [int(limit) for limit in args.limits.split(",")],
                     args.sessions, args.pages, args.fresh_apps, args.memory_sessions)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
