"""CPU per random page against the serialization ceiling, under real gunicorn over Redis.

    python -m bench.cpu_per_page [--size 1000000] [--rounds 5] [--seconds 10] [--connections 8]

gunicorn (the repo's ``gunicorn.conf.py``: gthread, 8 threads) with 3 workers serving
``bench.bench_app:app`` over the cached catalog and its item snapshot, sessions in a
redis-server of its own, keep-alive off (``VIRALSPOT_GUNICORN_KEEPALIVE=0``: every request on a new
connection, so any worker may serve it). Four loads take turns, round by round:

* random pages: ``GET /api/reels?random_order=true&limit=24``, each client connection one user
  paging a session in order (offset 0, 24, ... 20 pages, then a new session);
* the ceiling: ``GET /bench/fixed-page``, a fixed 24-item page of the same shape serialized per
  request by the same workers (``bench_app.py``), no store, no database;
* the arguments page: ``GET /bench/arguments-page``, loaded as the random pages are: the random
  page's arguments and decorators and a body of the ceiling's items pre-rendered, as the item
  snapshot keeps them (``bench_app.py``): what a random page costs before it reads anything;
* the floor: ``GET /bench/floor-page``, loaded as the random pages are: the random page's
  arguments, one round trip to the session store and 24 items from the item snapshot, without the
  feed's own work (``bench_app.py``): what a random page costs at least with one store call.

For each load: the CPU seconds (user + system, ``/proc/<pid>/stat``) the three workers and the
redis-server used, divided by the requests answered. The ratios random / ceiling and floor /
ceiling of each round (and arguments / ceiling) are reported, with the median and range over the
rounds. The load comes from wrk (Debian package ``wrk``) on loopback, with ``--connections``
connections for ``--seconds``; without wrk, from a bounded Python client (threads, a new
connection per request, at most 20,000 requests a load).

``--baseline PATH`` also serves the code of another checkout (``git worktree add PATH <commit>``,
then copy this bench/ into it) from its own redis-server, the two servers taking turns round by
round: on a shared machine whose speed drifts, a comparison within one run is the fair one.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .common import (ARGUMENTS_PATH, CEILING_PATH, DATA_DIR, FLOOR_PATH, PAGE_QUERY, ROOT, BenchServer, catalog,
                     clean_env, cpu_seconds, load_average, redis_server, redis_version, warm_os_cache,
                     write_snapshot)

WORKERS = 3
#: Each load's path and whether it pages sessions.
LOADS = {"ceiling": (CEILING_PATH, False), "arguments": (ARGUMENTS_PATH + PAGE_QUERY, True),
         "floor": (FLOOR_PATH + PAGE_QUERY, True), "random": ("/api/reels" + PAGE_QUERY, True)}
PAGES_PER_SESSION = 20
#: A Python-client load stops at this many requests, whatever the time.
PYTHON_MAX_REQUESTS = 20_000

# Requests go round the connections in turn, so request n belongs to session n % CONNECTIONS
# (of its batch of 20 pages) and each session pages 0, 24, 48, ... in order: every connection
# is one user paging, not several connections prefetching one session at once.
WRK_RANDOM = """
local counter = 1
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
function init(args)
  prefix = "wrk" .. tostring(tid) .. "-" .. tostring(os.time()) .. "-" .. tostring(math.random(1000000))
  n = 0
end
function request()
  local lane = n % CONNECTIONS
  local step = math.floor(n / CONNECTIONS)
  local session = lane .. "-" .. math.floor(step / PAGES)
  local offset = (step % PAGES) * 24
  n = n + 1
  return wrk.format("GET", PATH .. "&session_id=" .. prefix .. "-" .. session .. "&offset=" .. offset)
