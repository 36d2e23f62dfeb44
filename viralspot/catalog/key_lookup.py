"""Rows among a list of content keys, on the hot path of every random page: compiled once, run on the driver.

A random page looks its candidate keys up once or twice. Through a SQLAlchemy
``Connection`` with an expanding ``IN`` list, the Python around that query (the
list rendered into the SQL on every call, the execution context, the result
wrapper) cost more than SQLite's own work, and under gunicorn's threads that
Python time is what the GIL serializes. So a ``KeyLookup``:

* is written in SQLAlchemy Core like every other query, with the key list as
  ONE bound parameter: ``id IN (SELECT value FROM json_each(:keys))`` on SQLite
  (a JSON array of integers), ``id = ANY(:keys)`` on PostgreSQL (an array);
* is compiled once per dialect, its other bound values (the filter's) run
  through their type's bind processor once;
* runs on the pooled connection's DBAPI cursor: every value is still a bound
  parameter, and a driver error is re-raised as SQLAlchemy's (so the app's
  ``OperationalError`` handler still answers 503).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Hashable, Sequence

from sqlalchemy import Connection, Integer, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from ..lru import LruCache
from .tables import content

KEYS = "keys"


def keys_parameter(dialect_name: str):
    """The single bound parameter ``keys``: a JSON array on SQLite (read by ``json_each``), an array elsewhere."""
    if dialect_name == "sqlite":
        return bindparam(KEYS, value="[]")
    return bindparam(KEYS, value=[], type_=ARRAY(Integer))


def key_condition(dialect_name: str):
    """``content.id`` among the keys bound to the single parameter ``keys``, for one dialect."""
    if dialect_name == "sqlite":
        listed = select(literal_column("value")).select_from(func.json_each(keys_parameter(dialect_name)))
        return content.c.id.in_(listed)
    return content.c.id == any_(keys_parameter(dialect_name))


def encode_keys(dialect_name: str, keys: Sequence[int]) -> Any:
    """The value of the ``keys`` parameter: a JSON array on SQLite, a list (an array) elsewhere."""
    ints = [int(key) for key in keys]
    return json.dumps(ints, separators=(",", ":")) if dialect_name == "sqlite" else ints


class KeyLookup:
    """``statement`` (a select over ``content``) restricted to a key list, compiled for ``dialect``.

    With ``keyed=True`` the statement binds ``keys_parameter`` itself (it reads the
    list in its FROM clause, say) and is compiled as it is.
    """

    __slots__ = ("sql", "dialect_name", "_positions", "_params", "_keys_processor")

    def __init__(self, statement: Select, dialect: Dialect, keyed: bool = False) -> None:
        self.dialect_name = dialect.name
        if not keyed:
            statement = statement.where(key_condition(dialect.name))
        compiled = statement.compile(dialect=dialect)
        # The SQL with every IN list and literal rendered, as the engine would execute it.
        state = compiled.construct_expanded_state(escape_names=False)
        processors = dict(state.processors)
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors.setdefault(name, processor)
        self.sql = state.statement
        self._params = {name: processors[name](value) if name in processors else value
                        for name, value in state.parameters.items() if name != KEYS}
        self._keys_processor = processors.get(KEYS)
        self._positions = list(state.positiontup) if compiled.positional else None

    def rows(self, conn: Connection, keys: Sequence[int]) -> list[tuple]:
        """The statement's rows for ``keys`` (all of them, fetched at once)."""
        value = encode_keys(self.dialect_name, keys)
        if self._keys_processor is not None:
            value = self._keys_processor(value)
        params = {**self._params, KEYS: value}
        args = [params[name] for name in self._positions] if self._positions is not None else params
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, args)
            return cursor.fetchall()
        except dbapi.Error as error:
            raise DBAPIError.instance(self.sql, args, error, dbapi.Error) from error
        finally:
            cursor.close()


class KeyLookupCache:
    """``KeyLookup``s by (name, dialect), least recently used dropped beyond ``size``; thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._lookups: LruCache[KeyLookup] = LruCache(size)

    def get(self, name: Hashable, dialect: Dialect, build: Callable[[], Select], keyed: bool = False) -> KeyLookup:
        """The lookup cached under ``name`` for ``dialect``, compiling ``build()`` on a miss."""
        key = (name, dialect.name, dialect.driver)
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = KeyLookup(build(), dialect, keyed)
            self._lookups.put(key, lookup)
        return lookup
