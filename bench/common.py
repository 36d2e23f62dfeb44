"""What the benchmarks share: the cached catalogs, a throwaway redis-server, /proc CPU readings.

* ``catalog(size)``: the URL of a SQLite catalog of ``size`` items under ``bench/.data/`` (git
  ignores it), seeded once with ``flask content seed --items SIZE --seed 1 --reference-date
  BENCH_NOW`` and reused while it holds ``size`` items; ``write_snapshot`` writes its item
  snapshot (random pages read their items from it) unless it is current.
* ``redis_server()``: a redis-server of its own on a free 127.0.0.1 port, no persistence,
  stopped by its pid; yields a ``RedisServer`` (url, pid).
* ``cpu_seconds(pids)``: user plus system CPU of processes (all their threads) from
  ``/proc/<pid>/stat``; ``children(pid)`` a process's children.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "bench" / ".data"
SNAPSHOT_ROOT = DATA_DIR / "snapshots"
#: The seed of every cached catalog.
SEED = 1
#: In each cached catalog's name: raised when the columns a seed writes change (2: the engagement rates).
CATALOG_LAYOUT = 2
#: The cached catalogs are dated back from this instant, and the benchmark apps' clocks are pinned
#: at it (``FIXED_NOW``): a date_range case matches the same share of the catalog on any day.
BENCH_NOW = "2026-11-01T00:00:00Z"
#: The benchmark apps' secret (a session's order is keyed by it).
SECRET = "bench-secret"
#: The benchmark app's own routes (``bench_app.py``): the ceiling, a fixed 24-item page; the
#: arguments page, a random page's arguments and decorators and a body of pre-rendered items,
#: nothing read; the floor, a random page's request without the feed's own work.
CEILING_PATH = "/bench/fixed-page"
ARGUMENTS_PATH = "/bench/arguments-page"
FLOOR_PATH = "/bench/floor-page"
#: The query of the loads that page sessions as a random page of 24 (each adds the session and offset).
PAGE_QUERY = "?random_order=true&limit=24"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values, share: float) -> float:
    """The value at ``share`` (0..1) of the sorted ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def bin_path(name: str) -> str:
    """A console script of this Python's environment (``flask``, ``gunicorn``)."""
    return os.path.join(os.path.dirname(sys.executable), name)


def clean_env(**settings: str) -> dict:
    """The environment without any ``VIRALSPOT_`` setting of the caller's, plus ``settings``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRALSPOT_")}
    env.update({"VIRALSPOT_SECRET_KEY": SECRET, "VIRALSPOT_LOG_LEVEL": "WARNING", "VIRALSPOT_FIXED_NOW": BENCH_NOW,
                # One load generator is one client: per-client rate limits would refuse it.
                "VIRALSPOT_RATE_LIMIT": "", "VIRALSPOT_RESET_RATE_LIMIT": ""})
    env.update(settings)
    return env


# --- catalogs -----------------------------------------------------------------------------------


def catalog_path(size: int) -> Path:
    return DATA_DIR / f"catalog_{size}_seed{SEED}_layout{CATALOG_LAYOUT}.db"


def _items_in(path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM content").fetchone()[0]
    except sqlite3.Error:
        return -1


def catalog(size: int, quiet: bool = False) -> str:
    """The SQLAlchemy URL of the cached catalog of ``size`` items, seeded first when missing
    (``flask content seed``, about 50 s for 1,000,000 items on 2 cores)."""
    path = catalog_path(size)
    if path.exists() and _items_in(path) == size:
        return f"sqlite:///{path}"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    seeding = path.with_suffix(".seeding")
    for stale in (seeding, path):
        if stale.exists():
            stale.unlink()
    if not quiet:
        print(f"(seeding a {size:,}-item catalog into {path} ...)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    subprocess.run([bin_path("flask"), "content", "seed", "--items", str(size), "--seed", str(SEED),
                    "--reference-date", BENCH_NOW, "--no-progress"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=clean_env(FLASK_APP="wsgi:app", VIRALSPOT_DATABASE_URL=f"sqlite:///{seeding}",
                                 VIRALSPOT_ITEM_SNAPSHOT_DIR=""))
    os.replace(seeding, path)
    if not quiet:
        print(f"(seeded in {time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return f"sqlite:///{path}"


def write_snapshot(url: str) -> None:
    """The item snapshot of the catalog at ``url`` in ``SNAPSHOT_ROOT`` (one directory per
    catalog), written unless it is current, then read once: a server that has been up a while has
    it in the page cache. (Read cold, 1.3 GB at 1M items, it cost a random page of 24 items about
    0.2 ms more CPU, in page faults: ``page_profile`` on a new machine, 0.225 ms against 0.039
    for ``FeedSource.page_items``, the floor page 0.864 against 0.561.)"""
    from .bench_app import create_bench_app

    app = create_bench_app({"DATABASE_URL": url})
    try:
        snapshots = app.extensions["viralspot.catalog.item_snapshots"]
        if snapshots.write_now() is None:
            raise RuntimeError(f"another process holds the snapshot lock in {snapshots.directory}")
        for path in sorted(Path(snapshots.directory).iterdir()):
            if path.is_file():
                _read_through(path)
    finally:
        app.extensions["viralspot.catalog"].dispose()
        app.extensions["viralspot.session_store"].close()


def warm_os_cache(url: str) -> None:
    """Read the catalog file once, as a server that has been up a while has it in the page cache."""
    _read_through(Path(url.removeprefix("sqlite:///")))


def _read_through(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


# --- redis-server -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int
    port: int


@contextmanager
def redis_server(*extra: str):
    """A throwaway redis-server (no persistence) on a free 127.0.0.1 port; stopped by its pid."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        raise SystemExit("redis-server not found (Debian package redis-server)")
    directory = tempfile.mkdtemp(prefix="vs-bench-redis-")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, "redis.log"), *extra],
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
        yield RedisServer(f"redis://127.0.0.1:{port}/0", process.pid, port)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def redis_version(url: str) -> str:
    import redis

    with redis.Redis.from_url(url) as client:
        return client.info("server")["redis_version"]


