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

The catalog renders the API's item shape (``catalog/items.py``) at write time: that is what lets
a page splice stored JSON instead of building 24 items per request.

A page needs its items as one JSON list, in its keys' order: ``joined_item_fragments``
has the database join them (one string, no per-item work in Python); the ids it
joins alongside in the same pass prove the order, which SQLite's
``group_concat`` does not promise (an out-of-order answer is rebuilt by key).
"""
from __future__ import annotations

import functools

import json
from typing import Callable, Iterable, Sequence

from sqlalchemy import Connection, Text, bindparam, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from .items import serialize_item
from .key_lookup import KEYS, encode_keys, key_condition, keys_parameter
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
           .values(item_json=bindparam("rendered"), item_version=bindparam("version")))
_JOINED = content.outerjoin(primary_profiles, primary_profiles.c.id == content.c.profile_id)
#: Every row in id order, one chunk after ``after`` at a time (keyset paging: no cursor held across UPDATEs).
_ALL_AFTER = (select(*ITEM_COLUMNS, *PROFILE_COLUMNS, content.c.item_json).select_from(_JOINED)
              .where(content.c.id > bindparam("after")).order_by(content.c.id).limit(bindparam("size")))
_BY_KEYS = ITEMS_BY_KEYS.add_columns(content.c.item_json)
_IDS_OF_PROFILES = select(content.c.id).where(content.c.profile_id.in_(bindparam("profiles", expanding=True)))


def _write(conn: Connection, rows, version: int) -> int:
    """Store the items of ``rows`` that differ from their stored ``item_json``; how many rows were
    rendered (an unchanged item keeps its ``item_version``: item snapshots need not append it)."""
    params = []
    for row in rows:
        rendered = render_row(row)
        if rendered != row["item_json"]:
            params.append({"row_id": row["id"], "rendered": rendered, "version": version})
    if params:
        conn.execute(_UPDATE, params)
    return len(rows)


def render_items(conn: Connection, *, version: int, content_ids: Iterable[int] | None = None,
                 profile_ids: Iterable[int] | None = None,
                 progress: Callable[[int], None] | None = None) -> int:
    """(Re)render ``item_json`` of the given rows in the caller's transaction, stamped with
    ``item_version`` = ``version`` (what ``bump_version`` answered in that transaction); the
    number rendered.

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
            rendered += _write(conn, rows, version)
            after = rows[-1]["id"]
            if progress:
                progress(len(rows))
    ids = {int(key) for key in content_ids or ()}
    ids.update(row[0] for row in rows_for_keys(conn, _IDS_OF_PROFILES, profile_ids or (), name="profiles"))
    ordered = sorted(ids)
    for start in range(0, len(ordered), KEY_CHUNK):
        rows = conn.execute(_BY_KEYS, {"keys": ordered[start:start + KEY_CHUNK]}).mappings().all()
        rendered += _write(conn, rows, version)
        if progress:
            progress(len(rows))
    return rendered


@functools.cache
def fragments_statement(dialect_name: str):
    """``PACKED_FRAGMENTS`` of the keys bound to ``keys`` (built once per dialect)."""
    return select(PACKED_FRAGMENTS).where(key_condition(dialect_name))


def item_fragments(conn: Connection, keys: Sequence[int]) -> list[str]:
    """The ``item_json`` of ``keys`` in their order, missing ids skipped.

    A row whose ``item_json`` is NULL (written before the column existed, not yet
    rendered) is built live from the row; nothing is written here.
    """
    ordered = [int(key) for key in keys]
    dialect_name = conn.dialect.name
    rows = conn.execute(fragments_statement(dialect_name), {KEYS: encode_keys(dialect_name, ordered)})
    by_id: dict[int, str | None] = dict(unpack_fragments(rows))
    missing = [key for key, fragment in by_id.items() if fragment is None]
    if missing:
        for row in items_by_keys(conn, missing):
            by_id[row["id"]] = render_row(row)
    return [by_id[key] for key in ordered if key in by_id]


@functools.cache
def ordered_fragments_statement(dialect_name: str):
    """One row for the key list bound to ``keys``: (its items' ``item_json`` joined by commas in
    list order, their ids joined the same way, how many have an ``item_json``, how many exist)."""
    if dialect_name == "sqlite":
        # json_each drives the join, so rows come in list order; SQLite (before 3.44, no ORDER BY
        # inside an aggregate) does not promise group_concat keeps it: the joined ids check it.
        listed = func.json_each(keys_parameter(dialect_name)).table_valued("key", "value").alias("listed")
        return (select(func.group_concat(content.c.item_json, ","), func.group_concat(content.c.id, ","),
                       func.count(content.c.item_json), func.count())
                .select_from(listed.join(content, content.c.id == listed.c.value)))
    listed = (func.unnest(keys_parameter(dialect_name)).table_valued("value", with_ordinality="position")
              .render_derived(name="listed"))
    comma_in_order = aggregate_order_by(literal_column("','"), listed.c.position)
    return (select(func.string_agg(content.c.item_json, comma_in_order),
                   func.string_agg(cast(content.c.id, Text), comma_in_order),
                   func.count(content.c.item_json), func.count())
            .select_from(listed.join(content, content.c.id == listed.c.value)))


def in_requested_order(joined_ids: str, keys: Sequence[int]) -> bool:
    """True when ``joined_ids`` ("3,1,7") lists ``keys`` in their order, those missing from it skipped."""
    if joined_ids == ",".join(map(str, keys)):
        return True
    got = [int(key) for key in joined_ids.split(",")]
    present = set(got)
    return got == [key for key in keys if key in present]


def joined_item_fragments(conn: Connection, keys: Sequence[int]) -> tuple[str, int]:
    """``item_fragments`` joined by commas (a JSON list's inside), and how many items it holds.

    One packed row from the database; ``item_fragments`` answers when an item is
    not rendered yet or the database joined them out of order.
    """
    ordered = [int(key) for key in keys]
    if not ordered:
        return "", 0
    dialect_name = conn.dialect.name
    joined, joined_ids, rendered, found = conn.execute(ordered_fragments_statement(dialect_name),
                                                       {KEYS: encode_keys(dialect_name, ordered)}).one()
    if not found:
        return "", 0
    if rendered == found and in_requested_order(joined_ids, ordered):
        return joined, found
    fragments = item_fragments(conn, ordered)
    return ",".join(fragments), len(fragments)
