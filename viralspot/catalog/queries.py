"""Read queries over the catalog: plain pages, key lookups for the random feed, filter options.

Core expressions on a ``Connection``: the same code runs on SQLite and PostgreSQL, every value bound.
Orders are total (each ends with ``content.id``), so limit/offset paging never repeats or skips an item.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
from sqlalchemy import BigInteger, ColumnElement, Connection, Text, bindparam, case, cast, distinct, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql import Select

from . import text_index
from .answer_deadline import budget_spent, cpu_budget
from .filters import DATE_RANGES, ContentFilter, join_profiles
from .tables import DERIVED_COLUMNS, catalog_meta, content, primary_profiles, rate_order_key
from .text_index import text_rows

T = TypeVar("T")
VERSION_KEY = "version"
#: Most ids bound in one ``IN`` list.
KEY_CHUNK = 2000

SORTS_REELS = ("popular", "views", "likes", "comments", "recent", "oldest", "followers",
               "account_engagement", "content_engagement")
SORTS_POSTS = ("popular", "likes", "comments", "recent", "oldest")
#: Sorts that read the author's profile.
_PROFILE_SORTS = {"followers"}

#: Profile columns returned with each item, under these names.
PROFILE_COLUMNS = tuple(primary_profiles.c[name] for name in ("profile_name", "bio", "followers", "is_verified",
                                                                "profile_image_url", "account_type"))


def order_by(kind: str, sort_by: str | None) -> list[ColumnElement]:
    """The ORDER BY of ``sort_by`` (None: the default order) for an endpoint kind, tie-break included.
    The default order (and ``popular``) is outlier_score desc, then views (reels) or likes (posts) desc."""
    c = content.c
    if sort_by in (None, "popular"):
        second = c.view_count if kind == "reels" else c.like_count
        return [c.outlier_score.desc(), second.desc(), c.id.desc()]
    if sort_by == "oldest":
        return [c.date_posted.asc(), c.id.asc()]
    key = {"views": c.view_count, "likes": c.like_count, "comments": c.comment_count, "recent": c.date_posted,
           "followers": primary_profiles.c.followers,
           "account_engagement": rate_order_key(c.account_engagement_rate),
           "content_engagement": rate_order_key(c.content_engagement_rate)}.get(sort_by)
    if key is None:
        raise ValueError(f"unknown sort {sort_by!r}")
    return [key.desc(), c.id.desc()]


_VERSION = select(catalog_meta.c.value).where(catalog_meta.c.name == VERSION_KEY).scalar_subquery()
_LARGEST = select(func.max(content.c.id)).scalar_subquery()
#: Built once: SQLAlchemy then reuses the statement's cache key and compiled form.
CATALOG_STATE = select(func.coalesce(_VERSION, 0), func.coalesce(_LARGEST, 0))


class CatalogState(NamedTuple):
    """What the catalog is at a moment: its version (bumped by every write) and its largest key."""

    version: int
    largest_key: int


def catalog_state(conn: Connection) -> CatalogState:
    """The catalog's version and largest content.id (0 when empty), in one round trip."""
    row = conn.execute(CATALOG_STATE).one()
    return CatalogState(int(row[0]), int(row[1]))


def rows_for_keys(conn: Connection, statement, keys: Sequence[int], name: str = "keys"):
    """Rows of ``statement`` for the distinct ``keys`` bound to ``name``, ``KEY_CHUNK`` per query."""
    unique = list(dict.fromkeys(int(key) for key in keys))
    for start in range(0, len(unique), KEY_CHUNK):
        yield from conn.execute(statement, {name: unique[start:start + KEY_CHUNK]})


#: Separators of a packed result: ASCII record and unit separators, which JSON always escapes.
RECORD_SEPARATOR, UNIT_SEPARATOR = "\x1e", "\x1f"
#: ``id<US>item_json`` of every row, joined by ``<RS>``, as one string ('' for a NULL item_json).
PACKED_FRAGMENTS = func.aggregate_strings(
    cast(content.c.id, Text) + UNIT_SEPARATOR + func.coalesce(content.c.item_json, ""), RECORD_SEPARATOR)


def unpack_fragments(rows: Iterable[tuple]) -> Iterator[tuple[int, str | None]]:
    """(id, item_json or None) from rows of one ``PACKED_FRAGMENTS`` column, in no set order. One packed
    string per query matters on SQLite under threads: the driver re-takes the GIL for every row."""
    for (packed,) in rows:
        if not packed:
            continue
        for record in packed.split(RECORD_SEPARATOR):
            key, _, fragment = record.partition(UNIT_SEPARATOR)
            yield int(key), fragment or None