end
"""


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Connection": "close"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wrk_load(port: int, path: str, seconds: float, connections: int, random_pages: bool) -> int:
    """Requests answered in ``seconds`` of wrk load; raises on any non-2xx answer or a request
    unanswered after 10 s."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
               f"http://127.0.0.1:{port}{path}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        if random_pages:
            handle.write(f'PATH = "{path}"\nCONNECTIONS = {connections}\nPAGES = {PAGES_PER_SESSION}\n' + WRK_RANDOM)
            command[1:1] = ["-s", handle.name]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.unlink(handle.name)
    for line in output.splitlines():
        if "Non-2xx" in line or "Socket errors" in line and "timeout 0" not in line:
            raise RuntimeError(f"{path}: {line.strip()}")
    return int(next(line.split()[0] for line in output.splitlines() if "requests in" in line))


def python_load(port: int, path: str, seconds: float, connections: int, random_pages: bool) -> int:
    """The same load from ``connections`` Python threads, a new connection per request; bounded by
    ``seconds`` and ``PYTHON_MAX_REQUESTS``."""
    stop_at = time.monotonic() + seconds
    counts = [0] * connections
    failures: list[str] = []
    prefix = f"py{time.time_ns()}"
    budget = PYTHON_MAX_REQUESTS // connections

    def lane(index: int) -> None:
        n = 0
        while time.monotonic() < stop_at and n < budget and not failures:
            target = path
            if random_pages:
                target += f"&session_id={prefix}-{index}-{n // PAGES_PER_SESSION}&offset={(n % PAGES_PER_SESSION) * 24}"
            try:
                status, _body = get(port, target)
            except (OSError, http.client.HTTPException) as error:
                failures.append(f"{target}: {error!r}")
                return
            if status != 200:
                failures.append(f"{target}: HTTP {status}")
                return
            n += 1
            counts[index] = n

    threads = [threading.Thread(target=lane, args=(i,), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    if failures or any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"{path}: {failures[:3] or 'client threads did not finish'}")
    return sum(counts)


def _kinds(name: str) -> list[str]:
    """The loads a server takes: the floor and arguments routes are this code's (an older checkout
    may lack what they call)."""
    return list(LOADS) if name == "this code" else ["ceiling", "random"]


def measure(size: int, rounds: int, seconds: float, connections: int, baseline: Path | None = None,
            threads: int = 8) -> dict:
    """``rounds`` rounds of the loads of ``LOADS`` on this checkout's server and, with ``baseline``
    (another checkout of the repo, with this bench/ in it), of the ceiling and random loads on a
    server of that code too (``_kinds``), each in its own redis-server, the servers taking turns
    round by round."""
    load = wrk_load if shutil.which("wrk") else python_load
    url = catalog(size)
    write_snapshot(url)
    warm_os_cache(url)
    roots = {"this code": ROOT, **({"baseline": Path(baseline).resolve()} if baseline else {})}
    results: dict[str, list[dict]] = {name: [] for name in roots}
    load_before = load_average()
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, root in roots.items():
            redis = stack.enter_context(redis_server())
            log_path = str(DATA_DIR / f"cpu-per-page-gunicorn-{name.replace(' ', '-')}.log")
            snapshot_dir = None
            if root != ROOT:
                # The other code writes its own item snapshot (its format may differ), in a directory
                # of its own, before its server starts.
                snapshot_dir = DATA_DIR / f"snapshots-{name}"
                subprocess.run([sys.executable, "-c", "import sys; from bench.common import write_snapshot; "
                                "write_snapshot(sys.argv[1])", url], cwd=root, check=True,
                               env=clean_env(VIRALSPOT_ITEM_SNAPSHOT_DIR=str(snapshot_dir)))
            server = BenchServer(url, redis.url, log_path, workers=WORKERS, threads=threads, keepalive=0, root=root,
                                 snapshot_dir=snapshot_dir)
            stack.callback(server.stop)
            servers[name] = (server, redis)
        for name, (server, _redis) in servers.items():
            server.wait_ready()
            server.pids = server.worker_pids()
            # Warm-up: each worker reads the feed's matching set and maps the item snapshot (the first
            # pages may time out in wrk's eyes meanwhile): until a load of random pages runs clean.
            for kind in _kinds(name):
                if kind != "random":
                    path, sessions = LOADS[kind]
                    load(server.port, path, 2, connections, sessions)
            for attempt in range(10):
                try:
                    load(server.port, LOADS["random"][0], 3, connections, True)
                    break
                except RuntimeError:
                    if attempt == 9:
                        raise
        for number in range(rounds):
            for name, (server, redis) in servers.items():
                measured = {"load": load_average().split()[0]}
                kinds = _kinds(name)
                order = kinds[number % len(kinds):] + kinds[:number % len(kinds)]
                for kind in order:
                    before = {"workers": cpu_seconds(server.pids), "redis": cpu_seconds([redis.pid])}
                    started = time.perf_counter()
                    path, sessions = LOADS[kind]
                    requests = load(server.port, path, seconds, connections, sessions)
                    elapsed = time.perf_counter() - started
                    measured[kind] = {"requests": requests, "rps": requests / elapsed,
                                      "workers_ms": (cpu_seconds(server.pids) - before["workers"]) / requests * 1000,
                                      "redis_ms": (cpu_seconds([redis.pid]) - before["redis"]) / requests * 1000}
                    measured[kind]["ms"] = measured[kind]["workers_ms"] + measured[kind]["redis_ms"]
                results[name].append(measured)
        for name, (server, _redis) in servers.items():
            if server.worker_pids() != server.pids:
                raise RuntimeError(f"{name}: a worker was replaced during the run; see {server.log_path}")
        version = redis_version(next(iter(servers.values()))[1].url)
    return {"size": size, "threads": threads, "results": results,
            "roots": {name: str(root) for name, root in roots.items()}, "seconds": seconds,
            "connections": connections, "client": "wrk" if load is wrk_load else "Python client",
            "redis": version, "load_before": load_before, "load_after": load_average()}


def _code(root: str) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return root


def markdown(result: dict) -> str:
    lines = [f"gunicorn, {WORKERS} workers (gthread, {result['threads']} threads), keep-alive off, "
             f"{result['size']:,}-item catalog, "
             f"redis-server {result['redis']}; {result['client']}, {result['connections']} connections, "
             f"rounds of {result['seconds']:g} s per load; load average before {result['load_before']}, "
             f"after {result['load_after']}. CPU ms per request: workers + redis-server.\n",
             "| code | round | load average (1 min) | load | req/s | CPU ms per request (workers + redis) | "
             "/ ceiling |",
             "|---|---:|---:|---|---:|---:|---:|"]
    summary = []
    for name, rounds in result["results"].items():
        code = _code(result["roots"][name])
        for number, r in enumerate(rounds, start=1):
            for kind in LOADS:
                if kind in r:
                    m = r[kind]
                    lines.append(f"| {name} ({code}) | {number} | {r['load']} | {kind} | {m['rps']:.0f} | "
                                 f"{m['ms']:.3f} ({m['workers_ms']:.3f} + {m['redis_ms']:.3f}) | "
                                 f"{m['ms'] / r['ceiling']['ms']:.2f} |")
        for kind in ("random", "floor", "arguments"):
            if kind not in rounds[0]:
                continue
            ratios = [r[kind]["ms"] / r["ceiling"]["ms"] for r in rounds]
            summary.append(f"- {name} ({code}): CPU per {kind} page / CPU per ceiling page: median "
                           f"**{statistics.median(ratios):.2f}**, range {min(ratios):.2f}-{max(ratios):.2f} over "
                           f"{len(rounds)} rounds; median CPU per {kind} page "
                           f"{statistics.median(r[kind]['ms'] for r in rounds):.3f} ms")
    lines.append("")
    lines.extend(summary)
    lines.append("\n(Target: random / ceiling at most 1.30. The floor is a random page without the feed's own work; "
                 "the arguments page, without anything read.)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="catalog items")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each load")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout of the repo (with this bench/ copied in) to load in turn, e.g. the "
                             "commit before a change")
    args = parser.parse_args(argv)
    result = measure(args.size, args.rounds, args.seconds, args.connections, args.baseline, args.threads)
    print(markdown(result))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
