"""The rendered items of the catalog in one memory-mapped, append-only file: a page's items without a query,
as slices of a map every worker of the host shares through the OS page cache.

Layout (little-endian)::

    base    header   magic "VSITEMS2", format, epoch, version, largest id, items, data start
            offsets  uint64[largest id + 2]: item k is data[offsets[k]:offsets[k + 1]] (empty: no item k)
            data     the items' UTF-8 JSON, in id order
    delta   header   magic "VSDELTA2", version, largest id, count, data length     (zero or more,
            keys     uint64[count]                                                    appended, one
            ends     uint64[count]: key i's item is data[ends[i - 1]:ends[i]]         per later
            data     the items' UTF-8 JSON                                            catalog state)
            trailer  magic "VSDEND02", CRC-32 of the delta from its header on

A catalog write appends a delta: the rows whose ``item_version`` is newer than the file's state.
A new catalog epoch (rows were deleted), deltas outgrowing ``APPEND_LIMIT`` or a damaged tail get
the file written whole, to a temporary file renamed over it. A writer keeps what it wrote only when
the catalog state read before and after the rows agree; readers ignore a delta still being written.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from sqlalchemy import Connection, bindparam, select

from .queries import catalog_state_and_epoch
from .rendering import item_fragments
from .tables import content

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux
#: The one snapshot file of a catalog's directory.
SNAPSHOT_FILE = "items.snap"
MAGIC = b"VSITEMS2"
FORMAT = 2
HEADER = struct.Struct("<8sQqqqqQ")
DELTA_MAGIC, DELTA_END = b"VSDELTA2", b"VSDEND02"
DELTA_HEADER = struct.Struct("<8sqqQQ")
DELTA_TRAILER = struct.Struct("<8sQ")
#: Rows read per query while writing (keyset paging in id order).
WRITE_CHUNK = 10_000
#: Deltas may hold this share of the base's items and bytes (at least ``APPEND_FLOOR`` items).
APPEND_LIMIT = 1 / 16
APPEND_FLOOR = 1_000

_ROWS_AFTER = (select(content.c.id, content.c.item_json).where(content.c.id > bindparam("after"))
               .order_by(content.c.id).limit(bindparam("size")))
_CHANGED_SINCE = select(content.c.id).where(content.c.item_version > bindparam("version")).order_by(content.c.id)


class SnapshotError(Exception):
    """A file that is not an item snapshot of this format."""


class CatalogChanged(Exception):
    """The catalog was written while a snapshot was being written; nothing was kept."""


class SnapshotUpdate(NamedTuple):
    """What ``update_snapshot`` did: ``kept`` (already current), ``appended`` or ``written`` (whole)."""

    path: Path
    action: str
    items: int
    bytes: int


class ItemSnapshot:
    """A read-only, memory-mapped item snapshot as its file was when opened; thread-safe."""

    def __init__(self, path: str | os.PathLike, *, populate: bool = True) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as file:
            stat = os.fstat(file.fileno())
            size = stat.st_size
            if size < HEADER.size:
                raise SnapshotError(f"{self.path.name}: shorter than its header")
            # MAP_POPULATE maps every page at once rather than faulting on each page's first read.
            flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
            self._map = mmap.mmap(file.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        #: Which file and how much of it this map holds: it is reopened once either changes.
        self.identity = (stat.st_dev, stat.st_ino, size)
        magic, fmt, epoch, version, largest, items, data_start = HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or fmt != FORMAT or largest < 0:
            self._fail(f"not an item snapshot of format {FORMAT}")
        if data_start != HEADER.size + 8 * (largest + 2) or data_start > size:
            self._fail("inconsistent header")
        self.epoch = epoch
        self._offsets = memoryview(self._map)[HEADER.size:data_start].cast("Q")
        base_end = data_start + self._offsets[largest + 1]
        if base_end > size:
            self._fail("truncated")
        self._data_start = data_start
        self._base_largest = largest
        self.base_items, self.base_bytes = items, base_end - data_start
        #: Key -> (start, end) in the map, for every key a delta wrote (the newest delta wins).
        self._overlay: dict[int, tuple[int, int]] = {}
        self.delta_items = self.delta_bytes = self.deltas = 0
        #: (catalog version, largest id) the file holds, and its item count.
        self.state = (version, largest)
        self.items = items
        #: Where the last complete delta ends (less than the size while one is being appended).
        self.end = self._read_deltas(base_end, size)
        #: Pages whose items came from this file (``joined`` calls); not exact under threads.
        self.pages_read = 0

    def _fail(self, problem: str) -> None:
        self.close()
        raise SnapshotError(f"{self.path.name}: {problem}")

    @property
    def complete(self) -> bool:
        """Whether the map ends exactly after its last complete delta (nothing partial follows)."""
        return self.end == self.identity[2]

    def _read_deltas(self, position: int, size: int) -> int:
        data = self._map
        while position + DELTA_HEADER.size <= size:
            magic, version, largest, count, length = DELTA_HEADER.unpack_from(data, position)
            keys_at = position + DELTA_HEADER.size
            data_at = keys_at + 16 * count
            trailer_at = data_at + length
            if magic != DELTA_MAGIC or trailer_at + DELTA_TRAILER.size > size:
                break
            end_magic, checksum = DELTA_TRAILER.unpack_from(data, trailer_at)
            if end_magic != DELTA_END or zlib.crc32(memoryview(data)[position:trailer_at]) != checksum:
                break
            keys = np.frombuffer(data, dtype="<u8", count=count, offset=keys_at).tolist()
            ends = np.frombuffer(data, dtype="<u8", count=count, offset=keys_at + 8 * count).tolist()
            for key, begin, end in zip(keys, [0, *ends], ends):
                self.items += (end > begin) - self._has_item(key)
                self._overlay[key] = (data_at + begin, data_at + end)
            self.state = (version, largest)
            self.delta_items += count
            self.delta_bytes += length
            self.deltas += 1
            position = trailer_at + DELTA_TRAILER.size
        return position

    def _has_item(self, key: int) -> bool:
        span = self._overlay.get(key)
        if span is not None:
            return span[1] > span[0]
        return 0 <= key <= self._base_largest and self._offsets[key + 1] > self._offsets[key]

    def joined(self, keys: Sequence[int]) -> tuple[bytes, int]:
        """The items of ``keys`` in their order joined by commas, and how many (keys with none skipped)."""
        offsets, data, start, largest = self._offsets, self._map, self._data_start, self._base_largest
        overlay = self._overlay
        self.pages_read += 1
        parts = []
        for key in keys:
            span = overlay.get(key) if overlay else None
            if span is not None:
                begin, end = span
            elif 0 <= key <= largest:
                begin, end = start + offsets[key], start + offsets[key + 1]
            else:
                continue
            if end > begin:
                parts.append(data[begin:end])
        return b",".join(parts), len(parts)

    def close(self) -> None:
        offsets = getattr(self, "_offsets", None)
        if offsets is not None:
            offsets.release()
        with contextlib.suppress(BufferError):  # a page still holds a slice; the map goes with its last reference
            self._map.close()


def update_snapshot(conn: Connection, directory: str | os.PathLike) -> SnapshotUpdate:
    """Bring ``directory``'s snapshot to the current state: keep, append to or write it whole. The caller
    holds the directory's lock. ``CatalogChanged`` when a write committed meanwhile (the file unchanged)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SNAPSHOT_FILE
    state, epoch = catalog_state_and_epoch(conn)
    try:
        existing = ItemSnapshot(path, populate=False)
    except (FileNotFoundError, SnapshotError):
        existing = None
    try:
        if existing is not None and existing.complete and existing.epoch == epoch:
            if existing.state == tuple(state):
                return SnapshotUpdate(path, "kept", 0, 0)
            version, largest = existing.state
            if version < state.version and largest <= state.largest_key:
                appended = _append_changes(conn, existing, state, epoch)
                if appended is not None:
                    return appended
    finally:
        if existing is not None:
            existing.close()
    return _write_whole(conn, path, state, epoch)


