"""The trigram index behind ``search`` and ``keywords``: a text that few rows hold is found without
reading every row (1M items on SQLite: a search matching nothing cost 0.8-3.2 s of CPU, a scan).

SQLite: the FTS5 table ``content_text`` (trigram tokenizer, case-sensitive) holds each row's
description, username and keywords folded by ``fold_case`` (text_case.py). Triggers on ``content``
keep it, so every writer does; they call ``vs_lower``, so a connection without it (the ``sqlite3``
shell) cannot insert content or change its texts. A filter's texts become one FTS5 query, each text
a quoted phrase of its folded form; the rows it finds are then checked by the exact condition
(``filters.contains``), so the index only narrows the rows read. A text shorter than 3 characters
has no trigram: it is matched by a scan, as before. When a read visits the index's rows:
``queries._narrowed``. Without the table (a large seed dropped it and has not built it yet; an older
catalog file put in place; a start that found another process writing; SQLite before 3.34, without
the trigram tokenizer) text filters read every row. The folding that filled it is recorded
(``FOLD_VERSION``): another is rebuilt at start.

PostgreSQL: the ``pg_trgm`` extension's GIN indexes on ``lower(column)`` of the same columns, which
the planner uses for ``contains``'s ``lower(column) LIKE``. When the extension cannot be created (not
installed, or the role may not), start-up logs it and text filters scan.
"""
from __future__ import annotations

import logging
import sqlite3
import unicodedata
import zlib

from sqlalchemy import Connection, Engine, Select, bindparam, column, literal_column, select, table, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ColumnElement

from .tables import catalog_meta
from .text_case import SQLITE_FUNCTION, fold_case, register_sqlite_lower

log = logging.getLogger(__name__)

TABLE = "content_text"
#: Characters in a trigram: a shorter text cannot be looked up.
TRIGRAM = 3
#: The index's columns -> the content columns folded into each (keywords joined by line breaks).
INDEXED = {"description": ("description",), "username": ("username",),
           "keywords": ("keyword_1", "keyword_2", "keyword_3", "keyword_4")}
#: Which indexed columns each text filter reads.
SEARCH_COLUMNS = "{description username}"
KEYWORD_COLUMNS = "{description keywords}"
#: The content columns a text filter reads.
TEXT_COLUMNS = tuple(name for names in INDEXED.values() for name in names)
#: PostgreSQL: a GIN index per content column a text filter reads.
TRIGRAM_INDEXES = {f"ix_content_trgm_{name}": name for name in TEXT_COLUMNS}

#: The folding the index is filled with, kept in ``catalog_meta``: ``fold_case``'s rules and this
#: Python's Unicode tables (``str.lower`` changes between versions), so that an index filled by
#: another is built again at start instead of missing rows the exact condition matches.
FOLD_KEY = "text_index_fold"
FOLD_VERSION = zlib.crc32(f"fold_case 1, Unicode {unicodedata.unidata_version}".encode())

_TRIGGERS = ("content_text_insert", "content_text_delete", "content_text_update")
_text_rows = table(TABLE, column("rowid"))


#: Characters of a text looked up: its beginning narrows about as well as the whole, and the index's
#: work grows with each trigram (1M items, thread CPU: 500 characters of common words 2.3 s, their
#: first 32 128 ms). Many texts add up: 100 different keywords of common words 317 ms, of repeated
#: ones ("this the this the ...") 3.0 s; cut to 3 characters each, the rows read took 39 s).
PHRASE_CHARS = 32


def _phrase(text_: str) -> str:
    return '"' + fold_case(text_)[:PHRASE_CHARS].replace('"', '""') + '"'


def match_query(search: str | None, keywords: tuple[str, ...]) -> str | None:
    """The FTS5 query that finds every row a filter's texts can match (and some more), or None when
    no text is long enough to look up. All keywords or none: they match when any one does."""
    parts = []
    if search and len(search) >= TRIGRAM:
        parts.append(f"{SEARCH_COLUMNS} : {_phrase(search)}")
    if keywords and all(len(word) >= TRIGRAM for word in keywords):
        phrases = dict.fromkeys(_phrase(word) for word in keywords)  # each once (100 copies of one: 22 s -> 165 ms)
        parts.append("(" + " OR ".join(f"{KEYWORD_COLUMNS} : {phrase}" for phrase in phrases) + ")")
    return " AND ".join(parts) or None


def _matches(query: str) -> ColumnElement[bool]:
    return literal_column(TABLE).op("MATCH")(bindparam("text_query", query, unique=True))


def text_rows(query: str) -> Select:
    """The ids of the rows the index finds for ``query``."""
    return select(_text_rows.c.rowid).where(_matches(query))


def _folded(row: str, name: str) -> str:
    columns = INDEXED[name]
    if len(columns) == 1:
        return f"{SQLITE_FUNCTION}({row}.{columns[0]})"
    joined = " || char(10) || ".join(f"coalesce({row}.{column_}, '')" for column_ in columns)
    return f"{SQLITE_FUNCTION}({joined})"


