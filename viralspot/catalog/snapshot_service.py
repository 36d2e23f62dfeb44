"""Keeping an item snapshot (``item_snapshot.py``) of the catalog's current state at hand, per process.

``current(state)`` answers the loaded snapshot when it holds that state, and
otherwise looks for its file (at most once per ``recheck`` seconds). When there
is none, one background thread writes it while pages keep reading their items
from the database. Several workers and processes on a host share the directory:
a lock file lets one of them write while the others wait for the file to appear.
After writing, the snapshots of older states are deleted (a process still
mapping one keeps its pages until it lets go).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from .item_snapshot import CatalogChanged, ItemSnapshot, SnapshotError, snapshot_name, write_snapshot

log = logging.getLogger(__name__)

LOCK_NAME = ".write.lock"
#: Seconds before writing again after a failed write (disk full, database down).
RETRY_AFTER_FAILURE = 60.0


def snapshot_directory(root: str | os.PathLike, engine: Engine) -> Path:
    """The directory of ``engine``'s snapshots under ``root``: one per database, named by its URL's hash."""
    url = engine.url.render_as_string(hide_password=True)
    return Path(root) / hashlib.sha256(url.encode()).hexdigest()[:16]


class ItemSnapshots:
    """The item snapshot of the current catalog state, for one engine; thread-safe."""

    def __init__(self, engine: Engine, directory: str | os.PathLike, *, write: bool = True,
                 recheck: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.write = write
        self.recheck = recheck
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: ItemSnapshot | None = None
        self._next_look: dict[tuple[int, int], float] = {}
        self._writer: threading.Thread | None = None
        self._next_write = 0.0

    def current(self, state: tuple[int, int]) -> ItemSnapshot | None:
        """The snapshot of ``state``, or None while it is not written (then one is being written)."""
        loaded = self._loaded
        if loaded is not None and loaded.state == state:
            return loaded
        now = self._clock()
        with self._lock:
            loaded = self._loaded
            if loaded is not None and loaded.state == state:
                return loaded
            if now < self._next_look.get(state, 0.0):
                return None
            self._next_look = {state: now + self.recheck}
            found = self._open(self.directory / snapshot_name(state))
            if found is not None:
                self._loaded = found
                return found
            if self.write and now >= self._next_write and (self._writer is None or not self._writer.is_alive()):
                self._writer = threading.Thread(target=self._write_in_background, name="item-snapshot",
                                                daemon=True)
                self._writer.start()
        return None

    @staticmethod
    def _open(path: Path) -> ItemSnapshot | None:
        try:
            return ItemSnapshot(path)
        except FileNotFoundError:
            return None
        except SnapshotError as error:
            log.warning("ignoring a damaged item snapshot: %s", error)
            return None
        except OSError as error:  # an unreadable directory or file: pages read the database
            log.warning("cannot open the item snapshot (%s); pages read items from the database",
                        type(error).__name__)
            return None

    def write_now(self) -> Path | None:
        """Write the current state's snapshot unless it exists, holding the directory's lock; its
        path, or None when another process holds the lock (it is writing one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_NAME, "a+b") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            try:
                for leftover in self.directory.glob(".items-*.tmp"):  # a writer that died: no other runs now
                    leftover.unlink(missing_ok=True)
                with self.engine.connect() as conn:
                    path = write_snapshot(conn, self.directory)
                self._delete_others(path)
                return path
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_in_background(self) -> None:
        started = time.perf_counter()
        try:
            path = self.write_now()
        except CatalogChanged as error:
            log.info("item snapshot not kept (%s); writing again on a later page", error)
            return
        except Exception as error:  # noqa: BLE001 - a background thread must log, not die silently
            with self._lock:
                self._next_write = self._clock() + RETRY_AFTER_FAILURE
            log.error("writing the item snapshot failed (%s); pages read items from the database",
                      type(error).__name__)
            return
        if path is not None:
            with self._lock:
                self._next_look = {}  # look for it on the next page
            log.info("item snapshot %s written in %.1f s (%d bytes)", path.name,
                     time.perf_counter() - started, path.stat().st_size)

    def _delete_others(self, keep: Path) -> None:
        for path in self.directory.glob("items-*.snap"):
            if path != keep:
                path.unlink(missing_ok=True)

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background write in progress (tests, the benchmark)."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout)
