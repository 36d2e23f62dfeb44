"""Random-feed benchmarks: latency against catalog size, memory per served item, throughput.

* Item snapshots: each catalog's snapshot is written first (unless it exists, in
  ``bench/.data/snapshots``), with its time and size; the default cases read it.
* Latency: median and p95 of random pages (24 items, sessions paging from the
  start) through the Flask test client on SQLite catalogs of 10k, 100k and 1M
  items, for ordinary filters, next to the upstream design (shuffle the page
  limit/offset fetched). The target: median at 1M within 1.5x of 10k.
* Memory: bytes the memory store holds per served item (seen bitmap, serialized
  size, plus the served sequence), against upstream's set of content-id strings.
* Throughput: requests per second under gunicorn (the repo's gunicorn.conf.py),
  loaded by wrk on loopback, of random pages, of the fixed 24-item page (the
  serialization ceiling) and of the upstream random feed, with gunicorn's
  default 8 threads, with 1, with walks forced and with items read from the
  database (no snapshot); the ceiling and random pages
  take turns, ``--rounds`` times each. Target: random pages at
  least 80% of the ceiling.

    python -m bench.random_feed [--sizes 10000,100000,1000000] [--seconds 10] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from viralspot.store.memory import MemorySessionStore

from .bench_app import SNAPSHOT_ROOT, create_bench_app
from .plain_page import build_catalog, percentile
from .upstream import forget_sessions, set_of_strings_bytes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SESSIONS = 50
PAGES = 8

#: App settings the cases run under: the defaults (items from the item snapshot), walks forced
#: (RANDOM_LIST_MAX_KEYS=0: the plan broad filters get beyond RANDOM_LIST_MAX_KEYS matches), and
#: items read from the database (no snapshot: a server in the seconds after a catalog write,
#: before the new snapshot is written).
VARIANTS = {"default": {"ITEM_SNAPSHOT_DIR": SNAPSHOT_ROOT},
            "walk": {"ITEM_SNAPSHOT_DIR": SNAPSHOT_ROOT, "RANDOM_LIST_MAX_KEYS": 0},
            "no-snapshot": {"ITEM_SNAPSHOT_DIR": ""}}
CASES = [
    ("reels, no filter", "/api/reels", {}, "default"),
    ("reels, one category", "/api/reels", {"primary_categories": "Food"}, "default"),
    ("reels, min_views=10000", "/api/reels", {"min_views": 10000}, "default"),
    ("posts, no filter", "/api/posts", {}, "default"),
    ("reels, date_range=year", "/api/reels", {"date_range": "year"}, "default"),
    ("reels, no filter, walk forced", "/api/reels", {}, "walk"),
    ("reels, min_views=10000, walk forced", "/api/reels", {"min_views": 10000}, "walk"),
    ("reels, no filter, items from the database", "/api/reels", {}, "no-snapshot"),
    ("reels, min_views=10000, walk forced, items from the database", "/api/reels", {"min_views": 10000},
     "no-snapshot-walk"),
]
VARIANTS["no-snapshot-walk"] = {**VARIANTS["no-snapshot"], "RANDOM_LIST_MAX_KEYS": 0}
#: The defaults with sessions in Redis (the throughput benchmark starts a redis-server for it),
#: with items from the item snapshot and from the database.
VARIANTS["redis"] = dict(VARIANTS["default"])
VARIANTS["redis-no-snapshot"] = dict(VARIANTS["no-snapshot"])


def write_snapshot(url: str) -> dict:
    """The item snapshot of the catalog at ``url`` (written unless it exists): seconds spent, bytes."""
    app = create_bench_app({"DATABASE_URL": url, "ITEM_SNAPSHOT_DIR": SNAPSHOT_ROOT})
    snapshots = app.extensions["viralspot.catalog.item_snapshots"]
    started = time.perf_counter()
    update = snapshots.write_now()
    seconds = time.perf_counter() - started
    app.extensions["viralspot.catalog"].dispose()
    if update is None:
        raise RuntimeError(f"another process holds the snapshot lock in {snapshots.directory}")
    return {"seconds": None if update.action == "kept" else seconds, "bytes": update.path.stat().st_size}


def _request(client, path: str, filters: dict, session_id: str, page: int, random_order: bool) -> float:
    query = {"limit": 24, "offset": page * 24, "session_id": session_id, **filters}
    if random_order:
        query["random_order"] = "true"
    started = time.perf_counter()
    response = client.get(path, query_string=query)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.get_json()
    return elapsed * 1000


def _interleaved(clients: dict, path: str, filters: dict, prefix: str, random_order: bool) -> dict:
    """Page timings per catalog size, the sizes taking turns request by request.

    Taking turns puts every size under the same machine conditions, so a ratio
    between sizes is not skewed by a noisy neighbour during one size's run.
    Session 0 of each size warms caches (plans, candidate lists, SQLite pages)
    and is not counted.
    """
    timings = {size: [] for size in clients}
    for session in range(SESSIONS + 1):
        session_id = "".join(ch if ch.isalnum() else "-" for ch in f"{prefix}-{session}")
        for page in range(PAGES):
            for size, client in clients.items():
                elapsed = _request(client, path, filters, session_id, page, random_order)
                if session:
                    timings[size].append(elapsed)
    return timings


def _warm_os_cache(url: str) -> None:
    """Read the catalog file once, as a server that has been up for a while has it in the page cache."""
    with open(url.removeprefix("sqlite:///"), "rb") as handle:
        while handle.read(1 << 24):
            pass


def snapshots(sizes) -> list[dict]:
    """Each catalog's item snapshot, written unless it exists: seconds spent, file size."""
    rows = []
    for size in sizes:
        url, _ = build_catalog(size)
        rows.append({"size": size, **write_snapshot(url)})
    return rows


