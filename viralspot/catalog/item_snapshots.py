"""Keeping the item snapshot (``item_snapshot.py``) of the catalog's current state at hand, per process.

``current(state)`` answers the loaded snapshot when it holds that state, else looks at the file again
(at most once per ``recheck`` seconds), mapping it anew when it grew or was replaced; when the file
does not hold the state, a background thread brings it there while pages read the database. The
processes of a host share the directory: a lock file lets one of them write.
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

from .item_snapshot import SNAPSHOT_FILE, CatalogChanged, ItemSnapshot, SnapshotError, SnapshotUpdate, update_snapshot

log = logging.getLogger(__name__)

LOCK_NAME = ".write.lock"
#: Seconds before writing again after a failed write (disk full, database down).
RETRY_AFTER_FAILURE = 60.0


def snapshot_directory(root: str | os.PathLike, engine: Engine) -> Path:
    """The directory of ``engine``'s snapshots under ``root``: one per database, named by its URL's hash."""
    url = engine.url.render_as_string(hide_password=True)
    return Path(root) / hashlib.sha256(url.encode()).hexdigest()[:16]


class ItemSnapshots:
    """The item snapshot of the current catalog state, for one engine; thread-safe. A state is written
    once it stayed current ``settle`` seconds; after a ``CatalogChanged`` the wait doubles."""

    def __init__(self, engine: Engine, directory: str | os.PathLike, *, write: bool = True, recheck: float = 1.0,
                 settle: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.directory = Path(directory)
        self.write = write
        self.recheck = recheck
        self.settle = settle
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: ItemSnapshot | None = None
        self._next_look: dict[tuple[int, int], float] = {}
        #: The newest state asked for, and when this process first saw it.
        self._newest: tuple[tuple[int, int] | None, float] = (None, 0.0)
        self._writer: threading.Thread | None = None
        self._next_write = 0.0
        self._backoff = 0.0
        self._pages_read_before = 0  # by snapshots no longer loaded

    @property
    def pages_read(self) -> int:
        """Pages whose items this process read from its snapshots."""
        loaded = self._loaded
        return self._pages_read_before + (loaded.pages_read if loaded is not None else 0)

    def current(self, state: tuple[int, int]) -> ItemSnapshot | None:
        """The snapshot of ``state``, or None while it is not written (a write may start)."""
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
            if self._newest[0] != state:
                self._newest = (state, now)
        # Opened outside the lock: mapping a large file takes a while; pages of other states must not wait.
        found = self._reopen(loaded)
        with self._lock:
            if found is not None and found is not self._loaded:
                if self._loaded is not None:
                    self._pages_read_before += self._loaded.pages_read
                self._loaded = found
            if found is not None and found.state == state:
                return found
            settled = now - self._newest[1] >= self.settle and self._newest[0] == state
            if (self.write and settled and now >= self._next_write
                    and (self._writer is None or not self._writer.is_alive())):
                self._writer = threading.Thread(target=self._write_in_background, name="item-snapshot", daemon=True)
                self._writer.start()
        return None

    def _reopen(self, loaded: ItemSnapshot | None) -> ItemSnapshot | None:
        """``loaded`` while the file is still the one it maps, at the same size; else the file mapped anew."""
        path = self.directory / SNAPSHOT_FILE
        try:
            if loaded is not None:
                stat = os.stat(path)
                if (stat.st_dev, stat.st_ino, stat.st_size) == loaded.identity:
                    return loaded
            return ItemSnapshot(path)
        except FileNotFoundError:
            return None
        except SnapshotError as error:
            log.warning("ignoring a damaged item snapshot: %s", error)
        except OSError as error:  # an unreadable directory or file: pages read the database
            log.warning("cannot open the item snapshot (%s); pages read items from the database", type(error).__name__)
        return None

    def write_now(self) -> SnapshotUpdate | None:
        """``update_snapshot`` under the directory's lock; None when another process holds it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_NAME, "a+b") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            try:
                for leftover in self.directory.glob(".items*.tmp"):  # a writer that died: no other runs now
                    leftover.unlink(missing_ok=True)
                for legacy in self.directory.glob("items-*.snap"):  # format 1: a file per state
                    legacy.unlink(missing_ok=True)
                with self.engine.connect() as conn:
                    return update_snapshot(conn, self.directory)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_in_background(self) -> None:
        started = time.perf_counter()
        try:
            update = self.write_now()
        except CatalogChanged as error:
            with self._lock:
                self._backoff = min(RETRY_AFTER_FAILURE, max(self.settle, 1.0, self._backoff * 2))
                self._next_write = self._clock() + self._backoff
            log.info("item snapshot not kept (%s); writing again in %.0f s at the earliest", error, self._backoff)
            return
        except Exception as error:  # noqa: BLE001 - a background thread must log, not die silently
            with self._lock:
                self._next_write = self._clock() + RETRY_AFTER_FAILURE
            log.error("writing the item snapshot failed (%s); pages read items from the database", type(error).__name__)
            return
        with self._lock:
            self._backoff = 0.0
            if update is not None:
                self._next_look = {}  # look for it on the next page
        if update is not None:
            log.info("item snapshot %s: %s %d items (%d bytes) in %.2f s", update.path.name, update.action,
                     update.items, update.bytes, time.perf_counter() - started)
