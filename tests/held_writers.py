"""Catalog writers held mid-transaction on a real PostgreSQL, for tests of writers that run at once:
an engine that stops after its first statement of a kind until released, and a wait for another
writer to either end or wait on a lock."""
from __future__ import annotations

import threading

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from test_failover import wait_for
from viralspot.catalog.database import make_engine


class HeldWriter:
    """``engine`` runs as usual until its first statement starting with ``prefix`` (upper case) has
    run; it then holds its transaction open (``holding`` set) until ``release`` is set."""

    def __init__(self, url: str, prefix: str) -> None:
        self.engine = make_engine(url)
        self.holding, self.release = threading.Event(), threading.Event()

        @event.listens_for(self.engine, "after_cursor_execute")
        def hold(_conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith(prefix) and not self.holding.is_set():
                self.holding.set()
                self.release.wait(60)

    def close(self) -> None:
        self.release.set()
        self.engine.dispose()


def _lock_waits(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted")).scalar()


def waits_or_ends(engine: Engine, writer: threading.Thread, bound: float = 30.0) -> None:
    """Return once ``writer`` has ended or some transaction waits on a lock (``pg_locks``)."""
    wait_for(lambda: not writer.is_alive() or _lock_waits(engine), bound, "the writer waiting or ending", 0.01)
