"""The rendered items of one catalog version in one memory-mapped file: a page's items without a query.

A random page's 24 items are 24 random rows of the catalog. On SQLite at a
million items, reading them (``joined_item_fragments``) was the largest cost of
a page: about 280 µs, and more under threads, where each query releases and
retakes the GIL. This file holds every item's ``item_json`` so that a page is
24 slices of a shared memory map (a few microseconds), read by every worker of
the host from one copy in the OS page cache.

Layout (little-endian)::

    header   magic "VSITEMS1", format, catalog version, largest id, items, data start
    offsets  uint64[largest id + 2]: item k is data[offsets[k]:offsets[k + 1]] (empty: no item k)
    data     the items' UTF-8 JSON, in id order

A file describes exactly one catalog state, (version, largest id): writers bump
the version in the transaction of their write (``queries.bump_version``), so
the snapshot of a state is never stale for that state. ``write_snapshot`` reads
the state before and after streaming the rows and keeps the file only when
they agree: no write committed in between, so every row came from that state.
It writes a temporary file and renames it: readers never see a partial file,
and a mapped file is never rewritten in place (a file shrinking under its map
would fault the reader).
"""
from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from sqlalchemy import Connection, bindparam, select

from .queries import catalog_state
from .rendering import item_fragments
from .tables import content

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux
MAGIC = b"VSITEMS1"
FORMAT = 1
HEADER = struct.Struct("<8sQqqqQ")
#: Rows read per query while writing (keyset paging in id order).
WRITE_CHUNK = 10_000

_ROWS_AFTER = (select(content.c.id, content.c.item_json).where(content.c.id > bindparam("after"))
               .order_by(content.c.id).limit(bindparam("size")))


class SnapshotError(Exception):
    """A file that is not a complete item snapshot."""


class CatalogChanged(Exception):
    """The catalog was written while a snapshot was being written; the file was discarded."""


def snapshot_name(state: tuple[int, int]) -> str:
    """The file name of the snapshot of catalog state (version, largest id)."""
    version, largest = state
    return f"items-v{version}-n{largest}.snap"


class ItemSnapshot:
    """A read-only, memory-mapped item snapshot; thread-safe (nothing in it changes)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size < HEADER.size:
                raise SnapshotError(f"{self.path.name}: shorter than its header")
            # MAP_POPULATE maps every page at once (about 20 ms for 1.3 GB in the page cache) rather
            # than faulting on each page's first read: those faults were most of a page's cost.
            self._map = mmap.mmap(file.fileno(), 0, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
        magic, fmt, version, largest, items, data_start = HEADER.unpack_from(self._map, 0)
        if magic != MAGIC or fmt != FORMAT or largest < 0:
            self.close()
            raise SnapshotError(f"{self.path.name}: not an item snapshot of format {FORMAT}")
        if data_start != HEADER.size + 8 * (largest + 2) or data_start > size:
            self.close()
            raise SnapshotError(f"{self.path.name}: inconsistent header")
        #: (catalog version, largest id) the file holds.
        self.state = (version, largest)
        self.items = items
        self._offsets = memoryview(self._map)[HEADER.size:data_start].cast("Q")
        if data_start + self._offsets[largest + 1] != size:
            self.close()
            raise SnapshotError(f"{self.path.name}: truncated")
        self._data_start = data_start
        self._largest = largest
        #: Pages whose items came from this file (``joined`` calls); not exact under threads.
        self.pages_read = 0

    def joined(self, keys: Sequence[int]) -> tuple[bytes, int]:
        """The items of ``keys`` in their order joined by commas (a JSON list's inside), and how many;
        keys with no item are skipped, like ``rendering.joined_item_fragments``."""
        offsets, data, start, largest = self._offsets, self._map, self._data_start, self._largest
        self.pages_read += 1
        parts = []
        for key in keys:
            if 0 <= key <= largest:
                begin, end = offsets[key], offsets[key + 1]
                if end > begin:
                    parts.append(data[start + begin:start + end])
        return b",".join(parts), len(parts)

    def close(self) -> None:
        offsets = getattr(self, "_offsets", None)
        if offsets is not None:
            offsets.release()
        try:
            self._map.close()
        except BufferError:  # a page still holds a slice; the map goes with its last reference
            pass


def write_snapshot(conn: Connection, directory: str | os.PathLike) -> Path:
    """Write the snapshot of the catalog's current state into ``directory``; its path.

    An existing, sound snapshot of that state is kept as it is. Raises ``CatalogChanged``
    when a write committed meanwhile (nothing is left behind).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = catalog_state(conn)
    final = directory / snapshot_name(state)
    if final.exists():
        try:
            ItemSnapshot(final).close()
            return final
        except SnapshotError:
            pass  # damaged: written again below
    _version, largest = state
    temporary = directory / f".{final.name}.{os.getpid()}.{threading.get_ident()}.tmp"
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
            if catalog_state(conn) != state:
                raise CatalogChanged("the catalog version changed while writing")
            offsets = np.maximum.accumulate(ends)  # an id with no item ends where the one before it did
            out.seek(0)
            out.write(HEADER.pack(MAGIC, FORMAT, state[0], largest, items, data_start))
            out.write(offsets.tobytes())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
    finally:
        if temporary.exists():
            temporary.unlink()
    return final
