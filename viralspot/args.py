"""The webargs parser every view uses: validation failures become 400 envelopes.

webargs answers 422 by default; our contract is 400 with a ``detail`` naming
the argument, and the documented ``error_code`` when the field supplies one.

``present_arguments(SchemaClass)`` narrows a wide query schema (the content
endpoints declare 29 optional arguments, a request sends four or five) to the
arguments the request carries: marshmallow's cost is per declared field, and
loading the narrowed schema is three times faster. Narrowed schemas are
cached per set of argument names; the schema fills the defaults of the rest.

It also remembers validated queries (``PresentArguments.validated``): a
session pages through a feed with the same filters, and sessions share
filters, so a query that differs from one already loaded only in its
``session_id`` and ``offset`` is answered from that load, with those two
checked by their own fields. Only a query whose whole load succeeded is
remembered; any other query (a per-request argument that fails its field, or
given twice) takes the full load, which answers the documented 400.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Request
from marshmallow import Schema, ValidationError
from webargs.flaskparser import FlaskParser

from .api_errors import ApiError
from .lru import LruCache
from .schemas.session_id import SessionIdField

log = logging.getLogger(__name__)


def _flatten(messages, prefix=""):
    """Yield (argument name, message) pairs from marshmallow's nested message dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = key if key != "_schema" else prefix
            yield from _flatten(value, name if not prefix or key == "_schema" else f"{prefix}.{key}")
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            yield from _flatten(item, prefix)
    else:
        yield prefix, messages


def _reject_nul(args, fields) -> None:
    """A declared argument holding a NUL character is a 400 (PostgreSQL text cannot hold one: it was a 500).

    ``session_id`` keeps its own rule (``INVALID_FORMAT``), which has no room for NUL either.
    """
    for name, field in fields.items():
        if isinstance(field, SessionIdField):
            continue
        if any("\x00" in value for value in args.getlist(name)):
            log.warning("rejected request argument %s: INVALID_PARAMETER (NUL character)", name)
            raise ApiError(f"{name}: must not contain NUL (\\x00) characters", "INVALID_PARAMETER")


class ApiParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400

    def load_querystring(self, req, schema):
        """The query as a plain dict of each argument's first value, when no field takes several.

        That is what webargs' ``MultiDictProxy`` would give such a schema (our lists are
        comma-separated values), without a proxied look-up per key on every request.
        """
        _reject_nul(req.args, schema.fields)
        multiple = tuple(self.KNOWN_MULTI_FIELDS)
        if any(isinstance(field, multiple) or getattr(field, "is_multiple", False)
               for field in schema.fields.values()):
            return super().load_querystring(req, schema)
        return req.args.to_dict()

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        pairs = list(_flatten(error.normalized_messages()))
        # Location keys ("query") wrap the field names; drop them from the argument name.
        pairs = [(name.split(".", 1)[-1], message) for name, message in pairs]
        name, message = pairs[0]
        code = getattr(message, "error_code", "INVALID_PARAMETER")
        if code == "INVALID_PARAMETER":
            detail = "; ".join(f"{arg}: {msg}" if arg else str(msg) for arg, msg in pairs)
        else:
            detail = str(message)
        log.warning("rejected request argument %s: %s", name or "(request)", code)
        raise ApiError(detail, code)

    def parse(self, argmap, req=None, *, location=None, **kwargs):
        """webargs' ``parse``; a ``PresentArguments`` query already validated is answered from memory."""
        if not isinstance(argmap, PresentArguments) or (location or self.location) not in ("query", "querystring"):
            return super().parse(argmap, req, location=location, **kwargs)
        req = req or self.get_default_request()
        remembered = argmap.validated(req.args)
        if remembered is not None:
            return remembered
        parsed = super().parse(argmap, req, location=location, **kwargs)
        argmap.remember(req.args, parsed)
        return parsed


parser = ApiParser(location="query")
use_args = parser.use_args
use_kwargs = parser.use_kwargs


#: The arguments that differ between otherwise identical queries: each session has its own id and
#: pages through its feed by offset. A remembered query is keyed by the others.
PER_REQUEST = ("session_id", "offset")
#: A query longer than this (its other arguments' names and values, in characters) is not remembered:
#: the memory holds at most ``memo_size`` entries of this size (frontend queries are a few hundred).
MAX_REMEMBERED_QUERY = 2048


class PresentArguments:
    """A webargs schema factory: ``schema_class`` narrowed to the declared arguments the query carries.

    It remembers up to ``memo_size`` validated queries, keyed by their arguments other than
    ``PER_REQUEST`` ones (``validated``, ``remember``; ``ApiParser.parse`` uses them).
    """

    def __init__(self, schema_class: type[Schema], cache_size: int = 256, memo_size: int = 1024) -> None:
        self.schema_class = schema_class
        self._declared = frozenset(schema_class._declared_fields)
        self._fields = {name: schema_class._declared_fields[name] for name in PER_REQUEST
                        if name in schema_class._declared_fields}
        self._schemas: LruCache[Schema] = LruCache(cache_size)
        self._validated: LruCache[dict] = LruCache(memo_size)

    def __call__(self, request: Request) -> Schema:
        names = self._declared.intersection(request.args.keys())
        schema = self._schemas.get(names)
        if schema is None:
            schema = self.schema_class(only=names)
            self._schemas.put(names, schema)
        return schema

    def _split(self, query) -> tuple[tuple, dict[str, str]] | None:
        """The query's memory key (its other arguments, and which per-request ones it has) and its
        per-request values; None when one of those is given twice."""
        per_request, rest = {}, []
        for item in query.items(multi=True):
            if item[0] in self._fields:
                if item[0] in per_request:
                    return None
                per_request[item[0]] = item[1]
            else:
                rest.append(item)
        return (tuple(per_request), tuple(rest)), per_request

    def validated(self, query) -> dict[str, Any] | None:
        """What loading ``query`` gives, when a query differing from it only in its per-request
        arguments was loaded and these pass their fields' rules; None otherwise (load it).

        Each answer is a dict of its own, but its list values are the remembered load's: views
        read the arguments and never change them in place (``content_filter`` copies its lists).
        """
        split = self._split(query)
        remembered = self._validated.get(split[0]) if split is not None else None
        if remembered is None:
            return None
        loaded = dict(remembered)
        for name, value in split[1].items():
            try:
                loaded[name] = self._fields[name].deserialize(value, name, query)
            except ValidationError:
                return None  # the full load answers the documented error
        return loaded

    def remember(self, query, loaded: Mapping[str, Any]) -> None:
        """Keep what loading ``query`` gave, but its per-request arguments, for ``validated``."""
        split = self._split(query)
        if split is not None and sum(len(name) + len(value) for name, value in split[0][1]) <= MAX_REMEMBERED_QUERY:
            key, per_request = split
            self._validated.put(key, {name: value for name, value in loaded.items() if name not in per_request})


def present_arguments(schema_class: type[Schema], cache_size: int = 256) -> PresentArguments:
    """A webargs schema factory: ``schema_class`` narrowed to the declared arguments the query carries."""
    return PresentArguments(schema_class, cache_size)