def _encoded(conn: Connection, ids: list[int], texts: list[str | None] | None = None) -> list[bytes]:
    """The UTF-8 items of ``ids``; unrendered ones (or all, without ``texts``) read as reads do."""
    if texts is None or None in texts:
        texts = item_fragments(conn, ids)
        if len(texts) != len(ids):
            raise CatalogChanged("rows disappeared while writing")
    return [text.encode() for text in texts]


def _append_changes(conn: Connection, snapshot: ItemSnapshot, state, epoch: int) -> SnapshotUpdate | None:
    """Append the items written since ``snapshot``'s state as one delta; None when too many."""
    changed = conn.execute(_CHANGED_SINCE, {"version": snapshot.state[0]}).scalars().all()
    allowed_items = max(APPEND_FLOOR, int(snapshot.base_items * APPEND_LIMIT))
    if snapshot.delta_items + len(changed) > allowed_items:
        return None
    encoded = _encoded(conn, changed)
    if catalog_state_and_epoch(conn) != (state, epoch):
        raise CatalogChanged("the catalog version changed while writing")
    data = b"".join(encoded)
    if snapshot.delta_bytes + len(data) > max(snapshot.base_bytes * APPEND_LIMIT, 1 << 20):
        return None
    keys = np.asarray(changed, dtype="<u8")
    ends = np.cumsum(np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded)), dtype="<u8")
    body = (DELTA_HEADER.pack(DELTA_MAGIC, state.version, state.largest_key, len(changed), len(data))
            + keys.tobytes() + ends.tobytes() + data)
    delta = body + DELTA_TRAILER.pack(DELTA_END, zlib.crc32(body))
    with open(snapshot.path, "ab") as out:
        if os.fstat(out.fileno()).st_size != snapshot.end:  # never write after anything partial
            return None
        out.write(delta)
        out.flush()
        os.fsync(out.fileno())
    return SnapshotUpdate(snapshot.path, "appended", len(changed), len(delta))


