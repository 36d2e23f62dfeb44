"""A bounded wait for each answer of the catalog database, SQLite or PostgreSQL.

A statement whose answer takes longer than ``DATABASE_TIMEOUT`` seconds ends with
``OperationalError``, which requests answer as 503 ``DATABASE_UNAVAILABLE``; without it, a server
that hangs (stopped, its disk stalled, a partition the kernel still acknowledges) or a statement
too costly for the catalog (a hundred keywords over every row) would hold a request and its thread
without end:

* PostgreSQL: the server cancels the statement (``statement_timeout``, lock waits included), so
  nothing keeps running there for a client that gave up; and ``BoundedConnection`` gives each of
  psycopg's waits (a statement, a fetch, a commit) one second more, for a server that cannot answer
  at all: past it the connection is closed (the pool then drops it).
* SQLite: a progress handler interrupts a statement still running past its deadline, counted from
  its start (SQLite then answers ``interrupted``).

Commands that run long statements on purpose (``flask content seed --replace`` on a large catalog)
wait without it, inside ``deadline_lifted()``.

On SQLite, ``cpu_budget(seconds)`` also interrupts this thread's statements past that much CPU time
of the thread (``budget_spent(conn)`` then says why): a query that may read far more rows than
another way of answering it tries first (``queries._narrowed``: plain pages and random feeds'
matching sets).
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Iterator

import psycopg
from psycopg import errors
from sqlalchemy import Engine, event

#: Set within ``deadline_lifted()``: this context's statements have no deadline.
_lifted: contextvars.ContextVar[bool] = contextvars.ContextVar("viralspot_answer_deadline_lifted", default=False)
#: SQLite virtual-machine steps between two looks at the clock (a step is well under a microsecond).
SQLITE_STEPS = 10_000
#: What a PostgreSQL client waits beyond its statements' timeout: the server's own cancellation
#: comes first, and the connection stays usable.
CLIENT_MARGIN = 1.0
#: Where a SQLite connection keeps its running statement's deadline (``time.monotonic``), or None.
_ANSWER_BY = "viralspot.answer_by"
#: Set within ``cpu_budget()``: the thread CPU seconds each of this context's SQLite statements may take.
_budget: contextvars.ContextVar[float | None] = contextvars.ContextVar("viralspot_cpu_budget", default=None)
#: Where a SQLite connection keeps its running statement's CPU deadline (``time.thread_time``), or None.
_CPU_BY = "viralspot.cpu_by"
#: Set on a SQLite connection whose statement its CPU budget interrupted.
_BUDGET_SPENT = "viralspot.budget_spent"
#: Where a PostgreSQL connection keeps the ``statement_timeout`` (ms) it was last given.
_SERVER_TIMEOUT = "viralspot.statement_timeout"


@contextlib.contextmanager
def deadline_lifted() -> Iterator[None]:
    """Within it, this context's (thread's) statements have no deadline."""
    token = _lifted.set(True)
    try:
        yield
    finally:
        _lifted.reset(token)


@contextlib.contextmanager
def cpu_budget(seconds: float) -> Iterator[None]:
    """Within it, each of this context's SQLite statements is interrupted past ``seconds`` of CPU."""
    token = _budget.set(seconds)
    try:
        yield
    finally:
        _budget.reset(token)


def budget_spent(conn) -> bool:
    """True when the last statement on ``conn`` was interrupted by its CPU budget."""
    return bool(conn.info.get(_BUDGET_SPENT))


def bound_answers(engine: Engine, seconds: float) -> None:
    """Give every statement of ``engine`` ``seconds`` to answer (0: no deadline)."""
    if engine.dialect.name == "sqlite":
        _bound_sqlite(engine, seconds)
    elif seconds and engine.dialect.driver == "psycopg":
        _bound_postgresql(engine, seconds)


def _bound_sqlite(engine: Engine, seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def watch(dbapi_connection, record):
        info = record.info

        def stop() -> bool:
            if (cpu_by := info.get(_CPU_BY)) is not None and time.thread_time() > cpu_by:
                info[_BUDGET_SPENT] = True
                return True
            return (answer_by := info.get(_ANSWER_BY)) is not None and time.monotonic() > answer_by

        dbapi_connection.set_progress_handler(stop, SQLITE_STEPS)

    @event.listens_for(engine, "before_cursor_execute")
    def start(conn, _cursor, _statement, _parameters, _context, _executemany):
        info, budget = conn.info, _budget.get()
        info[_ANSWER_BY] = None if _lifted.get() or not seconds else time.monotonic() + seconds
        info[_CPU_BY] = None if budget is None else time.thread_time() + budget
        info[_BUDGET_SPENT] = False


def _bound_postgresql(engine: Engine, seconds: float) -> None:
    milliseconds = max(1, round(seconds * 1000))

    @event.listens_for(engine, "do_connect")
    def connect(_dialect, _record, cargs, cparams):
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.answer_seconds = seconds + CLIENT_MARGIN
        return connection

    @event.listens_for(engine, "checkout")
    def server_timeout(dbapi_connection, record, _proxy):
        # A new connection, or one last used on the other side of deadline_lifted(): one SET, committed.
        wanted = 0 if _lifted.get() else milliseconds
        if record.info.get(_SERVER_TIMEOUT) != wanted:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {wanted:d}")
            dbapi_connection.commit()
            record.info[_SERVER_TIMEOUT] = wanted


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose waits for the server end after ``answer_seconds`` (0: never)."""

    answer_seconds = 0.0

    def wait(self, gen, *args, **kwargs):
        seconds = self.answer_seconds
        if not seconds or _lifted.get() or len(args) > 1 or kwargs.get("timeout") is not None:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(gen, *args, **kwargs, timeout=seconds)
        except errors._WaitTimeout:  # psycopg's own wait timeout (pinned version); the protocol is mid-way
            self.pgconn.finish()
            raise psycopg.OperationalError(f"no answer from the database within {seconds:g} s") from None
