"""Latency of plain (non-random) content pages on SQLite catalogs of 10k and 1M items.

Builds each catalog once with the seed command's code (cached under
``bench/.data/``, which git ignores), then times requests through the Flask
test client and prints a markdown table of median and p95 per argument set::

    python -m bench.plain_page            # 10k and 1M
    python -m bench.plain_page 10000      # chosen sizes

The target: a plain page answers in under 50 ms median at 1,000,000 items.
"""
from __future__ import annotations

import os
import statistics
import sys
import time

from tqdm import tqdm

from viralspot import create_app
from viralspot.catalog.database import create_schema, make_engine
from viralspot.catalog.queries import content_count
from viralspot.catalog.seed import seed_catalog
from viralspot.clock import parse_instant

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data")
SEED = 1
#: The cached catalogs are dated back from this instant, and the benchmark apps' clocks are pinned
#: at it (``FIXED_NOW``): a date_range case matches the same share of the catalog on any day.
BENCH_NOW = "2026-11-01T00:00:00Z"
WARMUP = 5
REPEATS = 60

CASES = [
    ("default order", "/api/reels?limit=24"),
    ("sort_by=views", "/api/reels?limit=24&sort_by=views"),
    ("sort_by=recent", "/api/reels?limit=24&sort_by=recent"),
    ("category filter", "/api/reels?limit=24&primary_categories=Food"),
    ("offset 5000", "/api/reels?limit=24&offset=5000"),
    ("posts, sort_by=likes", "/api/posts?limit=24&sort_by=likes"),
]


def catalog_path(size: int) -> str:
    return os.path.join(DATA_DIR, f"catalog_{size}_seed{SEED}.db")


def build_catalog(size: int) -> tuple[str, float | None]:
    """The cached catalog's URL, and the seconds spent seeding it (None when reused)."""
    os.makedirs(DATA_DIR, exist_ok=True)
    url = "sqlite:///" + catalog_path(size)
    engine = make_engine(url)
    try:
        create_schema(engine)
        with engine.connect() as conn:
            if content_count(conn) == size:
                return url, None
        with tqdm(total=size, unit="items", desc=f"seeding {size}") as bar:
            report = seed_catalog(engine, size, SEED, reference=parse_instant(BENCH_NOW), replace=True,
                                  progress=bar.update)
        return url, report.seconds
    finally:
        engine.dispose()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def measure(sizes=(10_000, 1_000_000)) -> list[dict]:
    """One row per (size, case): median and p95 latency in milliseconds."""
    results = []
    for size in sizes:
        url, seed_seconds = build_catalog(size)
        app = create_app({"CONFIG": "default", "SECRET_KEY": "bench", "DATABASE_URL": url, "FIXED_NOW": BENCH_NOW,
                          "LOG_LEVEL": "WARNING"})
        client = app.test_client()
        for name, path in CASES:
            for _ in range(WARMUP):
                assert client.get(path).status_code == 200
            timings = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                response = client.get(path)
                timings.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200 and len(response.json["data"]["reels"]) == 24
            results.append({"items": size, "case": name, "median_ms": statistics.median(timings),
                            "p95_ms": percentile(timings, 0.95), "seed_seconds": seed_seconds})
        app.extensions["viralspot.catalog"].dispose()
    return results


def markdown(results: list[dict]) -> str:
    lines = ["| items | request | median ms | p95 ms |", "|---:|---|---:|---:|"]
    for row in results:
        lines.append(f"| {row['items']:,} | {row['case']} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} |")
    seeded = {row["items"]: row["seed_seconds"] for row in results if row["seed_seconds"] is not None}
    for size, seconds in seeded.items():
        lines.append(f"\nseeded {size:,} items in {seconds:.1f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    chosen = tuple(int(arg) for arg in sys.argv[1:]) or (10_000, 1_000_000)
    print(markdown(measure(chosen)))