#: Attempts at reading a result from one catalog state while writes keep committing.
CONSISTENT_READ_ATTEMPTS = 3


def read_at_one_version(conn: Connection, read: Callable[[Connection], T]) -> tuple[int | None, T]:
    """(catalog version, ``read(conn)``), where no catalog write committed during the read (the version
    is the same before and after); after ``CONSISTENT_READ_ATTEMPTS`` changing readings it is None."""
    result = None
    for _attempt in range(CONSISTENT_READ_ATTEMPTS):
        before = catalog_state(conn)[0]
        result = read(conn)
        if catalog_state(conn)[0] == before:
            return before, result
    return None, result


def _integer_columns(conn: Connection, stmt: Select, columns: int) -> list[np.ndarray]:
    """The first ``columns`` columns of ``stmt``'s rows as int64 arrays, read 50,000 rows at a time."""
    parts: list[list[np.ndarray]] = [[] for _ in range(columns)]
    for part in conn.execute(stmt.execution_options(yield_per=50_000)).partitions():
        for column, arrays in enumerate(parts):
            arrays.append(np.fromiter((row[column] for row in part), dtype=np.int64, count=len(part)))
    return [np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64) for arrays in parts]


#: Outlier scores above it are read as it (to 1/1000 in a bigint).
MAX_SCORE_READ = 9e15


def outlier_scores(conn: Connection) -> np.ndarray:
    """Every item's outlier score indexed by its id (0 where there is no item), to 1/1000."""
    # Capped: PostgreSQL refuses a bigint past 9.2e18 (SQLite saturates); a weight reaches its cap far below.
    capped = case((content.c.outlier_score > MAX_SCORE_READ, MAX_SCORE_READ), else_=content.c.outlier_score)
    stmt = select(content.c.id, cast(func.round(capped * 1000), BigInteger))
    keys, thousandths = _integer_columns(conn, stmt, 2)
    scores = np.zeros(int(keys.max()) + 1 if len(keys) else 1)
    scores[keys] = thousandths / 1000
    return scores


def _text_narrowing(flt: ContentFilter) -> list[Select]:
    """A matching set's narrowing condition: the text index's rows (SQLite's planner already starts
    from the profiles when few match)."""
    query = flt.text_query
    return [] if query is None else [text_rows(query)]


def matching_keys(conn: Connection, flt: ContentFilter) -> np.ndarray:
    """Every id matching ``flt``, ascending, as an int64 array. Sorted here, not by ``ORDER BY id``,
    with which SQLite walks the whole table instead of the filter's index (5.2 s vs 0.22 s at 1M)."""
    def read(among: Select | None) -> np.ndarray:
        return _integer_columns(conn, _among(flt.where(select(content.c.id)), among), 1)[0]

    keys = _narrowed(conn, read, _text_narrowing(flt))
    keys.sort()
    return keys


def posted_epoch_seconds(dialect_name: str):
    """``content.date_posted`` as whole seconds since the epoch (UTC), in the database, the fraction
    dropped (SQLite's ``strftime`` rounds it to the millisecond: 59.9995 s became the next second)."""
    if dialect_name == "sqlite":
        return cast(func.strftime("%s", func.substr(content.c.date_posted, 1, 19)), BigInteger)
    return cast(func.floor(func.extract("epoch", content.c.date_posted)), BigInteger)


def matching_keys_until(conn: Connection, flt: ContentFilter, at: datetime) -> tuple[np.ndarray, np.ndarray]:
    """For a ``date_range`` filter: every id matching it at ``at``, ascending, and the epoch second
    up to which each still matches (its posting second plus the range), as int64 arrays."""
    window = int(DATE_RANGES[flt.date_range].total_seconds())
    stmt = flt.where(select(content.c.id, posted_epoch_seconds(conn.dialect.name)), now=at)
    keys, seconds = _narrowed(conn, lambda among: _integer_columns(conn, _among(stmt, among), 2),
                              _text_narrowing(flt))
    order = np.argsort(keys, kind="stable")
    return keys[order], seconds[order] + window


#: The content columns an item is built from (not the image list, bookkeeping dates nor the item).
ITEM_COLUMNS = tuple(column for column in content.c if column.name not in (
    "all_image_urls", "created_at", "updated_at", "profile_id", *DERIVED_COLUMNS))
#: Content with its author's profile columns (``ITEMS_BY_KEYS``: for ids bound to ``keys``); built once.
ITEMS = select(*ITEM_COLUMNS, *PROFILE_COLUMNS).select_from(
    content.outerjoin(primary_profiles, primary_profiles.c.id == content.c.profile_id))
