"""Load: random-feed traffic from many sessions against gunicorn (3 workers) over Redis.

Each session is driven by one client thread at a time (thread t owns sessions t, t + T, ...), in
generations: page k pages of 24 in order (offset 0, 24, 48, ...; k drawn per generation from the
session's own seeded generator), then ``POST /api/reset-session``; the next generation pages again.
A thread goes round its sessions one generation at a time, so all of them are live in Redis at
once. Every response is checked:

* errors: any non-200 answer (a 503 too: one thread per session means no SESSION_CONFLICT),
  a refused or dropped connection, a body that is not the documented JSON;
* repeats: an item served twice within one generation of one session;
* cleared mismatches: a reset whose ``cleared_items_count`` is not the number of items delivered
  since the session's previous reset (and ``session_found`` not true when items were delivered);
* short pages: a page of fewer than 24 items that does not say ``isLastPage``;
* stale orders: a generation whose first page equals the previous generation's first page (a
  reset must start a fresh order).

A session that saw an error is retired (what the server claimed for it is then unknown).
Latency is measured on the client, per request, from before the connection is opened (new
connection per request, the default) to the last byte of the answer.

    python -m bench.load [--seconds 30] [--sessions 2000] [--threads 32] [--workers 3] [--size 100000]
                         [--keep-alive]

Starts its own redis-server (``common.redis_server``) on a free 127.0.0.1 port and gunicorn
(``bench.bench_app:app``, the repo's gunicorn.conf.py, the catalog's item snapshot), warms up for
``--warmup`` seconds (not counted), loads for ``--seconds``, prints a markdown table, and exits 1
if any check failed. tests/test_load.py runs :func:`drive` for a bounded number of generations.
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .common import ROOT, BenchServer, cpu_ticks

LIMIT = 24
#: errors a client sees from a connection (refused, reset, closed early, malformed HTTP)
CONNECTION_ERRORS = (OSError, http.client.HTTPException)
#: failure descriptions kept per kind (the counts are complete)
SAMPLES = 5


# --- the client --------------------------------------------------------------------------------


class Client:
    """Requests to 127.0.0.1:port: a new connection each (``Connection: close``), so gunicorn hands
    each request to whichever worker accepts it, or one keep-alive connection per client thread."""

    def __init__(self, port: int, keep_alive: bool = False, timeout: float = 15.0) -> None:
        self.port = port
        self.keep_alive = keep_alive
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, params: dict) -> tuple[int, bytes, float]:
        """(status, body, seconds); raises ``CONNECTION_ERRORS``."""
        target = f"{path}?{urlencode(params)}"
        started = time.perf_counter()
        connection = self._connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            connection.request(method, target, headers={} if self.keep_alive else {"Connection": "close"})
            response = connection.getresponse()
            body = response.read()
            status = response.status
        except BaseException:
            connection.close()
            self._connection = None
            raise
        if self.keep_alive and not response.will_close:
            self._connection = connection
        else:
            connection.close()
            self._connection = None
        return status, body, time.perf_counter() - started

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# --- what one run observed ---------------------------------------------------------------------


@dataclass
class Report:
    """What a run observed; each client thread fills its own, :meth:`merge` adds them up."""

    pages: int = 0
    resets: int = 0
    items: int = 0
    generations: int = 0
    errors: int = 0
    repeats: int = 0
    cleared_mismatches: int = 0
    short_pages: int = 0
    stale_orders: int = 0
    sessions: int = 0
    retired_sessions: int = 0
    seconds: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=lambda: {"page": [], "reset": []})
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return self.pages + self.resets

    @property
    def failures(self) -> int:
        return self.errors + self.repeats + self.cleared_mismatches + self.short_pages + self.stale_orders

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def all_latencies(self) -> list[float]:
        return self.latency["page"] + self.latency["reset"]

    def percentile_ms(self, share: float, kind: str | None = None) -> float:
        values = sorted(self.latency[kind] if kind else self.all_latencies())
        if not values:
            return float("nan")
        return 1000 * values[min(len(values) - 1, int(round(share * (len(values) - 1))))]

    def note(self, kind: str, text: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        kept = self.samples.setdefault(kind, [])
        if len(kept) < SAMPLES:
            kept.append(text)

    def merge(self, other: "Report") -> None:
        for name in ("pages", "resets", "items", "generations", "errors", "repeats", "cleared_mismatches",
                     "short_pages", "stale_orders", "sessions", "retired_sessions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, values in other.latency.items():
            self.latency[kind].extend(values)
        for kind, texts in other.samples.items():
            kept = self.samples.setdefault(kind, [])
            kept.extend(texts[:max(0, SAMPLES - len(kept))])

    def failure_text(self) -> str:
        """Counts and sample descriptions of every failed check (empty when none failed)."""
        lines = []
        for kind in ("errors", "repeats", "cleared_mismatches", "short_pages", "stale_orders"):
            if getattr(self, kind):
                lines.append(f"{kind}: {getattr(self, kind)}")
                lines += [f"  {text}" for text in self.samples.get(kind, [])]
        return "\n".join(lines)

    def summary(self) -> str:
        return (f"{self.requests} requests ({self.pages} pages, {self.resets} resets) in {self.seconds:.1f} s: "
                f"{self.requests_per_second:.0f} requests/s, p50 {self.percentile_ms(0.50):.1f} ms, "
                f"p99 {self.percentile_ms(0.99):.1f} ms; {self.sessions} sessions, {self.generations} generations, "
                f"{self.items} items; failures {self.failures}")


# --- one session ------------------------------------------------------------------------------


@dataclass
class Session:
    session_id: str
    rng: random.Random
    previous_first_page: list[str] | None = None
    retired: bool = False


def _answer(client: Client, method: str, path: str, params: dict, kind: str, report: Report,
            what: str) -> dict | None:
    """The ``data`` of a 200 JSON answer, or None after noting the error."""
    try:
        status, raw, seconds = client.request(method, path, params)
    except CONNECTION_ERRORS as error:
        report.note("errors", f"{what}: {type(error).__name__}: {error}")
        return None
    report.latency[kind].append(seconds)
    if kind == "page":
        report.pages += 1
    else:
        report.resets += 1
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        report.note("errors", f"{what}: HTTP {status} {raw[:300]!r}")
        return None
    return body["data"]


def run_generation(client: Client, session: Session, report: Report, min_pages: int, max_pages: int,
                   path: str = "/api/reels") -> None:
    """Page ``k`` pages of ``session`` in order, then reset it and check the reset's count."""
    pages = session.rng.randint(min_pages, max_pages)
    seen: set[str] = set()
    delivered = 0
    sid = session.session_id
    for number in range(pages):
        offset = number * LIMIT
        what = f"{sid} GET {path} offset={offset}"
        data = _answer(client, "GET", path, {"random_order": "true", "session_id": sid, "offset": offset,
                                             "limit": LIMIT}, "page", report, what)
        if data is None:
            session.retired = True
            return
        try:
            ids = [item["id"] for item in data["reels" if path.endswith("reels") else "posts"]]
            last = data["isLastPage"]
        except (KeyError, TypeError) as error:
            report.note("errors", f"{what}: unexpected body ({error!r})")
            session.retired = True
            return
        twice = [item for item in ids if item in seen] + [item for item in set(ids) if ids.count(item) > 1]
        if twice:
            report.note("repeats", f"{what}: served again within the generation: {sorted(set(twice))[:5]}")
            report.repeats += len(set(twice)) - 1
        if number == 0:
            if session.previous_first_page is not None and ids == session.previous_first_page:
                report.note("stale_orders", f"{sid}: the first page after a reset is the previous one's")
            session.previous_first_page = ids
        seen.update(ids)
        delivered += len(ids)
        report.items += len(ids)
        if last:
            break
        if len(ids) != LIMIT:
            report.note("short_pages", f"{what}: {len(ids)} items and not isLastPage")
    what = f"{sid} POST /api/reset-session after {delivered} items"
    data = _answer(client, "POST", "/api/reset-session", {"session_id": sid}, "reset", report, what)
    if data is None:
        session.retired = True
        return
    try:
        cleared = data["session_reset"]["cleared_items_count"]
        found = data["session_reset"]["session_found"]
    except (KeyError, TypeError) as error:
        report.note("errors", f"{what}: unexpected body ({error!r})")
        session.retired = True
        return
    if cleared != delivered or found is not (delivered > 0):
        report.note("cleared_mismatches", f"{what}: cleared_items_count={cleared}, session_found={found}")
    report.generations += 1


