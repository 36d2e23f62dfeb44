"""The body of a content page, spliced from items rendered at write time (catalog/rendering.py): the
envelope's compact JSON with an empty ``reels`` list, cut at that list, around the items' stored JSON
fragments. No item is decoded or re-encoded per request.
"""
from __future__ import annotations

import json

from flask import Response

from ..schemas.envelope import envelope

_EMPTY_ITEMS = b'"reels":[]'


def page_response(items_json: str | bytes, is_last_page: bool, message: str) -> Response:
    """The documented page body (``data.reels``, ``data.isLastPage``); ``items_json`` is the items'
    JSON fragments joined by commas ("" for none), as text or UTF-8 bytes (an item snapshot's)."""
    body = json.dumps(envelope({"reels": [], "isLastPage": is_last_page}, message),
                      separators=(",", ":"), ensure_ascii=False).encode()
    # The first match is data's list: a JSON string cannot contain an unescaped quote.
    head, tail = body.split(_EMPTY_ITEMS, 1)
    if isinstance(items_json, str):
        items_json = items_json.encode()
    return Response(b"".join((head, b'"reels":[', items_json, b"]", tail)), mimetype="application/json")
