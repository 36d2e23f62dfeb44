"""Helpers for the end-to-end tests under real gunicorn (tests/test_multiprocess.py).

* ``seed_catalog(url)``: the fixed sample catalog (1,500 items, seed 7) in a SQLite file.
* ``GunicornServer``: ``gunicorn -c gunicorn.conf.py wsgi:app`` in its own process group on a free
  127.0.0.1 port, with the repo's config and ``VIRALSPOT_*`` settings from the arguments only;
  ``worker_pids()`` reads the master's children from /proc; ``stop()`` ends the whole group.
* ``call()`` / ``page()``: one HTTP request on a new connection (``Connection: close``), standard
  library only, so gunicorn accepts each request anew and any worker may serve it.
* ``cpu_ticks()`` / ``serving_connections()``: per-worker facts from /proc (CPU used, sockets of
  requests in flight), to show which workers served traffic and which one is mid-request.
* ``run_threads()``: runs callables in threads, joins them with a deadline, re-raises their errors.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is a package at the repo root, not installed
    sys.path.insert(0, str(ROOT))

from bench.common import cpu_ticks  # noqa: E402  (one /proc reader for the benchmarks and the tests)
SECRET = "multiprocess-test-secret-7b1f0c"
SEED_ARGS = ["content", "seed", "--items", "1500", "--seed", "7", "--no-progress",
             "--reference-date", "2026-11-01T00:00:00Z"]
#: errors a client sees when the worker holding its connection dies
CONNECTION_ERRORS = (OSError, http.client.HTTPException)


def gunicorn_binary() -> str:
    found = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    return found or str(ROOT / ".venv" / "bin" / "gunicorn")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_catalog(database_url: str) -> None:
    """Seed the sample catalog into ``database_url`` (in process, through the CLI command)."""
    from viralspot import create_app

    app = create_app({"CONFIG": "testing", "DATABASE_URL": database_url})
    try:
        result = app.test_cli_runner().invoke(args=SEED_ARGS)
        assert result.exit_code == 0, result.output
    finally:
        app.extensions["viralspot.catalog"].dispose()
        app.extensions["viralspot.session_store"].close()


# --- HTTP -----------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: dict | None
    seconds: float

    @property
    def data(self) -> dict:
        return self.body["data"]

    @property
    def error_code(self) -> str | None:
        return (self.body or {}).get("error_code")


def call(port: int, method: str, path: str, params: dict | None = None, timeout: float = 15.0) -> Reply:
    """One request on a new connection; raises the connection's errors (``CONNECTION_ERRORS``)."""
    target = path + ("?" + urlencode(params) if params else "")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        connection.request(method, target, headers={"Connection": "close"})
        response = connection.getresponse()
        raw = response.read()
        status = response.status
    finally:
        connection.close()
    seconds = time.monotonic() - started
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = {"unparsed": raw[:500].decode("utf-8", "replace")}
    return Reply(status, body, seconds)


def page_params(session: str, offset: int, limit: int, filters: dict | None = None) -> dict:
    return {"random_order": "true", "session_id": session, "offset": offset, "limit": limit, **(filters or {})}


def items_of(reply: Reply) -> list[str]:
    data = reply.data
    return [item["id"] for item in data.get("reels", data.get("posts", []))]


def page(port: int, path: str, session: str, offset: int, limit: int, filters: dict | None = None,
         conflict_retries: int = 5) -> tuple[list[str], bool]:
    """(item ids, isLastPage) of a random page; asserts 200. A 503 SESSION_CONFLICT (documented as
    "retry") is retried a bounded number of times."""
    for _attempt in range(conflict_retries + 1):
        reply = call(port, "GET", path, page_params(session, offset, limit, filters))
        if reply.status == 503 and reply.error_code == "SESSION_CONFLICT":
            continue
        assert reply.status == 200, (path, session, offset, limit, filters, reply)
        return items_of(reply), reply.data["isLastPage"]
    raise AssertionError(f"SESSION_CONFLICT {conflict_retries + 1} times in a row: {path} {session} {offset}")


def plain_ids(port: int, path: str, filters: dict | None = None, max_pages: int = 100) -> list[str]:
    """Every item matching ``filters`` on ``path``, by plain (non-random) pages of 100."""
    ids: list[str] = []
    for number in range(max_pages):
        reply = call(port, "GET", path, {"limit": 100, "offset": number * 100, **(filters or {})})
        assert reply.status == 200, reply
        ids += items_of(reply)
        if reply.data["isLastPage"]:
            assert len(ids) == len(set(ids)), f"plain listing of {path} {filters} repeats items"
            return ids
    raise AssertionError(f"plain listing of {path} {filters} did not end within {max_pages} pages")


# --- gunicorn -------------------------------------------------------------------------------