# --- many sessions over many threads ----------------------------------------------------------


def drive(port: int, session_ids: list[str], threads: int, *, generations: int | None = None,
          seconds: float | None = None, min_pages: int = 1, max_pages: int = 8, keep_alive: bool = False,
          seed: int = 0, timeout: float | None = None, path: str = "/api/reels") -> Report:
    """Drive ``session_ids`` from ``threads`` client threads, each session by one thread: round after
    round, every session of a thread runs one generation (pages, reset), for ``generations`` rounds
    or until ``seconds`` have passed (a generation under way is finished). Raises if a thread is
    still running at ``timeout`` (default: ``seconds`` + 60, else 120 s) or raised."""
    if generations is None and seconds is None:
        raise ValueError("give generations, seconds or both")
    timeout = timeout if timeout is not None else (seconds or 60) + 60
    reports = [Report() for _ in range(threads)]
    crashes: list[BaseException] = []
    started = time.perf_counter()
    stop_at = started + seconds if seconds is not None else None

    def client_thread(index: int) -> None:
        report = reports[index]
        mine = [Session(sid, random.Random(f"{seed}:{sid}")) for sid in session_ids[index::threads]]
        report.sessions = len(mine)
        client = Client(port, keep_alive=keep_alive)
        try:
            rounds = 0
            while generations is None or rounds < generations:
                for session in mine:
                    if stop_at is not None and time.perf_counter() >= stop_at:
                        return
                    if not session.retired:
                        run_generation(client, session, report, min_pages, max_pages, path)
                rounds += 1
                if all(session.retired for session in mine):
                    return
        except BaseException as error:  # noqa: BLE001 - re-raised by drive()
            crashes.append(error)
        finally:
            report.retired_sessions = sum(session.retired for session in mine)
            client.close()

    workers = [threading.Thread(target=client_thread, args=(n,), name=f"load-client-{n}", daemon=True)
               for n in range(threads)]
    for worker in workers:
        worker.start()
    deadline = started + timeout
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - started
    stuck = [worker.name for worker in workers if worker.is_alive()]
    if stuck:
        raise AssertionError(f"load client threads still running after {timeout:.0f} s: {stuck}")
    if crashes:
        raise crashes[0]
    total = Report(seconds=elapsed)
    for report in reports:
        total.merge(report)
    return total