def latency(sizes) -> list[dict]:
    clients: dict[str, dict] = {variant: {} for variant in VARIANTS}
    for size in sizes:
        url, _ = build_catalog(size)
        write_snapshot(url)
        _warm_os_cache(url)
        for variant, settings in VARIANTS.items():
            clients[variant][size] = create_bench_app({"DATABASE_URL": url, **settings}).test_client()
    rows = []
    for name, path, filters, variant in CASES:
        ours = _interleaved(clients[variant], path, filters, f"lat-{name}", True)
        baseline = (_interleaved(clients[variant], "/bench/upstream-random", filters, f"up-{name}", False)
                    if path == "/api/reels" and variant == "default" else None)
        for size in sizes:
            rows.append({
                "size": size, "case": name,
                "median_ms": statistics.median(ours[size]), "p95_ms": percentile(ours[size], 0.95),
                "upstream_median_ms": statistics.median(baseline[size]) if baseline else None,
            })
    forget_sessions()
    rows.sort(key=lambda row: row["size"])
    return rows


def memory(size: int) -> list[dict]:
    """Bytes per served item after sessions of 24, 240 and 2,400 items on a catalog of ``size``."""
    url, _ = build_catalog(size)
    app = create_bench_app({"DATABASE_URL": url})
    rows = []
    for pages in (1, 10, 100):
        store = MemorySessionStore()
        app.extensions["viralspot.session_store"] = store
        client = app.test_client()
        served_ids: list[str] = []
        for session in range(10):
            for page in range(pages):
                response = client.get("/api/reels", query_string={
                    "random_order": "true", "session_id": f"mem-{pages}-{session}", "offset": page * 24})
                served_ids.extend(item["content_id"] for item in response.get_json()["data"]["reels"])
        served = sum(store.summary(s).served_items_count for s in store.session_ids(100))
        assert served == len(served_ids) == 10 * pages * 24
        upstream = sum(set_of_strings_bytes(served_ids[i::10]) for i in range(10))
        rows.append({"items_per_session": pages * 24, "ours_bytes_per_item": store.served_bytes() / served,
                     "upstream_bytes_per_item": upstream / served})
    return rows


# Requests go round the connections in turn, so request n belongs to session n % CONNECTIONS
# (of its batch of 20 pages) and each session pages 0, 24, 48, ... in order: every connection
# is one user paging, not eight connections prefetching one session at once.
WRK_RANDOM = """
local counter = 1
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
function init(args) prefix = "wrk" .. tostring(tid) .. "-" .. tostring(os.time()) ; n = 0 end
function request()
  local lane = n % CONNECTIONS
  local step = math.floor(n / CONNECTIONS)
  local session = lane .. "-" .. math.floor(step / 20)
  local offset = (step % 20) * 24
  n = n + 1
  return wrk.format("GET", PATH .. "&session_id=" .. prefix .. "-" .. session .. "&offset=" .. offset)
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(port: int, deadline: float) -> None:
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/bench/fixed-page", timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not come up")


def _wrk(port: int, path: str, seconds: int, connections: int, script: str | None) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) of ``seconds`` of load on ``path``."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        if script:
            handle.write(f'PATH = "{path}"\nCONNECTIONS = {connections}\n' + script)
            command[1:1] = ["-s", handle.name]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    finally:
        os.unlink(handle.name)
    non2xx = [line for line in output.splitlines() if "Non-2xx" in line]
    if non2xx:
        raise RuntimeError(f"{path}: {non2xx[0].strip()}")
    rps = float(next(line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec")))
    p99 = next(line.split()[1] for line in output.splitlines() if line.strip().startswith("99%"))
    return rps, _milliseconds(p99)


def _milliseconds(text: str) -> float:
    """wrk's "1.23ms" / "850.00us" / "1.02s" as milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * factor
    raise ValueError(f"not a wrk duration: {text!r}")


