"""Lower case beyond ASCII in SQL, ``unicode_lower(column)``, and the same folding of a search text, ``fold_case``.

SQLite's ``lower()`` and its ``LIKE`` fold the case of ASCII letters only, so ``search=café`` did
not find "CAFÉ" and a keyword "Über" could not be matched at all. On SQLite ``unicode_lower`` calls
``vs_lower``, ``fold_case`` registered on each connection (``register_sqlite_lower``); on
PostgreSQL it is ``lower()``, which folds by the database's locale (a UTF-8 ``LC_CTYPE``).

``fold_case`` is ``str.lower`` by each character's simple mapping, as PostgreSQL's ``lower()``
folds: ``str.lower`` alone maps "İ" to two characters ("i̇") and a word-final "Σ" to "ς", so
``search=İstanbul`` found nothing on PostgreSQL, and "ΣΟΦΟΣ" did not find itself there.
"""
from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

SQLITE_FUNCTION = "vs_lower"


class unicode_lower(GenericFunction):  # noqa: N801 - named as SQL functions are
    type = String()
    inherit_cache = True


@compiles(unicode_lower)
def _lower(element, compiler, **kw) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _sqlite_lower(element, compiler, **kw) -> str:
    return f"{SQLITE_FUNCTION}({compiler.process(element.clauses, **kw)})"


def fold_case(text: str) -> str:
    """``text`` lowered character by character (the only two of ``str.lower``'s other rules replaced first)."""
    return text.replace("\u0130", "i").replace("\u03a3", "\u03c3").lower()


def _sql_lower(value):
    return fold_case(value) if isinstance(value, str) else value


def register_sqlite_lower(dbapi_connection) -> None:
    """Make ``vs_lower`` on a new SQLite connection (deterministic: SQLite may use it in indexes)."""
    dbapi_connection.create_function(SQLITE_FUNCTION, 1, _sql_lower, deterministic=True)
