"""The ``Catalog`` Flask extension: one SQLAlchemy engine per app, from ``VIRALSPOT_DATABASE_URL``
(default: SQLite at ``<instance>/viralspot.db``; ``postgresql+psycopg://...`` selects PostgreSQL).

The tables are created at start-up when the database answers; when it does not, the app still
starts and requests answer 503 ``DATABASE_UNAVAILABLE`` until a connection succeeds and creates them.
A SQLite file that is deleted, not a database, corrupt or locked (for more than
``DATABASE_BUSY_TIMEOUT`` seconds) answers the same 503 until it is back; a file replaced under the
server is followed (pooled connections reopen the file now at the path). A statement that does not
answer within ``DATABASE_TIMEOUT`` seconds answers it too (``answer_deadline.py``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
from urllib.parse import quote

from flask import Flask, current_app
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import DisconnectionError, OperationalError, ProgrammingError
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateIndex

from config import Config

from ..clock import app_clock
from .answer_deadline import bound_answers, deadline_lifted
from .feed_source import FeedCatalog
from .item_snapshots import ItemSnapshots, snapshot_directory
from .rendering import ENGAGEMENT_RATES_SQL
from .state_cache import CatalogStateCache
from .tables import content, metadata
from .text_case import register_sqlite_lower
from .text_index import create_text_index

EXTENSION_NAME = "viralspot.catalog"
SCHEMA_READY = "viralspot.catalog.schema_ready"
ITEM_SNAPSHOTS = "viralspot.catalog.item_snapshots"
READER = "viralspot.catalog.reader"

log = logging.getLogger(__name__)


def database_url(app: Flask) -> str:
    url = app.config.get("DATABASE_URL")
    if url:
        return url
    os.makedirs(app.instance_path, exist_ok=True)
    return "sqlite:///" + os.path.join(app.instance_path, "viralspot.db")


def _tune_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA mmap_size=17179869184")  # 16 GiB: map the whole file; pages are shared with the OS cache
    cursor.close()
    register_sqlite_lower(dbapi_connection)


#: Seconds a PostgreSQL connection may take to open, at most.
CONNECT_TIMEOUT = 5
#: Pooled SQLite connections kept open (gunicorn runs 8 threads per worker by default).
SQLITE_POOL_SIZE = 16


def is_in_memory(url: str) -> bool:
    return url in ("sqlite://", "sqlite:///:memory:")


def item_snapshots(app: Flask, engine: Engine) -> ItemSnapshots | None:
    """The app's ``ItemSnapshots`` from ``ITEM_SNAPSHOT_DIR``, or None when off (or in memory)."""
    root = app.config.get("ITEM_SNAPSHOT_DIR")
    if root == "" or root is False or is_in_memory(str(engine.url)):
        return None
    if root is None:
        root = os.path.join(app.instance_path, "item-snapshots")
    write = bool(app.config["ITEM_SNAPSHOT_WRITE"])
    directory = snapshot_directory(root, engine)
    if write:  # a directory it cannot write stops the start-up, not each snapshot later in a log line
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RuntimeError(f"VIRALSPOT_ITEM_SNAPSHOT_DIR: cannot make {directory} ({error.strerror or error}); "
                               "set a directory this process may write, or empty to turn snapshots off") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise RuntimeError(f"VIRALSPOT_ITEM_SNAPSHOT_DIR: {directory} is not writable by this process; set "
                               "one that is, or VIRALSPOT_ITEM_SNAPSHOT_WRITE=false to read snapshots written by another")
    return ItemSnapshots(engine, directory, write=write, settle=float(app.config["ITEM_SNAPSHOT_SETTLE"]))


