"""The body of a content page, spliced from items rendered at write time (catalog/rendering.py).

The envelope is built by ``api_response`` like every other success body, with
an empty ``reels`` list; its compact JSON then gets the items' stored JSON
fragments, joined by commas (``catalog.rendering.joined_item_fragments``),
spliced into that list. No item is decoded or re-encoded per request.
"""
from __future__ import annotations

import json

from flask import Response

from ..schemas.envelope import api_response

_EMPTY_ITEMS = '"reels":[]'
_EMPTY_ITEMS_BYTES = _EMPTY_ITEMS.encode()


def page_response(items_json: str | bytes, is_last_page: bool, message: str) -> Response:
    """The documented page body (``data.reels``, ``data.isLastPage``); ``items_json`` is the items'
    JSON fragments joined by commas ("" for none), as text or UTF-8 bytes (an item snapshot's)."""
    body = json.dumps(api_response({"reels": [], "isLastPage": is_last_page}, message),
                      separators=(",", ":"), ensure_ascii=False)
    # The first match is data's list: a JSON string cannot contain an unescaped quote.
    if isinstance(items_json, bytes):
        encoded = body.encode().replace(_EMPTY_ITEMS_BYTES, b'"reels":[' + items_json + b"]", 1)
        return Response(encoded, mimetype="application/json")
    body = body.replace(_EMPTY_ITEMS, '"reels":[' + items_json + "]", 1)
    return Response(body, mimetype="application/json")
