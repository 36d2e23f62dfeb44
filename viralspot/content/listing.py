"""The content listings behind /api/reels and /api/posts, and the filter options: a page is answered
from the items' stored JSON (``page_response``); the views only pick the endpoint kind."""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Mapping

from flask import Response

from ..catalog.filters import content_filter
from ..catalog.queries import catalog_state, filter_options, plain_page_keys
from ..clock import app_clock
from ..extensions import catalog
from .page_response import page_response

#: (engine url, catalog version, largest id) -> the filter options of that catalog, as a future: they only
#: change when the catalog does. The first request after a catalog write computes them (one read of
#: ``content`` and two of the profiles, ``queries.filter_options``); the requests of this process that come
#: while it does wait for its answer, or its error, instead of each computing them again. (cachetools'
#: ``cached(condition=...)`` would have each waiter compute again after a failure, one statement timeout
#: after another.)
_options: dict[tuple, Future] = {}
_options_lock = threading.Lock()


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
    """The filter options, computed once per catalog version and process (one cheap query when unchanged)."""
    with catalog.connect() as conn:
        version, largest = catalog_state(conn)
        key = (str(conn.engine.url), version, largest)
    with _options_lock:
        options = _options.get(key)
        computes = options is None
        if computes:
            options = Future()
            _options.clear()
            _options[key] = options
    if computes:
        try:
            with catalog.connect() as conn:
                options.set_result(filter_options(conn))
        except BaseException as error:
            with _options_lock:
                if _options.get(key) is options:
                    del _options[key]
            options.set_exception(error)
            raise
    return options.result()
