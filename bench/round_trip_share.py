"""What one Redis round trip costs a random page here: random pages against the ceiling under
3 gunicorn workers (keep-alive off, 1,000,000 items unless ``--size``), three servers taking
turns round by round:

* ``redis``: the service as deployed, sessions in Redis (one claim round trip a page);
* ``memory per worker``: each worker keeps its own sessions in memory, so a page makes no round
  trip. A measuring device only: a session's pages land on workers that do not share what they
  served (``gunicorn.conf.py`` refuses this; the benchmark runs it with a config of its own);
* ``memory per worker + bare round trip``: the same, plus one round trip a page through the
  store's own client path, a script that counts the sessions index and does no claim work
  (``bench_app.py``, ``BENCH_BARE_ROUND_TRIP_URL``).

Besides requests/s it reports CPU per request of the workers and of Redis, read from
``/proc/<pid>/stat``.

    python -m bench.round_trip_share [--rounds 4] [--seconds 8] [--size 1000000]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile

from .load import _children, _cpu_ticks
from .plain_page import build_catalog
from .random_feed import ROOT, WRK_RANDOM, _free_port, _wrk, start_gunicorn, warm_up, write_snapshot
from .redis_memory import redis_server

WORKERS = 3
RANDOM_PATH = "/api/reels?random_order=true&limit=24"
CEILING_PATH = "/bench/fixed-page"
VARIANTS = ("redis", "memory per worker", "memory per worker + bare round trip")


def _cpu_seconds(pids) -> float:
    """User plus system CPU of the processes ``pids`` (all their threads), in seconds."""
    return sum(_cpu_ticks(pids).values()) / os.sysconf("SC_CLK_TCK")


def _memory_per_worker_config(directory: str) -> str:
    """A gunicorn config: ``gunicorn.conf.py``'s settings with memory:// sessions in WORKERS workers."""
    path = os.path.join(directory, "memory_per_worker.conf.py")
    with open(path, "w") as config:
        config.write(
            "import os, runpy\n"
            "os.environ['WEB_CONCURRENCY'] = '1'  # passes gunicorn.conf.py's one-worker check\n"
            f"globals().update({{name: value for name, value in runpy.run_path({os.path.join(ROOT, 'gunicorn.conf.py')!r})"
            ".items() if not name.startswith('__')})\n"
            f"workers = {WORKERS}\n")
    return path


class Server:
    """One gunicorn master serving ``bench.bench_app:app`` with ``env`` and ``config`` (None: ``gunicorn.conf.py``)."""

    def __init__(self, url: str, config: str | None, env: dict) -> None:
        self.port = _free_port()
        self.process = start_gunicorn(url, self.port, WORKERS, 8, {"GUNICORN_KEEPALIVE": "0", **env}, config)

    def warm_up(self) -> None:
        warm_up(self.port, RANDOM_PATH, 8)
        self.workers = sorted(_children(self.process.pid))

    def load(self, path: str, seconds: int, script: str | None, redis_pid: int | None) -> dict:
        """Requests/s and CPU ms per request (workers, Redis) of ``seconds`` of load on ``path``."""
        workers_before = _cpu_seconds(self.workers)
        redis_before = _cpu_seconds([redis_pid]) if redis_pid else 0.0
        rps, _p99 = _wrk(self.port, path, seconds, 8, script)
        requests = rps * seconds
        workers_ms = (_cpu_seconds(self.workers) - workers_before) / requests * 1000
        redis_ms = ((_cpu_seconds([redis_pid]) - redis_before) / requests * 1000) if redis_pid else 0.0
        return {"rps": rps, "workers_ms": workers_ms, "redis_ms": redis_ms}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _redis_pid(url: str) -> int:
    import redis

    with redis.Redis.from_url(url) as client:
        return int(client.info("server")["process_id"])


def measure(size: int, rounds: int, seconds: int) -> dict[str, list[tuple[dict, dict]]]:
    """Per variant, ``rounds`` (ceiling, random) load pairs, the variants taking turns round by round."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian package 'wrk'); it loads the server on loopback")
    url, _ = build_catalog(size)
    write_snapshot(url)
    results: dict[str, list[tuple[dict, dict]]] = {variant: [] for variant in VARIANTS}
    with contextlib.ExitStack() as stack:
        store_url = stack.enter_context(redis_server(shutil.which("redis-server") or "/usr/bin/redis-server"))
        redis_pid = _redis_pid(store_url)
        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="vs-bench-rt-"))
        memory_config = _memory_per_worker_config(directory)
        servers = {
            "redis": Server(url, None, {"VIRALSPOT_SESSION_STORE_URL": store_url}),
            "memory per worker": Server(url, memory_config, {"VIRALSPOT_SESSION_STORE_URL": "memory://"}),
            # Another database number: the bare round trip's script never touches the sessions'.
            "memory per worker + bare round trip": Server(
                url, memory_config, {"VIRALSPOT_SESSION_STORE_URL": "memory://",
                                     "BENCH_BARE_ROUND_TRIP_URL": store_url.rsplit("/", 1)[0] + "/1"}),
        }
        for server in servers.values():
            stack.callback(server.stop)
        for server in servers.values():
            server.warm_up()
        for _round in range(rounds):
            for variant, server in servers.items():
                pid = redis_pid if variant != "memory per worker" else None
                ceiling = server.load(CEILING_PATH, seconds, None, pid)
                random_page = server.load(RANDOM_PATH, seconds, WRK_RANDOM, pid)
                results[variant].append((ceiling, random_page))
    return results


def markdown(results: dict[str, list[tuple[dict, dict]]]) -> str:
    lines = ["| sessions | ceiling, req/s | random page, req/s | random / ceiling (each round) | "
             "workers' CPU per request, ceiling / random page, ms | Redis CPU per random page, ms |",
             "|---|---:|---:|---|---:|---:|"]
    for variant, pairs in results.items():
        shares = [random_page["rps"] / ceiling["rps"] for ceiling, random_page in pairs]
        ceiling_rps = statistics.mean(ceiling["rps"] for ceiling, _ in pairs)
        random_rps = statistics.mean(random_page["rps"] for _, random_page in pairs)
        ceiling_ms = statistics.mean(ceiling["workers_ms"] for ceiling, _ in pairs)
        random_ms = statistics.mean(random_page["workers_ms"] for _, random_page in pairs)
        redis_ms = statistics.mean(random_page["redis_ms"] for _, random_page in pairs)
        lines.append(f"| {variant} | {ceiling_rps:,.0f} | {random_rps:,.0f} | {random_rps / ceiling_rps:.0%} "
                     f"({', '.join(f'{share:.0%}' for share in shares)}) | {ceiling_ms:.2f} / {random_ms:.2f} | "
                     f"{redis_ms:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--size", type=int, default=1_000_000, help="catalog items")
    args = parser.parse_args(argv)
    print(f"#### What one Redis round trip costs a random page ({WORKERS} workers, keep-alive off, "
          f"{args.size:,} items, {args.rounds} rounds of {args.seconds} s)\n")
    print(markdown(measure(args.size, args.rounds, args.seconds)))


if __name__ == "__main__":
    main()