# --- /proc --------------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found.update(int(child) for child in (task / "children").read_text().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return found


def cpu_ticks(pids) -> dict[int, int]:
    """utime + stime (clock ticks) of each of ``pids`` still running."""
    ticks = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        ticks[pid] = int(fields[11]) + int(fields[12])
    return ticks


def cpu_seconds(pids) -> float:
    return sum(cpu_ticks(pids).values()) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _gunicorn_settings(workers: int, threads: int, keepalive: int) -> dict[str, str]:
    """The gunicorn settings, under their ``VIRALSPOT_`` names and, for a ``--baseline`` checkout
    that predates them, the former ``GUNICORN_`` ones (``clean_env`` keeps neither of the caller's)."""
    settings = {"WEB_CONCURRENCY": str(workers), "GUNICORN_ACCESSLOG": ""}
    for name, value in (("THREADS", threads), ("KEEPALIVE", keepalive)):
        settings[f"VIRALSPOT_GUNICORN_{name}"] = settings[f"GUNICORN_{name}"] = str(value)
    return settings


class BenchServer:
    """gunicorn serving ``bench.bench_app:app`` from ``root`` in its own process group; stopped by
    killpg. ``keepalive`` 0 closes each connection after its response."""

    def __init__(self, database_url: str, store_url: str, log_path: str, *, workers: int, threads: int = 8,
                 keepalive: int = 2, root: Path = ROOT, snapshot_dir: Path | None = None) -> None:
        self.port = free_port()
        self.workers = workers
        env = clean_env(VIRALSPOT_DATABASE_URL=database_url, VIRALSPOT_SESSION_STORE_URL=store_url,
                        PORT=str(self.port), **_gunicorn_settings(workers, threads, keepalive))
        if snapshot_dir is not None:
            env["VIRALSPOT_ITEM_SNAPSHOT_DIR"] = str(snapshot_dir)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [bin_path("gunicorn"), "-c", str(root / "gunicorn.conf.py"), "bench.bench_app:app"], cwd=str(root),
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until /health answers 200 and every worker is forked and has loaded the app (idle CPU)."""
        import http.client

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    connection.request("GET", "/health", headers={"Connection": "close"})
                    healthy = connection.getresponse().status == 200
                finally:
                    connection.close()
                if healthy and len(self.worker_pids()) == self.workers:
                    before = cpu_ticks(self.worker_pids())
                    time.sleep(0.5)
                    if cpu_ticks(self.worker_pids()) == before:
                        return
                    continue
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not come up; see {self.log_path}")

    def worker_pids(self) -> set[int]:
        return children(self.process.pid)

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=20)
                return
            except subprocess.TimeoutExpired:
                continue
