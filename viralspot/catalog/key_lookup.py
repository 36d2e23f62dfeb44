"""A list of content keys as ONE bound parameter: ``id IN (SELECT value FROM json_each(:keys))`` on
SQLite (a JSON array of integers), ``id = ANY(:keys)`` on PostgreSQL (an array). A statement using
it has one cache key whatever the list's length (an expanding ``IN`` would render the SQL anew per
length), and every value stays a bound parameter."""
from __future__ import annotations

import json
from typing import Any, Sequence

from sqlalchemy import Integer, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY

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