ITEMS_BY_KEYS = ITEMS.where(content.c.id.in_(bindparam("keys", expanding=True)))


def items_by_keys(conn: Connection, keys: Sequence[int]) -> list[dict]:
    """Rows (content with its author's profile columns) in the order of ``keys``; missing ids skipped."""
    ordered = [int(key) for key in keys]
    by_id = {row.id: dict(row._mapping) for row in rows_for_keys(conn, ITEMS_BY_KEYS, ordered)}
    return [by_id[key] for key in ordered if key in by_id]


def plain_order_statement(flt: ContentFilter, sort_by: str | None, now: datetime | None = None,
                          among: Select | None = None) -> Select:
    """The ids matching ``flt`` in a plain (non-random) order; only those of ``among`` when given."""
    joined = sort_by in _PROFILE_SORTS
    stmt = join_profiles(select(content.c.id)) if joined else select(content.c.id)
    return _among(flt.where(stmt, profile_joined=joined, now=now), among).order_by(*order_by(flt.kind, sort_by))


def _among(stmt: Select, among: Select | None) -> Select:
    """``stmt`` restricted to the ids ``among`` selects, if given."""
    return stmt if among is None else stmt.where(content.c.id.in_(among))


#: A read restricted to a narrowing condition's rows (``narrowing_rows``) when it holds for at most
#: this many (counted up to it), instead of the planner's way: a plain page walks its order's index
#: until it has its rows, which reads every row when the condition holds for none (1M SQLite items,
#: thread CPU: a search in no row 3.2 s, min_followers above everyone's 3.1 s; looked up, about
#: 1 ms). With more rows the walk soon meets them: a lookup of 23,498 text matches took 79 ms, of
#: 139,866 401 ms, walking the order 7 and 0.6 ms.
LOOKUP_AT_MOST = 5000
#: Thread CPU the planner's way may take when the condition holds for more, before the condition's
#: rows are read instead: other filters, a sort or an offset can make the walk long (1M items: a
#: common text with min_views above all, 2.7-3.2 s walked, 295 ms so; a text at offset 50,000,
#: 2.65 s against 61 ms), and a common text's page walks in 0.4-8 ms.
PLANNER_CPU_SECONDS = 0.02


def _narrowed(conn: Connection, read: Callable[[Select | None], T], narrowing: list[Select]) -> T:
    """``read(None)``, the planner's way, or on SQLite ``read(rows)`` restricted to a narrowing
    condition's rows: at once when one holds for at most ``LOOKUP_AT_MOST``, else when the planner's
    way takes more than ``PLANNER_CPU_SECONDS`` (SQLite interrupts it). PostgreSQL's planner picks its
    trigram indexes, and between walking an order and reading a condition's rows, by statistics."""
    if not narrowing or conn.dialect.name != "sqlite":
        return read(None)
    try:
        few = next((rows for rows in narrowing if _at_most(conn, rows, LOOKUP_AT_MOST)), None)
    except OperationalError as error:
        if not text_index.missing(error):
            raise
        return read(None)  # no text index: the rows are read as without one
    if few is not None:
        return read(few)
    try:
        with cpu_budget(PLANNER_CPU_SECONDS):
            return read(None)
    except OperationalError:
        if not budget_spent(conn):
            raise
    return read(narrowing[0])


def narrowing_rows(flt: ContentFilter) -> list[Select]:
    """Selects of the ids of rows that may match ``flt``, each cheap to read when it holds few: those
    the text index finds, those whose author the profile conditions keep."""
    found = [text_rows(query)] if (query := flt.text_query) is not None else []
    if profile := flt.profile_conditions():
        authors = select(primary_profiles.c.id).where(*profile)
        found.append(select(content.c.id).where(content.c.profile_id.in_(authors)))
    return found


def _at_most(conn: Connection, rows: Select, count: int) -> bool:
    """True when ``rows`` holds at most ``count`` rows (counting stops past it)."""
    return conn.execute(select(func.count()).select_from(rows.limit(count + 1).subquery())).scalar_one() <= count


def plain_page_keys(conn: Connection, flt: ContentFilter, sort_by: str | None, limit: int,
                    offset: int, now: datetime | None = None) -> tuple[list[int], bool]:
    """The ids of one page in a plain (non-random) order: (keys, is_last_page). On SQLite, the rows
    of a narrowing condition may be read and sorted (``_narrowed``; PostgreSQL's planner chooses)."""
    def read(among: Select | None) -> list[int]:
        stmt = plain_order_statement(flt, sort_by, now, among).limit(limit + 1).offset(offset)
        return list(conn.execute(stmt).scalars())

    keys = _narrowed(conn, read, narrowing_rows(flt))
    return keys[:limit], len(keys) <= limit


