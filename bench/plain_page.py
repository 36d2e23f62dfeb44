"""Latency of plain (non-random) content pages on SQLite catalogs of 10k and 1M items.

Uses the cached catalogs (``common.catalog``), then times requests through the Flask test
client and prints a markdown table of median and p95 per argument set::

    python -m bench.plain_page            # 10k and 1M
    python -m bench.plain_page 10000      # chosen sizes

The target: a plain page answers in under 50 ms median at 1,000,000 items.
"""
from __future__ import annotations

import statistics
import sys
import time

from viralspot import create_app

from .common import BENCH_NOW, SECRET, catalog, percentile

WARMUP = 5
REPEATS = 60

CASES = [
    ("default order", "/api/reels?limit=24"),
    ("sort_by=views", "/api/reels?limit=24&sort_by=views"),
    ("sort_by=recent", "/api/reels?limit=24&sort_by=recent"),
    ("category filter", "/api/reels?limit=24&primary_categories=Food"),
    ("offset 5000", "/api/reels?limit=24&offset=5000"),
    ("posts, sort_by=likes", "/api/posts?limit=24&sort_by=likes"),
    ("sort_by=account_engagement", "/api/reels?limit=24&sort_by=account_engagement"),
    ("sort_by=content_engagement, offset 5000", "/api/reels?limit=24&sort_by=content_engagement&offset=5000"),
    # Texts: one in no row and one in many (the text index: catalog/text_index.py), keywords of both kinds.
    ("search matching nothing", "/api/reels?limit=24&search=travel"),
    ("search of a common word", "/api/reels?limit=24&search=The"),
    ("keywords matching nothing", "/api/reels?limit=24&keywords=xyzzy,plugh"),
    ("two keywords", "/api/reels?limit=24&keywords=dance,rescue"),
]
#: Cases whose pages are empty (every other one is full).
EMPTY_CASES = {"search matching nothing", "keywords matching nothing"}


def measure(sizes=(10_000, 1_000_000)) -> list[dict]:
    """One row per (size, case): median and p95 latency in milliseconds."""
    results = []
    for size in sizes:
        url = catalog(size)
        app = create_app({"CONFIG": "default", "SECRET_KEY": SECRET, "DATABASE_URL": url, "FIXED_NOW": BENCH_NOW,
                          "LOG_LEVEL": "WARNING", "ITEM_SNAPSHOT_DIR": "", "RATE_LIMIT": "", "RESET_RATE_LIMIT": ""})
        client = app.test_client()
        for name, path in CASES:
            for _ in range(WARMUP):
                assert client.get(path).status_code == 200
            timings = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                response = client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and len(response.json["data"]["reels"]) == (
                    0 if name in EMPTY_CASES else 24)
            results.append({"items": size, "case": name, "median_ms": statistics.median(timings),
                            "p95_ms": percentile(timings, 0.95)})
        app.extensions["viralspot.catalog"].dispose()
        app.extensions["viralspot.session_store"].close()
    return results


def markdown(results: list[dict]) -> str:
    lines = ["| items | request | median ms | p95 ms |", "|---:|---|---:|---:|"]
    for row in results:
        lines.append(f"| {row['items']:,} | {row['case']} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    chosen = tuple(int(arg) for arg in sys.argv[1:]) or (10_000, 1_000_000)
    print(markdown(measure(chosen)))