def _insert(row: str) -> str:
    return (f"INSERT INTO {TABLE}(rowid, {', '.join(INDEXED)}) "
            f"VALUES ({row}.id, {', '.join(_folded(row, name) for name in INDEXED)});")


_SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5({', '.join(INDEXED)}, tokenize='trigram case_sensitive 1')",
    f"CREATE TRIGGER content_text_insert AFTER INSERT ON content BEGIN {_insert('new')} END",
    f"CREATE TRIGGER content_text_delete AFTER DELETE ON content BEGIN DELETE FROM {TABLE} WHERE rowid = old.id; END",
    f"CREATE TRIGGER content_text_update AFTER UPDATE OF id, {', '.join(TEXT_COLUMNS)} ON content BEGIN "
    f"DELETE FROM {TABLE} WHERE rowid = old.id; {_insert('new')} END",
    f"INSERT INTO {TABLE}(rowid, {', '.join(INDEXED)}) "
    f"SELECT id, {', '.join(_folded('content', name) for name in INDEXED)} FROM content",
)


def create_text_index(engine: Engine) -> None:
    """Create the index if it is missing, filled from every row (idempotent; 14-21 s at 1M rows on
    SQLite). Where it cannot be made (see the module's docstring) text filters read every row."""
    if engine.dialect.name == "sqlite":
        _create_sqlite_index(engine)
        return
    schema = _trigram_extension_schema(engine)
    if schema is None:
        return
    operators = f"{engine.dialect.identifier_preparer.quote_schema(schema)}.gin_trgm_ops"
    try:
        with engine.begin() as conn:
            for index, name in TRIGRAM_INDEXES.items():
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {index} ON content "
                                  f"USING gin (lower({name}) {operators})"))
    except DBAPIError as error:
        if isinstance(error, OperationalError):
            raise  # the database is unavailable, not the index
        log.warning("cannot create the trigram indexes (%s): search and keywords read every row",
                    type(error.orig).__name__)


def missing(error: OperationalError) -> bool:
    """True when ``error`` says SQLite's index table is missing (a large seed dropped it and has not
    built it yet, a catalog file of an older release put in place, no trigram tokenizer)."""
    return f"no such table: {TABLE}" in str(error.orig)


def _create_sqlite_index(engine: Engine) -> None:
    """One write transaction, so a build cut short leaves none. A process that finds the write lock
    taken does not wait (another process is building it, or writing): it starts without building,
    and text filters read every row until one has."""
    with engine.connect() as conn:
        if _sqlite_fold(conn) == FOLD_VERSION:
            return
        conn.rollback()
        register_sqlite_lower(conn.connection.dbapi_connection)  # an engine not made by make_engine too
        waits = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError:
            log.warning("the text index is not built: another process holds the catalog's write lock; "
                        "search and keywords read every row until a start builds it")
            return
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(waits)}")
        fold = _sqlite_fold(conn)  # looked at again under the lock
        if fold != FOLD_VERSION:
            if fold is not None:
                log.warning("the text index was folded by other rules (another Python's Unicode tables): "
                            "building it again")
                drop_text_index(conn)
            try:
                conn.exec_driver_sql(_SQLITE_DDL[0])
            except OperationalError as error:
                if "no such tokenizer" not in str(error.orig) and "no such module" not in str(error.orig):
                    raise
                log.warning("SQLite %s has no FTS5 trigram tokenizer (3.34 or later has): search and keywords "
                            "read every row", sqlite3.sqlite_version)
                return
            for statement in _SQLITE_DDL[1:]:
                conn.exec_driver_sql(statement)
            conn.execute(catalog_meta.delete().where(catalog_meta.c.name == FOLD_KEY))
            conn.execute(catalog_meta.insert().values(name=FOLD_KEY, value=FOLD_VERSION))
        conn.commit()


def _sqlite_fold(conn: Connection) -> int | None:
    """The folding the index was filled with (0: not recorded), or None when there is no index."""
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = ?", (TABLE,)).first() is None:
        return None
    return conn.execute(select(catalog_meta.c.value).where(catalog_meta.c.name == FOLD_KEY)).scalar() or 0


def _trigram_extension_schema(engine: Engine) -> str | None:
    """PostgreSQL: the schema of ``pg_trgm`` (created here if need be), or None without it."""
    find = text("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                "WHERE e.extname = 'pg_trgm'")
    with engine.begin() as conn:
        if (schema := conn.execute(find).scalar()) is not None:
            return schema
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            return conn.execute(find).scalar()
    except DBAPIError as error:
        if isinstance(error, OperationalError):
            raise
        log.warning("cannot create the pg_trgm extension (%s): search and keywords read every row; "
                    "create it as a superuser (CREATE EXTENSION pg_trgm) and restart", type(error.orig).__name__)
        return None


def drop_text_index(conn: Connection) -> None:
    """Drop the index (a large seed rebuilds it after its inserts: ``create_text_index``)."""
    if conn.dialect.name == "sqlite":
        for trigger in _TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
        return
    for index in TRIGRAM_INDEXES:
        conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