#: A new catalog's first version is random below this: a re-created catalog's versions are new.
FIRST_VERSION_BELOW = 2 ** 40
#: ``catalog_meta`` name of the catalog's epoch: random, drawn anew whenever rows are deleted.
EPOCH_KEY = "epoch"


def bump_version(conn: Connection) -> int:
    """Increment the catalog version in the caller's transaction (update first: concurrent writers
    get distinct versions in commit order); the new version. A new catalog's is random, with an epoch."""
    bumped = conn.execute(catalog_meta.update().where(catalog_meta.c.name == VERSION_KEY)
                          .values(value=catalog_meta.c.value + 1))
    if bumped.rowcount == 0:
        conn.execute(catalog_meta.insert().values(name=VERSION_KEY, value=secrets.randbelow(FIRST_VERSION_BELOW) + 1))
        new_epoch(conn)
    return int(conn.execute(select(catalog_meta.c.value).where(catalog_meta.c.name == VERSION_KEY)).scalar())


def new_epoch(conn: Connection) -> int:
    """Draw a new catalog epoch in the caller's transaction (every writer that deletes rows does)."""
    epoch = secrets.randbelow(2 ** 62) + 1
    if conn.execute(catalog_meta.update().where(catalog_meta.c.name == EPOCH_KEY).values(value=epoch)).rowcount == 0:
        conn.execute(catalog_meta.insert().values(name=EPOCH_KEY, value=epoch))
    return epoch


_EPOCH = select(catalog_meta.c.value).where(catalog_meta.c.name == EPOCH_KEY).scalar_subquery()
CATALOG_STATE_AND_EPOCH = CATALOG_STATE.add_columns(func.coalesce(_EPOCH, 0))


def catalog_state_and_epoch(conn: Connection) -> tuple[CatalogState, int]:
    """The catalog's state and its epoch (0 for a catalog made before epochs), in one round trip."""
    row = conn.execute(CATALOG_STATE_AND_EPOCH).one()
    return CatalogState(int(row[0]), int(row[1])), int(row[2])


def content_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(content)).scalar() or 0)


#: Each filter option -> the content columns whose values it lists.
OPTION_COLUMNS = {"primary_categories": ("primary_category",), "secondary_categories": ("secondary_category",),
                  "tertiary_categories": ("tertiary_category",),
                  "keywords": ("keyword_1", "keyword_2", "keyword_3", "keyword_4"),
                  "content_types": ("content_type",), "languages": ("language",), "content_styles": ("content_style",)}


def filter_options(conn: Connection) -> dict:
    """The sorted distinct values the frontend offers as filters. The content columns' values come
    from one read of the table, each column's distinct values as a JSON array (1M items on SQLite:
    one read 1.3-1.9 s of CPU, a ``DISTINCT`` query per column 3.2-3.6 s together)."""
    gather = func.json_group_array if conn.dialect.name == "sqlite" else func.json_agg
    names = [name for columns in OPTION_COLUMNS.values() for name in columns]
    arrays = conn.execute(select(*(gather(distinct(content.c[name])) for name in names))).one()
    found = {name: json.loads(array) if isinstance(array, str) else (array or []) for name, array in zip(names, arrays)}
    # Sorted here, as every list: an ORDER BY follows the database's collation.
    options = {option: sorted({value for name in columns for value in found[name] if value not in (None, "")})
               for option, columns in OPTION_COLUMNS.items()}
    profiles = sorted(conn.execute(select(primary_profiles.c.username, primary_profiles.c.profile_name)).all())
    account_types = conn.execute(select(primary_profiles.c.account_type).distinct()).scalars()
    options["usernames"] = [{"username": username, "profile_name": name or username} for username, name in profiles]
    options["account_types"] = sorted(value for value in account_types if value not in (None, ""))
    order = ("primary_categories", "secondary_categories", "tertiary_categories", "keywords", "usernames",
             "account_types", "content_types", "languages", "content_styles")
    return {name: options[name] for name in order}


def counts_by_type_and_category(conn: Connection) -> list[tuple[str, str | None, int]]:
    """(content_type, primary_category, count) rows, ordered by type then category."""
    count = func.count().label("items")
    stmt = (select(content.c.content_type, content.c.primary_category, count)
            .group_by(content.c.content_type, content.c.primary_category)
            .order_by(content.c.content_type, content.c.primary_category))
    return [(row[0], row[1], int(row[2])) for row in conn.execute(stmt)]