class GunicornServer:
    """One gunicorn master (and its workers) in its own process group."""

    def __init__(self, log_dir: Path, *, database_url: str, store_url: str, workers: int, threads: int,
                 name: str = "gunicorn", secret: str = SECRET, extra_env: dict | None = None) -> None:
        self.log_path = Path(log_dir) / f"{name}.log"
        self.workers = workers
        self.port = 0
        self.process: subprocess.Popen | None = None
        env = {key: value for key, value in os.environ.items() if not key.startswith("VIRALSPOT_")}
        env.update({
            "WEB_CONCURRENCY": str(workers), "VIRALSPOT_GUNICORN_THREADS": str(threads), "GUNICORN_ACCESSLOG": "",
            "VIRALSPOT_CONFIG": "default", "VIRALSPOT_DATABASE_URL": database_url,
            "VIRALSPOT_SESSION_STORE_URL": store_url, "VIRALSPOT_SECRET_KEY": secret,
            "VIRALSPOT_ITEM_SNAPSHOT_DIR": "", "VIRALSPOT_LOG_LEVEL": "WARNING",
            # One test client sends more than a real client would; the rate-limit tests set theirs.
            "VIRALSPOT_RATE_LIMIT": "", "VIRALSPOT_RESET_RATE_LIMIT": "",
            **(extra_env or {}),
        })
        self.env = env

    # lifecycle

    def launch(self) -> None:
        """Start the master (no waiting)."""
        self.port = free_port()
        self.env["PORT"] = str(self.port)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [gunicorn_binary(), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"], cwd=str(ROOT),
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /health answers 200, every worker is forked and every worker has finished loading
        (its CPU time stopped growing). Relaunches on another port if the port was taken meanwhile."""
        deadline = time.monotonic() + timeout
        for _attempt in range(3):
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    if call(self.port, "GET", "/health", timeout=2).status == 200:
                        self.wait_workers(self.workers, timeout=max(1.0, deadline - time.monotonic()))
                        self.wait_quiet(timeout=max(1.0, deadline - time.monotonic()))
                        return
                except CONNECTION_ERRORS:
                    pass
                time.sleep(0.1)
            if self.process.poll() is None or "in use" not in self.log_tail():
                break
            self.launch()  # lost the port to another process: try another
        raise AssertionError(f"gunicorn on port {self.port} did not come up; log:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group (master and workers), SIGKILL it after 10 s."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive the master (a worker busy at SIGTERM): make sure nothing stays
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> "GunicornServer":
        try:
            self.launch()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # workers

    def worker_pids(self) -> set[int]:
        """The master's children (its workers), from /proc/<master>/task/*/children."""
        pids: set[int] = set()
        task_dir = Path(f"/proc/{self.process.pid}/task")
        try:
            tasks = list(task_dir.iterdir())
        except FileNotFoundError:
            return pids
        for task in tasks:
            try:
                pids.update(int(pid) for pid in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
        return {pid for pid in pids if is_alive(pid)}

    def wait_workers(self, count: int, exclude: Iterable[int] = (), timeout: float = 30.0) -> set[int]:
        """Until the master has exactly ``count`` workers, none of them in ``exclude``."""
        exclude = set(exclude)
        deadline = time.monotonic() + timeout
        pids = self.worker_pids()
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) == count and not pids & exclude:
                return pids
            time.sleep(0.05)
        raise AssertionError(f"expected {count} workers (none of {sorted(exclude)}), have {sorted(pids)}; "
                             f"log:\n{self.log_tail()}")

    def wait_quiet(self, timeout: float = 30.0, interval: float = 0.25) -> None:
        """Until no worker's CPU time grows over ``interval`` (each has loaded the app and idles)."""
        deadline = time.monotonic() + timeout
        before = cpu_ticks(self.worker_pids())
        while time.monotonic() < deadline:
            time.sleep(interval)
            after = cpu_ticks(self.worker_pids())
            if after == before and len(after) == self.workers:
                return
            before = after
        raise AssertionError(f"workers kept busy for {timeout} s after start-up; log:\n{self.log_tail()}")

    def log_tail(self, size: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""


def is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def serving_connections(pid: int, port: int) -> int:
    """Established TCP connections on ``port`` (requests being served) held by process ``pid``."""
    try:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    count = 0
    for line in table:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


# --- threads --------------------------------------------------------------------------------


def start_threads(targets: list[Callable[[], None]]) -> tuple[list[threading.Thread], list[BaseException]]:
    """Start each callable in its own thread; the list collects what they raise."""
    errors: list[BaseException] = []

    def wrap(target):
        def run():
            try:
                target()
            except BaseException as error:  # noqa: BLE001 - the caller re-raises it
                errors.append(error)
        return run

    threads = [threading.Thread(target=wrap(target), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads, errors


def run_threads(targets: list[Callable[[], None]], timeout: float) -> None:
    """Run each callable in its own thread; fail if one raises or any is still running at ``timeout``."""
    threads, errors = start_threads(targets)
    join_all(threads, timeout)
    if errors:
        raise errors[0]


def join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [thread.name for thread in threads if thread.is_alive()]
    assert not stuck, f"client threads still running after {timeout} s: {stuck}"
