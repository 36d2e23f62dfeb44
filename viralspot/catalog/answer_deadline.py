"""PostgreSQL connections that wait a bounded time for each answer.

libpq waits for a server's answer as long as the socket stays open: a server that hangs (stopped,
its disk stalled, a partition the kernel still acknowledges) would hold a request, its thread and
its pooled connection without end. ``BoundedConnection`` gives each of psycopg's waits (a
statement, a fetch, a commit) a deadline, ``AnswerDeadline.seconds``; past it the connection is
closed (the pool then drops it) and ``OperationalError`` raised, which requests answer as 503
``DATABASE_UNAVAILABLE``. Commands that run long statements on purpose (``flask content seed
--replace`` on a large catalog) wait without it, inside ``deadline_lifted()``.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator

import psycopg
from psycopg import errors

#: Set within ``deadline_lifted()``: this context's waits have no deadline.
_lifted: contextvars.ContextVar[bool] = contextvars.ContextVar("viralspot_answer_deadline_lifted", default=False)


@dataclass(frozen=True)
class AnswerDeadline:
    """Seconds one wait for the server may take; 0: no deadline."""

    seconds: float


@contextlib.contextmanager
def deadline_lifted() -> Iterator[None]:
    """Within it, this context's (thread's) waits for PostgreSQL have no deadline."""
    token = _lifted.set(True)
    try:
        yield
    finally:
        _lifted.reset(token)


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose waits for the server end after ``deadline.seconds``."""

    deadline = AnswerDeadline(0)

    def wait(self, gen, *args, **kwargs):
        seconds = self.deadline.seconds
        if not seconds or _lifted.get() or len(args) > 1 or kwargs.get("timeout") is not None:
            return super().wait(gen, *args, **kwargs)
        try:
            return super().wait(gen, *args, **kwargs, timeout=seconds)
        except errors._WaitTimeout:  # psycopg's own wait timeout (pinned version); the protocol is mid-way
            self.pgconn.finish()
            raise psycopg.OperationalError(f"no answer from the database within {seconds:g} s") from None


def bounded_connect(deadline: AnswerDeadline):
    """A ``do_connect`` listener making the engine's connections ``BoundedConnection``s."""

    def connect(_dialect, _record, cargs, cparams):
        connection = BoundedConnection.connect(*cargs, **cparams)
        connection.deadline = deadline
        return connection

    return connect
