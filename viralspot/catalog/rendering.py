"""Items rendered once, at write time: ``content.item_json``, which pages splice into their envelope,
and the engagement rates the two computed sorts read from an index.

The invariant: ``item_json`` is NULL or equals ``encode_item(serialize_item(row))`` for the current
content row joined with its author's profile, and the rates are ``engagement_rates(row)``'s. Every
writer (seed, import, ``flask content render``) keeps it inside its write's transaction, the import
re-rendering every row of a profile it changed. Reads never write: ``item_fragments`` builds a NULL
row's item live.
"""
from __future__ import annotations

import functools
import json
from typing import Callable, Iterable, Sequence

from sqlalchemy import Connection, Float, Text, bindparam, cast, func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from .items import serialize_item
from .key_lookup import KEYS, encode_keys, key_condition, keys_parameter
from .queries import ITEMS, ITEMS_BY_KEYS, KEY_CHUNK, PACKED_FRAGMENTS, items_by_keys, rows_for_keys, unpack_fragments
from .tables import content, primary_profiles

#: Rows rendered per UPDATE executemany.
RENDER_CHUNK = 5000


def encode_item(item: dict) -> str:
    """The one encoding of a rendered item: compact JSON, UTF-8 text (not ASCII-escaped)."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def render_row(row) -> str:
    """``item_json`` of one row mapping (content columns with its profile's columns)."""
    return encode_item(serialize_item(row))


def engagement_rates(row) -> dict[str, float | None]:
    """A row's (likes + comments) x 100 / views, and / its author's followers; None for a zero divisor."""
    engaged = float(row["like_count"] + row["comment_count"]) * 100.0
    views, followers = row["view_count"], row["followers"]
    return {"content_engagement_rate": engaged / views if views else None,
            "account_engagement_rate": engaged / followers if followers else None}


_ENGAGED = cast(content.c.like_count + content.c.comment_count, Float) * 100.0
_FOLLOWERS = select(primary_profiles.c.followers).where(primary_profiles.c.id == content.c.profile_id).scalar_subquery()
#: ``engagement_rates`` of every row in one UPDATE, the same operations in the same order (an upgrade fills
#: the columns with it; tests/test_catalog_rendering.py checks the two agree).
ENGAGEMENT_RATES_SQL = {"content_engagement_rate": _ENGAGED / func.nullif(content.c.view_count, 0),
                        "account_engagement_rate": _ENGAGED / func.nullif(_FOLLOWERS, 0)}


def derived_columns(row) -> dict:
    """What a writer stores beside a row's own columns (``DERIVED_COLUMNS`` but the version)."""
    return {"item_json": render_row(row), **engagement_rates(row)}


_STORED = (content.c.item_json, content.c.content_engagement_rate, content.c.account_engagement_rate)
_UPDATE = (content.update().where(content.c.id == bindparam("row_id"))
           .values(item_version=bindparam("version"), **{column.name: bindparam(f"new_{column.name}")
                                                         for column in _STORED}))
#: Every row in id order, one chunk after ``after`` at a time (keyset paging: no cursor held across UPDATEs).
_ALL_AFTER = (ITEMS.add_columns(*_STORED).where(content.c.id > bindparam("after"))
              .order_by(content.c.id).limit(bindparam("size")))
_BY_KEYS = ITEMS_BY_KEYS.add_columns(*_STORED)
_IDS_OF_PROFILES = select(content.c.id).where(content.c.profile_id.in_(bindparam("profiles", expanding=True)))


def _write(conn: Connection, rows, version: int) -> int:
    """Store the items of ``rows`` that changed (others keep their ``item_version``); how many rows."""
    params = []
    for row in rows:
        derived = derived_columns(row)
        if any(value != row[name] for name, value in derived.items()):
            params.append({"row_id": row["id"], "version": version,
                           **{f"new_{name}": value for name, value in derived.items()}})
    if params:
        conn.execute(_UPDATE, params)
    return len(rows)


def render_items(conn: Connection, *, version: int, content_ids: Iterable[int] | None = None,
                 profile_ids: Iterable[int] | None = None, progress: Callable[[int], None] | None = None) -> int:
    """(Re)render ``item_json`` of ``content_ids`` and every row of ``profile_ids`` (every row when both
    are None), stamped with ``version`` (``bump_version``'s in this transaction); the number rendered."""
    rendered = 0
    if content_ids is None and profile_ids is None:
        after = 0
        while rows := conn.execute(_ALL_AFTER, {"after": after, "size": RENDER_CHUNK}).mappings().all():
            rendered += _write(conn, rows, version)
            after = rows[-1]["id"]
            if progress:
                progress(len(rows))
        return rendered
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
    """The ``item_json`` of ``keys`` in their order, missing ids skipped, unrendered ones built live."""
    ordered = [int(key) for key in keys]
    dialect_name = conn.dialect.name
    rows = conn.execute(fragments_statement(dialect_name), {KEYS: encode_keys(dialect_name, ordered)})
    by_id: dict[int, str | None] = dict(unpack_fragments(rows))
    for row in items_by_keys(conn, [key for key, fragment in by_id.items() if fragment is None]):
        by_id[row["id"]] = render_row(row)
    return [by_id[key] for key in ordered if key in by_id]


@functools.cache
def ordered_fragments_statement(dialect_name: str):
    """One row for the key list bound to ``keys``: (its items' ``item_json`` joined by commas in
    list order, their ids joined the same way, how many have an ``item_json``, how many exist)."""
    if dialect_name == "sqlite":
        # json_each gives rows in list order; group_concat does not promise to keep it: the ids check it.
        listed = func.json_each(keys_parameter(dialect_name)).table_valued("key", "value").alias("listed")
        joined = (func.group_concat(content.c.item_json, ","), func.group_concat(content.c.id, ","))
    else:
        listed = (func.unnest(keys_parameter(dialect_name)).table_valued("value", with_ordinality="position")
                  .render_derived(name="listed"))
        comma_in_order = aggregate_order_by(literal_column("','"), listed.c.position)
        joined = (func.string_agg(content.c.item_json, comma_in_order),
                  func.string_agg(cast(content.c.id, Text), comma_in_order))
    return (select(*joined, func.count(content.c.item_json), func.count())
            .select_from(listed.join(content, content.c.id == listed.c.value)))


def in_requested_order(joined_ids: str, keys: Sequence[int]) -> bool:
    """True when ``joined_ids`` ("3,1,7") lists ``keys`` in their order, those missing from it skipped."""
    if joined_ids == ",".join(map(str, keys)):
        return True
    got = [int(key) for key in joined_ids.split(",")]
    present = set(got)
    return got == [key for key in keys if key in present]


def joined_item_fragments(conn: Connection, keys: Sequence[int]) -> tuple[str, int]:
    """``item_fragments`` joined by commas (a JSON list's inside), and how many items it holds: one
    packed row from the database, or ``item_fragments`` when an item is unrendered or out of order."""
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
