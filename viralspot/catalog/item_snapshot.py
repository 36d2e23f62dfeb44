"""The rendered items of the catalog in one memory-mapped, append-only file: a page's items without a query.

A random page's 24 items are 24 random rows of the catalog. On SQLite at a
million items, reading them (``joined_item_fragments``) was the largest cost of
a page: about 280 µs, and more under threads, where each query releases and
retakes the GIL. This file holds every item's ``item_json`` so that a page is
24 slices of a shared memory map (a few microseconds), read by every worker of
the host from one copy in the OS page cache.

Layout (little-endian)::

    base    header   magic "VSITEMS2", format, epoch, version, largest id, items, data start
            offsets  uint64[largest id + 2]: item k is data[offsets[k]:offsets[k + 1]] (empty: no item k)
            data     the items' UTF-8 JSON, in id order
    delta   header   magic "VSDELTA2", version, largest id, count, data length     (zero or more,
            keys     uint64[count]                                                    appended, one
            ends     uint64[count]: key i's item is data[ends[i - 1]:ends[i]]         per later
            data     the items' UTF-8 JSON                                            catalog state)
            trailer  magic "VSDEND02", CRC-32 of the delta from its header on

**A catalog write appends; it does not rewrite the file.** Every writer stamps
the rows it renders with the version of its transaction (``content.item_version``,
from ``queries.bump_version``), so the items that changed since the file's state
are the rows whose ``item_version`` is newer, found through an index. A delta
holds exactly those; an item in a delta replaces the same key's earlier item.
Deletes are not visible that way, so writers that delete draw a new catalog
epoch (``queries.new_epoch``) and the file is then written whole, as it is when
the deltas would outgrow ``APPEND_LIMIT`` of the base (readers keep the deltas'
keys in a dict) or when the file's tail is damaged.

A file describes the catalog state (version, largest id) of its last complete
delta, or of its base. The writer reads the state before and after reading the
rows and keeps what it wrote only when they agree: no write committed between,
so every row came from that state (a delta is built in memory and appended only
then). Nothing is ever changed in place, and a file is never truncated: readers
map the file as it was when they opened it, ignore a delta still being written
(short or without its trailer), and a whole rewrite goes to a temporary file
renamed over the old one, which mapped readers keep until they let go.
"""
from __future__ import annotations

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
#: Deltas may hold at most this share of the base's items (counted with repeats) and of its bytes,
#: and at least ``APPEND_FLOOR`` items; past that the file is written whole.
APPEND_LIMIT = 1 / 16
APPEND_FLOOR = 1_000

_ROWS_AFTER = (select(content.c.id, content.c.item_json).where(content.c.id > bindparam("after"))
               .order_by(content.c.id).limit(bindparam("size")))
_CHANGED_SINCE = (select(content.c.id).where(content.c.item_version > bindparam("version"))
                  .order_by(content.c.id))


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
            # MAP_POPULATE maps every page at once (about 20 ms for 1.3 GB in the page cache) rather
            # than faulting on each page's first read: those faults were most of a page's cost.
            flags = mmap.MAP_SHARED | (_POPULATE if populate else 0)
            self._map = mmap.mmap(file.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        #: Which file and how much of it this map holds: it is reopened once either changes.
        self.identity = (stat.st_dev, stat.st_ino, size)
        magic, fmt, epoch, version, largest, items, data_start = HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or fmt != FORMAT or largest < 0:
            self.close()
            raise SnapshotError(f"{self.path.name}: not an item snapshot of format {FORMAT}")
        if data_start != HEADER.size + 8 * (largest + 2) or data_start > size:
            self.close()
            raise SnapshotError(f"{self.path.name}: inconsistent header")
        self.epoch = epoch
        self._offsets = memoryview(self._map)[HEADER.size:data_start].cast("Q")
        base_end = data_start + self._offsets[largest + 1]
        if base_end > size:
            self.close()
            raise SnapshotError(f"{self.path.name}: truncated")
        self._data_start = data_start
        self._base_largest = largest
        self.base_items, self.base_bytes = items, base_end - data_start
        #: Key -> (start, end) in the map, for every key a delta wrote (the newest delta wins).
        self._overlay: dict[int, tuple[int, int]] = {}
        self.delta_items = self.delta_bytes = self.deltas = 0
        #: (catalog version, largest id) the file holds, and its item count.
        self.state = (version, largest)
        self.items = items
        #: Where the last complete delta ends; less than the size while a delta is being appended
        #: (or when a writer died in the middle of one).
        self.end = self._read_deltas(base_end, size)
        #: Pages whose items came from this file (``joined`` calls); not exact under threads.
        self.pages_read = 0

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
            begin = data_at
            for key, end in zip(keys, ends):
                had = self._has_item(key)
                span = (begin, data_at + end)
                self._overlay[key] = span
                self.items += (span[1] > span[0]) - had
                begin = data_at + end
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
        """The items of ``keys`` in their order joined by commas (a JSON list's inside), and how many;
        keys with no item are skipped, like ``rendering.joined_item_fragments``."""
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
        try:
            self._map.close()
        except BufferError:  # a page still holds a slice; the map goes with its last reference
            pass


def open_snapshot(path: Path, *, populate: bool = True) -> ItemSnapshot | None:
    """The snapshot at ``path``, or None when there is none or it is not a sound base."""
    try:
        return ItemSnapshot(path, populate=populate)
    except (FileNotFoundError, SnapshotError):
        return None


def update_snapshot(conn: Connection, directory: str | os.PathLike) -> SnapshotUpdate:
    """Bring ``directory``'s snapshot to the catalog's current state: keep it when it is current,
    append the items written since its state when it can, else write it whole.

    The caller holds the directory's write lock (``item_snapshots``). Raises ``CatalogChanged``
    when a write committed meanwhile; the file is then as it was.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SNAPSHOT_FILE
    state, epoch = catalog_state_and_epoch(conn)
    existing = open_snapshot(path, populate=False)
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


def _append_changes(conn: Connection, snapshot: ItemSnapshot, state, epoch: int) -> SnapshotUpdate | None:
    """Append the items written since ``snapshot``'s state as one delta; None when they are too many
    to append (the caller writes the file whole)."""
    changed = conn.execute(_CHANGED_SINCE, {"version": snapshot.state[0]}).scalars().all()
    allowed_items = max(APPEND_FLOOR, int(snapshot.base_items * APPEND_LIMIT))
    if snapshot.delta_items + len(changed) > allowed_items:
        return None
    texts = item_fragments(conn, changed)  # unrendered rows are built live, as reads do
    if len(texts) != len(changed):
        raise CatalogChanged("rows disappeared while writing")
    encoded = [text.encode() for text in texts]
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
    descriptor = os.open(snapshot.path, os.O_WRONLY | os.O_APPEND)
    try:
        if os.fstat(descriptor).st_size != snapshot.end:  # never write after anything partial
            return None
        written = 0
        while written < len(delta):
            written += os.write(descriptor, delta[written:])
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
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
            while True:
                rows = conn.execute(_ROWS_AFTER, {"after": after, "size": WRITE_CHUNK}).all()
                if not rows:
                    break
                after = rows[-1][0]
                if after > largest:
                    raise CatalogChanged("rows past the largest id appeared while writing")
                ids = [row[0] for row in rows]
                texts = [row[1] for row in rows]
                if any(text is None for text in texts):
                    texts = item_fragments(conn, ids)  # unrendered rows are built live, as reads do
                    if len(texts) != len(ids):
                        raise CatalogChanged("rows disappeared while writing")
                encoded = [text.encode() for text in texts]
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