#: SQLite's result codes for a file that is not (or no longer) a database: unavailable (503), not a bug.
_UNREADABLE_SQLITE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _unreadable_as_unavailable(context) -> None:
    """``handle_error``: re-raise a corrupt or non-database file as ``OperationalError`` (503)."""
    error = context.original_exception
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNREADABLE_SQLITE_CODES \
            and not isinstance(context.sqlalchemy_exception, OperationalError):
        raise OperationalError(context.statement, context.parameters, error, hide_parameters=True) from error


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _follow_sqlite_file(engine: Engine, path: str) -> None:
    """Keep the pool on the file at ``path`` (deleted or replaced: reconnect); once opened, a deleted
    database answers 503 rather than being created anew empty."""
    opened = []
    uri = "file:" + quote(path) + "?mode=rw"

    @event.listens_for(engine, "do_connect")
    def open_existing(_dialect, _record, cargs, cparams):
        if opened:
            cargs[:] = [uri]
            cparams["uri"] = True

    @event.listens_for(engine, "connect")
    def remember_file(_dbapi_connection, record):
        record.info["sqlite_file"] = _file_identity(path)
        if not opened:
            opened.append(True)

    @event.listens_for(engine, "checkout")
    def same_file(_dbapi_connection, record, _proxy):
        if record.info.get("sqlite_file") != _file_identity(path):
            raise DisconnectionError("the SQLite database file was deleted or replaced")


def make_engine(url: str, busy_timeout: float = Config.DATABASE_BUSY_TIMEOUT,
                answer_timeout: float = Config.DATABASE_TIMEOUT) -> Engine:
    """An engine for ``url``; bound values never appear in exception text or logs. A request waits
    ``busy_timeout`` seconds at most on a SQLite lock, ``answer_timeout`` for each statement's answer
    (``answer_deadline.py``)."""
    if url.startswith("sqlite"):
        kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": busy_timeout}}
        if is_in_memory(url):
            kwargs["poolclass"] = StaticPool
        else:
            # A connection per server thread: a new one costs its PRAGMAs and mmap set-up. A request that
            # finds all 32 busy (more threads than that) waits 5 s at most, as on PostgreSQL, then 503.
            kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE,
                          pool_timeout=min(CONNECT_TIMEOUT, answer_timeout or CONNECT_TIMEOUT))
        engine = create_engine(url, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _tune_sqlite)
        event.listen(engine, "handle_error", _unreadable_as_unavailable)
        database = engine.url.database
        if not is_in_memory(url) and database and not engine.url.query.get("uri"):
            _follow_sqlite_file(engine, os.path.abspath(database))
    else:
        # Connecting takes 5 s at most, no longer than an answer may (libpq: whole seconds, 2 at least).
        connect_timeout = min(CONNECT_TIMEOUT, max(2, math.ceil(answer_timeout or CONNECT_TIMEOUT)))
        # A request that finds every pooled connection busy waits as long as a connect may, then 503.
        engine = create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=10, max_overflow=10,
                               pool_timeout=connect_timeout, connect_args={"connect_timeout": connect_timeout})
    bound_answers(engine, answer_timeout)
    return engine


#: The PostgreSQL advisory lock under which one process at a time creates the schema ("vsschema").
SCHEMA_LOCK = 0x7673736368656D61


def create_schema(engine: Engine) -> None:
    """Create the tables and indexes that do not exist yet, and add columns added since (idempotent).
    On PostgreSQL, workers starting together on an empty database take turns (two ``CREATE TABLE``
    of one name at once fail on the catalog's unique type names, not with "already exists")."""
    with contextlib.ExitStack() as turn:
        if engine.dialect.name == "postgresql":
            lock = turn.enter_context(engine.connect())
            lock.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK})
            turn.callback(lock.execute, text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK})
        metadata.create_all(engine)
        add_missing_columns(engine)
        # Every index, not only those of tables it creates: one added since, or one a seed dropped
        # for its load and could not rebuild (killed) comes back at the next start. IF NOT EXISTS:
        # safe when workers race. Without the statement deadline: building one over a large catalog
        # takes longer than a request may (0.5 s at 200k rows on SQLite), and cut off, it never ended.
        with deadline_lifted(), engine.begin() as conn:
            for index in (index for table in metadata.sorted_tables for index in table.indexes):
                conn.execute(CreateIndex(index, if_not_exists=True))
        with deadline_lifted():
            create_text_index(engine)


#: Columns added to existing tables after their first release: (table, column).
ADDED_COLUMNS = ((content, content.c.item_json), (content, content.c.item_version),
                 (content, content.c.content_engagement_rate), (content, content.c.account_engagement_rate))