def _write_whole(conn: Connection, final: Path, state, epoch: int) -> SnapshotUpdate:
    largest = state.largest_key
    temporary = final.with_name(f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    ends = np.zeros(largest + 2, dtype="<u8")  # ends[k + 1]: where item k ends (0: no item k yet)
    data_start = HEADER.size + 8 * (largest + 2)
    written = items = 0
    try:
        with open(temporary, "wb") as out:
            out.seek(data_start)
            after = 0
            while rows := conn.execute(_ROWS_AFTER, {"after": after, "size": WRITE_CHUNK}).all():
                after = rows[-1][0]
                if after > largest:
                    raise CatalogChanged("rows past the largest id appeared while writing")
                ids = [row[0] for row in rows]
                encoded = _encoded(conn, ids, [row[1] for row in rows])
                out.write(b"".join(encoded))
                lengths = np.fromiter(map(len, encoded), dtype="<u8", count=len(encoded))
                ends[np.asarray(ids, dtype=np.int64) + 1] = written + np.cumsum(lengths, dtype="<u8")
                written += int(lengths.sum())
                items += len(ids)
            if catalog_state_and_epoch(conn) != (state, epoch):
                raise CatalogChanged("the catalog version changed while writing")
            offsets = np.maximum.accumulate(ends)  # an id with no item ends where the one before it did
            out.seek(0)
            out.write(HEADER.pack(MAGIC, FORMAT, epoch, state.version, largest, items, data_start))
            out.write(offsets.tobytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()
    return SnapshotUpdate(final, "written", items, data_start + written)
