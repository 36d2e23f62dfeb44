"""Items rendered once, at write time: ``content.item_json``.

Items are read far more often than they are written, and building one (about
36 columns through SQLAlchemy, ``serialize_item``, then JSON) was most of a
page's cost. So every write of the catalog also renders the items it touches,
and a page is the stored JSON fragments spliced into the envelope
(``content/page_response.py``).

The invariant: ``item_json`` always equals ``encode_item(serialize_item(row))``
for the current content row joined with its author's profile, or is NULL. Every
writer keeps it, inside the transaction of its write, so nothing is ever served
half-written:

* the seed renders each row as it generates it (``seed.py``);
* the import re-renders the rows it upserted and every row of each profile it
  changed, since the profile's fields (followers, bio, ...) are part of the item
  (``importer.py``);
* ``flask content render`` renders every row, to upgrade a catalog written
  before the column existed (``database.py`` adds the column at start-up).

Reads never write: ``item_fragments`` builds a NULL row's item live.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable, Sequence

from sqlalchemy import Connection, bindparam, select

from ..schemas.items import serialize_item
from .key_lookup import KeyLookupCache
from .queries import (ITEM_COLUMNS, ITEMS_BY_KEYS, KEY_CHUNK, PACKED_FRAGMENTS, PROFILE_COLUMNS, items_by_keys,
                      rows_for_keys, unpack_fragments)
from .tables import content, primary_profiles

#: Rows rendered per UPDATE executemany.
RENDER_CHUNK = 5000


def encode_item(item: dict) -> str:
    """The one encoding of a rendered item: compact JSON, UTF-8 text (not ASCII-escaped)."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def render_row(row) -> str:
    """``item_json`` of one row mapping (content columns with its profile's columns)."""
    return encode_item(serialize_item(row))


_UPDATE = (content.update().where(content.c.id == bindparam("row_id"))
           .values(item_json=bindparam("rendered")))
_JOINED = content.outerjoin(primary_profiles, primary_profiles.c.id == content.c.profile_id)
#: Every row in id order, one chunk after ``after`` at a time (keyset paging: no cursor held across UPDATEs).
_ALL_AFTER = (select(*ITEM_COLUMNS, *PROFILE_COLUMNS).select_from(_JOINED)
              .where(content.c.id > bindparam("after")).order_by(content.c.id).limit(bindparam("size")))
_IDS_OF_PROFILES = select(content.c.id).where(content.c.profile_id.in_(bindparam("profiles", expanding=True)))


def _write(conn: Connection, rows) -> int:
    params = [{"row_id": row["id"], "rendered": render_row(row)} for row in rows]
    if params:
        conn.execute(_UPDATE, params)
    return len(params)


def render_items(conn: Connection, *, content_ids: Iterable[int] | None = None,
                 profile_ids: Iterable[int] | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
    """(Re)render ``item_json`` of the given rows in the caller's transaction; the number rendered.

    The rows are those of ``content_ids`` plus every row of ``profile_ids``;
    every row when both are None. ``progress`` is called with each chunk's count.
    """
    rendered = 0
    if content_ids is None and profile_ids is None:
        after = 0
        while True:
            rows = conn.execute(_ALL_AFTER, {"after": after, "size": RENDER_CHUNK}).mappings().all()
            if not rows:
                return rendered
            rendered += _write(conn, rows)
            after = rows[-1]["id"]
            if progress:
                progress(len(rows))
    ids = {int(key) for key in content_ids or ()}
    ids.update(row[0] for row in rows_for_keys(conn, _IDS_OF_PROFILES, profile_ids or (), name="profiles"))
    ordered = sorted(ids)
    for start in range(0, len(ordered), KEY_CHUNK):
        rows = conn.execute(ITEMS_BY_KEYS, {"keys": ordered[start:start + KEY_CHUNK]}).mappings().all()
        rendered += _write(conn, rows)
        if progress:
            progress(len(rows))
    return rendered


_LOOKUPS = KeyLookupCache(size=8)


def item_fragments(conn: Connection, keys: Sequence[int]) -> list[str]:
    """The ``item_json`` of ``keys`` in their order, missing ids skipped.

    A row whose ``item_json`` is NULL (written before the column existed, not yet
    rendered) is built live from the row; nothing is written here.
    """
    ordered = [int(key) for key in keys]
    lookup = _LOOKUPS.get("fragments", conn.dialect, lambda: select(PACKED_FRAGMENTS))
    by_id: dict[int, str | None] = dict(unpack_fragments(lookup.rows(conn, ordered)))
    missing = [key for key, fragment in by_id.items() if fragment is None]
    if missing:
        for row in items_by_keys(conn, missing):
            by_id[row["id"]] = render_row(row)
    return [by_id[key] for key in ordered if key in by_id]
