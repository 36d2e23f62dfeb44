"""The content listings behind /api/reels and /api/posts, and the filter options: a page is answered
from the items' stored JSON (``page_response``); the views only pick the endpoint kind."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Response

from ..catalog.filters import content_filter
from ..catalog.queries import catalog_state, filter_options, plain_page_keys
from ..clock import app_clock
from ..extensions import catalog
from .page_response import page_response

#: (engine url, catalog version, largest id) -> filter options; they only change when the catalog does.
_options_cache: dict[tuple[str, int], dict] = {}


def listing_message(kind: str, count: int, offset: int) -> str:
    return f"Found {count} {kind} (offset {offset})"


def plain_listing(kind: str, args: Mapping[str, Any]) -> Response:
    """One page in the order of ``sort_by`` (the default order without it), as the response."""
    flt = content_filter(kind, args)
    with catalog.reader.source(flt) as source:
        keys, is_last_page = plain_page_keys(source.connection, flt, args.get("sort_by"), args["limit"],
                                             args["offset"], now=app_clock().now())
        items_json, count = source.page_items(keys)
    return page_response(items_json, is_last_page, listing_message(kind, count, args["offset"]))


def current_filter_options() -> dict:
    """The filter options, cached per catalog version (one cheap query when unchanged)."""
    with catalog.connect() as conn:
        version, largest = catalog_state(conn)
        key = (str(conn.engine.url), version, largest)
        cached = _options_cache.get(key)
        if cached is None:
            cached = filter_options(conn)
            _options_cache.clear()
            _options_cache[key] = cached
        return cached
