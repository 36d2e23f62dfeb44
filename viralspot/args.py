"""The webargs parser every view uses: validation failures become 400 envelopes.

webargs answers 422 by default; our contract is 400 with a ``detail`` naming
the argument, and the documented ``error_code`` when the field supplies one.
"""
from __future__ import annotations

import logging

from webargs.flaskparser import FlaskParser

from .errors import ApiError

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


class ApiParser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400

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


parser = ApiParser(location="query")
use_args = parser.use_args
use_kwargs = parser.use_kwargs
