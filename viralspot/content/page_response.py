"""The body of a content page, spliced from items rendered at write time (catalog/rendering.py).

The envelope is built by ``api_response`` like every other success body, with
an empty ``reels`` list; its compact JSON is then cut at that list into a head
and a tail, and the body is the head, the items' stored JSON fragments joined
by commas (``catalog.rendering.joined_item_fragments``, or an item snapshot's),
and the tail. No item is decoded or re-encoded per request, and the envelope
of a (message, last page) pair is built once per ``FRAME_CACHE_SIZE`` pairs.
"""
from __future__ import annotations

import json

from flask import Response

from ..lru import LruCache
from ..schemas.envelope import api_response

_EMPTY_ITEMS = b'"reels":[]'
#: Envelopes kept cut (messages name the count and offset: a few hundred pairs cover the pages served).
FRAME_CACHE_SIZE = 1024
_frames: LruCache[tuple[bytes, bytes]] = LruCache(FRAME_CACHE_SIZE)


def _frame(is_last_page: bool, message: str) -> tuple[bytes, bytes]:
    """The page envelope's compact UTF-8 JSON before and after the items of ``data.reels``."""
    key = (is_last_page, message)
    frame = _frames.get(key)
    if frame is None:
        body = json.dumps(api_response({"reels": [], "isLastPage": is_last_page}, message),
                          separators=(",", ":"), ensure_ascii=False).encode()
        # The first match is data's list: a JSON string cannot contain an unescaped quote.
        head, tail = body.split(_EMPTY_ITEMS, 1)
        frame = (head + b'"reels":[', b"]" + tail)
        _frames.put(key, frame)
    return frame


def page_response(items_json: str | bytes, is_last_page: bool, message: str) -> Response:
    """The documented page body (``data.reels``, ``data.isLastPage``); ``items_json`` is the items'
    JSON fragments joined by commas ("" for none), as text or UTF-8 bytes (an item snapshot's)."""
    head, tail = _frame(is_last_page, message)
    if isinstance(items_json, str):
        items_json = items_json.encode()
    return Response(b"".join((head, items_json, tail)), mimetype="application/json")