def start_gunicorn(url: str, port: int, workers: int, threads: int, env: dict,
                   config: str | None = None) -> subprocess.Popen:
    """gunicorn serving ``bench.bench_app:app`` on ``port`` over the catalog ``url``, with
    ``gunicorn.conf.py`` (or ``config``) and ``env`` on top of the benchmark's environment."""
    full_env = {**os.environ, "VIRALSPOT_DATABASE_URL": url, "VIRALSPOT_LOG_LEVEL": "WARNING", "PORT": str(port),
                "GUNICORN_ACCESSLOG": "", "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads), **env}
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-c",
                             config or os.path.join(ROOT, "gunicorn.conf.py"), "bench.bench_app:app"],
                            cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def warm_up(port: int, random_path: str, connections: int) -> None:
    """Wait for the server on ``port``, load the ceiling for 2 s, then random pages until they flow.

    Each worker's first random page maps the item snapshot and builds the 1M-key candidate list,
    which took longer than a 2 s warm-up and put seconds of stall (p99 944 ms) into the first
    measured round.
    """
    _wait_until_up(port, time.time() + 60)
    _wrk(port, "/bench/fixed-page", 2, connections, None)
    for _attempt in range(15):
        if _wrk(port, random_path, 2, connections, WRK_RANDOM)[0] > 0:
            break
    _wrk(port, random_path, 2, connections, WRK_RANDOM)


def throughput(size: int, seconds: int, threads: int, variant: str = "default", connections: int | None = None,
               rounds: int = 3, workers: int = 1, keepalive: int = 2) -> dict:
    """Requests/s of the ceiling, our random pages and upstream's, under gunicorn with ``workers``
    processes of ``threads`` threads; the ``redis`` variant keeps sessions in a redis-server of its own.

    The ceiling and our random pages are loaded in turn, ``rounds`` times each, and
    averaged: this VM's speed drifts by 10-30% over a minute, and interleaving keeps
    the drift out of the ratio.
    """
    # 8 keep-alive connections whatever the workers (24 for 3 workers measured worse for random
    # pages, 36% of the ceiling, with p99 at 67 ms: threads then wait on each other's GIL).
    connections = connections or 8
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package 'wrk'); it loads the server on loopback")
    if variant.startswith("redis"):
        from .redis_memory import redis_server

        with redis_server(shutil.which("redis-server") or "/usr/bin/redis-server") as store_url:
            return _throughput(size, seconds, threads, variant, connections, rounds, workers,
                               {"VIRALSPOT_SESSION_STORE_URL": store_url, "GUNICORN_KEEPALIVE": str(keepalive)})
    return _throughput(size, seconds, threads, variant, connections, rounds, workers,
                       {"GUNICORN_KEEPALIVE": str(keepalive)})


def _throughput(size: int, seconds: int, threads: int, variant: str, connections: int, rounds: int,
                workers: int, extra_env: dict) -> dict:
    url, _ = build_catalog(size)
    write_snapshot(url)
    port = _free_port()
    server = start_gunicorn(url, port, workers, threads, {
        **{f"VIRALSPOT_{name}": str(value) for name, value in VARIANTS[variant].items()}, **extra_env})
    random_path = "/api/reels?random_order=true&limit=24"
    try:
        warm_up(port, random_path, connections)
        ceiling, ours, p99s = [], [], []
        for _round in range(rounds):
            ceiling.append(_wrk(port, "/bench/fixed-page", seconds, connections, None)[0])
            rps, p99 = _wrk(port, random_path, seconds, connections, WRK_RANDOM)
            ours.append(rps)
            p99s.append(p99)
        upstream = _wrk(port, "/bench/upstream-random?limit=24", seconds, connections, WRK_RANDOM)[0]
    finally:
        server.terminate()
        server.wait(timeout=30)
    ceiling_rps, random_rps = statistics.mean(ceiling), statistics.mean(ours)
    return {"size": size, "threads": threads, "workers": workers, "connections": connections,
            "keepalive": extra_env["GUNICORN_KEEPALIVE"],
            "variant": variant, "ceiling_rps": ceiling_rps,
            "random_rps": random_rps, "random_p99_ms": statistics.median(p99s),
            "upstream_rps": upstream, "random_share": random_rps / ceiling_rps,
            "shares": [r / c for r, c in zip(ours, ceiling)]}