# --- the benchmark ----------------------------------------------------------------------------


def markdown(report: Report, *, workers: int, server_threads: int, client_threads: int, keep_alive: bool) -> str:
    lines = [
        "| workers | gunicorn threads | client threads | connections | sessions | requests | requests/s | "
        "p50 ms | p99 ms | errors | repeats | cleared mismatches |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {workers} | {server_threads} | {client_threads} | {'keep-alive' if keep_alive else 'new per request'} | "
        f"{report.sessions:,} | {report.requests:,} | {report.requests_per_second:.0f} | "
        f"{report.percentile_ms(0.50):.1f} | {report.percentile_ms(0.99):.1f} | {report.errors} | "
        f"{report.repeats} | {report.cleared_mismatches} |",
        "",
        "| request | count | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for kind, label in (("page", "random page (GET, 24 items)"), ("reset", "reset (POST)")):
        lines.append(f"| {label} | {len(report.latency[kind]):,} | {report.percentile_ms(0.50, kind):.1f} | "
                     f"{report.percentile_ms(0.99, kind):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="measured load, after the warm-up")
    parser.add_argument("--warmup", type=float, default=3, help="load not counted, other sessions")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=32, help="client threads")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--server-threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--size", type=int, default=100_000, help="catalog items (cached in bench/.data)")
    parser.add_argument("--min-pages", type=int, default=1)
    parser.add_argument("--max-pages", type=int, default=10)
    parser.add_argument("--keep-alive", action="store_true", help="one keep-alive connection per client thread")
    args = parser.parse_args(argv)

    from .common import catalog, load_average, redis_server, write_snapshot
    from .run import machine

    load_before = load_average()
    url = catalog(args.size)
    write_snapshot(url)
    log_path = os.path.join(ROOT, "bench", ".data", "load-gunicorn.log")
    with redis_server() as redis:
        server = BenchServer(url, redis.url, log_path, workers=args.workers, threads=args.server_threads)
        try:
            server.wait_ready()
            workers = server.worker_pids()
            warm = drive(server.port, [f"warm-{n}" for n in range(args.threads * 4)], args.threads,
                         seconds=args.warmup, min_pages=args.min_pages, max_pages=args.max_pages,
                         keep_alive=args.keep_alive)
            ticks_before = cpu_ticks(workers)
            load_start = load_average()
            report = drive(server.port, [f"load-{n}" for n in range(args.sessions)], args.threads,
                           seconds=args.seconds, min_pages=args.min_pages, max_pages=args.max_pages,
                           keep_alive=args.keep_alive, seed=1)
            ticks_after = cpu_ticks(workers)
            workers_after = server.worker_pids()
        finally:
            server.stop()
    load_after = load_average()

    busy = {pid: ticks_after.get(pid, 0) - ticks_before.get(pid, 0) for pid in workers}
    total_ticks = sum(busy.values()) or 1
    print(f"### Load: random feeds from many sessions, gunicorn over Redis "
          f"({datetime.date.today().isoformat()}, {machine()})\n")
    print(f"{args.size:,}-item SQLite catalog (item snapshot), /api/reels?random_order=true, pages of {LIMIT} "
          f"in order, {args.min_pages}-{args.max_pages} pages per generation then a reset; "
          f"{report.seconds:.1f} s measured after {warm.seconds:.1f} s of warm-up; client: Python threads "
          f"on the same machine.\n")
    print(markdown(report, workers=args.workers, server_threads=args.server_threads, client_threads=args.threads,
                   keep_alive=args.keep_alive))
    print(f"\n{report.generations:,} generations, {report.items:,} items delivered; short pages "
          f"{report.short_pages}, stale orders {report.stale_orders}, retired sessions {report.retired_sessions}; "
          f"worker CPU shares {', '.join(f'{share / total_ticks:.0%}' for share in sorted(busy.values()))}"
          f"{'' if workers_after == workers else ' (a worker was replaced during the run!)'}; "
          f"load average (1, 5, 15 min) before {load_before}, at the start of the measured run {load_start}, "
          f"after {load_after}.")
    if warm.failures or report.failures or workers_after != workers:
        print("\nFAILED:\n" + (warm.failure_text() + "\n" + report.failure_text()).strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
