"""The webargs parser of every route (``api.Blueprint.ARGUMENTS_PARSER``): validation failures are
our 400 envelope with a ``detail`` naming the argument and the field's documented ``error_code``,
not webargs' 422."""
from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from webargs.flaskparser import FlaskParser

from .error_codes import ApiError
from .schemas.content import CommaList
from .schemas.session_id import SessionIdField

log = logging.getLogger(__name__)


def _flatten(messages, prefix=""):
    """Yield (argument name, message) pairs from marshmallow's nested message dict."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _flatten(value, prefix if key == "_schema" else f"{prefix}.{key}" if prefix else key)
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            yield from _flatten(item, prefix)
    else:
        yield prefix, messages


def _not_utf8(query: bytes) -> list[str]:
    """The names of a raw query string's arguments whose value is not UTF-8 once percent-decoded."""
    if b"%" not in query and query.isascii():
        return []
    names = []
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
        try:
            value.encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            names.append(name.encode("latin-1").decode("utf-8", "replace"))
    return names


class ApiParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400

    def load_querystring(self, req, schema):
        """The query; a declared argument given twice, holding a NUL, or not UTF-8 once
        percent-decoded is a 400 (``session_id``'s code is one of its own: ``INVALID_FORMAT`` for
        twice; a NUL or other bytes are its format rule's)."""
        for name, values in req.args.lists():
            field = schema.fields.get(name) if len(values) > 1 else None
            if field is not None and not self._takes_many(field):
                code = "INVALID_FORMAT" if isinstance(field, SessionIdField) else "INVALID_PARAMETER"
                log.warning("rejected request argument %s: %s (given %d times)", name, code, len(values))
                hint = " (a list is one comma-separated value: a,b)" if isinstance(field, CommaList) else ""
                raise ApiError(f"{name}: given {len(values)} times; give it once{hint}", code)
        for name, value in req.args.items(multi=True):
            field = schema.fields.get(name) if "\x00" in value else None
            if field is not None and not isinstance(field, SessionIdField):
                log.warning("rejected request argument %s: INVALID_PARAMETER (NUL character)", name)
                raise ApiError(f"{name}: must not contain NUL (\\x00) characters", "INVALID_PARAMETER")
        for name in _not_utf8(req.query_string):
            # Werkzeug keeps such bytes percent-encoded: a search for "%FF" would find nothing. (A
            # session id's own rule refuses them: INVALID_FORMAT.)
            if name in schema.fields and not isinstance(schema.fields[name], SessionIdField):
                log.warning("rejected request argument %s: INVALID_PARAMETER (not UTF-8)", name)
                raise ApiError(f"{name}: not UTF-8 once percent-decoded", "INVALID_PARAMETER")
        return super().load_querystring(req, schema)

    def _takes_many(self, field) -> bool:
        """A field that takes every value of a repeated argument (webargs' rule: ``List``, ``Tuple``)."""
        multiple = getattr(field, "is_multiple", None)
        return multiple if multiple is not None else isinstance(field, tuple(self.KNOWN_MULTI_FIELDS))

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        pairs = [(name.split(".", 1)[-1], message) for name, message in _flatten(error.normalized_messages())]
        name, message = pairs[0]
        code = getattr(message, "error_code", "INVALID_PARAMETER")
        detail = ("; ".join(f"{arg}: {msg}" if arg else str(msg) for arg, msg in pairs)
                  if code == "INVALID_PARAMETER" else str(message))
        log.warning("rejected request argument %s: %s", name or "(request)", code)
        raise ApiError(detail, code)