#: How an added column gets its values, for the log line that announces it.
COLUMN_FILLED_BY = {"item_json": "run `flask content render` to fill it",
                    **{name: "filled from each row and its author's profile"
                       for name in ("content_engagement_rate", "account_engagement_rate")}}


def add_missing_columns(engine: Engine) -> None:
    """``ALTER TABLE ... ADD COLUMN`` for each added column a database written earlier lacks: an empty
    ``item_json`` (reads build a NULL one live), the engagement rates filled at once (their filters and
    sorts read them). A column another worker has just added is not an error."""
    added = {column.name for table, column in ADDED_COLUMNS if _add_column(engine, table, column)}
    if added & set(ENGAGEMENT_RATES_SQL):
        with deadline_lifted(), engine.begin() as conn:  # one UPDATE of every row: longer than a request may
            conn.execute(content.update().values(**ENGAGEMENT_RATES_SQL))


def _add_column(engine: Engine, table, column) -> bool:
    """True when this call added ``column`` to ``table``."""
    if column.name in {found["name"] for found in inspect(engine).get_columns(table.name)}:
        return False
    preparer = engine.dialect.identifier_preparer
    if_not_exists = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
    statement = (f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {if_not_exists}"
                 f"{preparer.format_column(column)} {column.type.compile(dialect=engine.dialect)}")
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    except (OperationalError, ProgrammingError):
        if column.name not in {found["name"] for found in inspect(engine).get_columns(table.name)}:
            raise
        return False
    log.warning("added column %s.%s to an existing catalog; %s", table.name, column.name,
                COLUMN_FILLED_BY.get(column.name, "later writes fill it"))
    return True


#: Taken by a request creating the schema that start-up could not: one thread builds it, the others wait.
_SCHEMA_TURN = threading.Lock()


class Catalog:
    """Flask extension owning the catalog engine."""

    def init_app(self, app: Flask) -> None:
        """After the app's clock (``clock.init_clock``): ``date_range`` counts back from it."""
        engine = make_engine(database_url(app), app.config["DATABASE_BUSY_TIMEOUT"], app.config["DATABASE_TIMEOUT"])
        app.extensions[EXTENSION_NAME] = engine
        state = CatalogStateCache(float(app.config["CATALOG_STATE_TTL"]))
        snapshots = app.extensions[ITEM_SNAPSHOTS] = item_snapshots(app, engine)
        app.extensions[READER] = FeedCatalog(
            lambda: self.ready_engine(app).connect(), state.get, snapshots.current if snapshots else None,
            app_clock(app), cache_keys=int(app.config["RANDOM_MATCH_CACHE_KEYS"]))
        try:
            create_schema(engine)
        except OperationalError as error:
            log.error("catalog database unreachable at start-up (%s); requests will answer 503 until it is",
                      type(error.orig).__name__ if error.orig is not None else "OperationalError")
        else:
            app.extensions[SCHEMA_READY] = True

    @staticmethod
    def ready_engine(app: Flask) -> Engine:
        """``app``'s engine, creating the schema first when start-up could not (one thread at a time)."""
        extensions = app.extensions
        if not extensions.get(SCHEMA_READY):
            with _SCHEMA_TURN:
                if not extensions.get(SCHEMA_READY):
                    create_schema(extensions[EXTENSION_NAME])
                    extensions[SCHEMA_READY] = True
        return extensions[EXTENSION_NAME]

    @property
    def engine(self) -> Engine:
        """The current app's engine, its schema created first when start-up could not."""
        return self.ready_engine(current_app._get_current_object())

    @property
    def snapshots(self) -> ItemSnapshots | None:
        """The app's item snapshots, or None when they are off."""
        return current_app.extensions[ITEM_SNAPSHOTS]

    @staticmethod
    def reader_for(app: Flask) -> FeedCatalog:
        """How pages read ``app``'s catalog (``feed_source.py``)."""
        return app.extensions[READER]

    @property
    def reader(self) -> FeedCatalog:
        return self.reader_for(current_app)

    def connect(self) -> Connection:
        """A pooled connection, to use as ``with catalog.connect() as conn:`` (returned to the pool after)."""
        return self.engine.connect()