def print_latency(latency_rows) -> None:
    print("\n### Random page latency (24 items, Flask test client, SQLite)\n")
    print("| catalog items | case | median ms | p95 ms | upstream median ms |")
    print("|---:|---|---:|---:|---:|")
    for row in latency_rows:
        upstream = f"{row['upstream_median_ms']:.2f}" if row["upstream_median_ms"] is not None else "n/a"
        print(f"| {row['size']:,} | {row['case']} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | {upstream} |")
    sizes = sorted({row["size"] for row in latency_rows})
    if len(sizes) > 1:
        print(f"\n| case | median at {sizes[-1]:,} / median at {sizes[0]:,} |")
        print("|---|---:|")
        for name, _path, _filters, _variant in CASES:
            by_size = {r["size"]: r["median_ms"] for r in latency_rows if r["case"] == name}
            print(f"| {name} | {by_size[sizes[-1]] / by_size[sizes[0]]:.2f}x |")


def print_tables(latency_rows, memory_rows, throughput_rows, snapshot_rows=()) -> None:
    if snapshot_rows:
        print("\n### Item snapshots (every rendered item of one catalog version, memory-mapped)\n")
        print("| catalog items | written in, s | file, bytes | bytes per item |")
        print("|---:|---:|---:|---:|")
        for row in snapshot_rows:
            seconds = f"{row['seconds']:.1f}" if row["seconds"] is not None else "(existed)"
            print(f"| {row['size']:,} | {seconds} | {row['bytes']:,} | {row['bytes'] / row['size']:.0f} |")
    if latency_rows:
        print_latency(latency_rows)
    if memory_rows:
        print("\n### Memory per served item (memory store)\n")
        print("| items served per session | ours, bytes/item | upstream set of strings, bytes/item |")
        print("|---:|---:|---:|")
        for row in memory_rows:
            print(f"| {row['items_per_session']:,} | {row['ours_bytes_per_item']:.2f} | "
                  f"{row['upstream_bytes_per_item']:.1f} |")
    if throughput_rows:
        size = throughput_rows[0]["size"]
        print(f"\n### Throughput under gunicorn (gthread, wrk on loopback, {size:,} items)\n")
        print("| workers | threads | connections | keep-alive, s | variant | ceiling: fixed 24-item page, req/s | random page, ours, req/s | "
              "random page p99, ms | ours / ceiling (each round) | upstream design, req/s | upstream / ceiling |")
        print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for t in throughput_rows:
            rounds = ", ".join(f"{share:.0%}" for share in t["shares"])
            print(f"| {t['workers']} | {t['threads']} | {t['connections']} | {t['keepalive']} | {t['variant']} | {t['ceiling_rps']:.0f} "
                  f"| {t['random_rps']:.0f} | "
                  f"{t['random_p99_ms']:.1f} | "
                  f"{t['random_share']:.0%} ({rounds}) | {t['upstream_rps']:.0f} | "
                  f"{t['upstream_rps'] / t['ceiling_rps']:.0%} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="ceiling/random load rounds per configuration")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: latency,memory,throughput")
    parser.add_argument("--throughput",
                        default="8:default,8:no-snapshot,8:redis:3,8:redis:3:0,8:redis-no-snapshot:3,1:default,8:walk",
                        help="gunicorn configurations to load, threads:variant[:workers[:keepalive]] (8 threads, 1 "
                             f"worker and 2 s keep-alive are gunicorn.conf.py's memory:// defaults; variants: {', '.join(VARIANTS)})")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    random.seed(0)
    snapshot_rows = snapshots(sizes)
    latency_rows = latency(sizes) if "latency" not in skip else []
    memory_rows = memory(max(sizes)) if "memory" not in skip else []
    configurations = [item.split(":") for item in args.throughput.split(",")]
    throughput_rows = ([throughput(max(sizes), args.seconds, int(threads), variant, rounds=args.rounds,
                                   workers=int(rest[0]) if rest else 1,
                                   keepalive=int(rest[1]) if len(rest) > 1 else 2)
                        for threads, variant, *rest in configurations] if "throughput" not in skip else [])
    print_tables(latency_rows, memory_rows, throughput_rows, snapshot_rows)


if __name__ == "__main__":
    main()
