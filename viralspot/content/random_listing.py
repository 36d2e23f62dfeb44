"""``random_order=true``: one page of the session's own random feed, in the frontend's shape."""
from __future__ import annotations

from typing import Any, Mapping

from flask import Response

from ..catalog.filters import content_filter
from ..clock import app_clock
from ..errors import ApiError
from ..extensions import catalog, random_feeds, session_store
from ..feed.catalog_source import SqlCandidateSource
from ..feed.random_feed import BeyondServedPrefix
from .listing import listing_message
from .page_response import page_response

#: Feed keys are the endpoint kind and the first 128 bits of the filter's SHA-256 signature.
FEED_KEY_HEX = 32


def random_listing(kind: str, args: Mapping[str, Any], *, max_ahead: int) -> Response:
    """The page ``[offset, offset + limit)`` of ``session_id``'s feed for this endpoint and filter set.

    ``sort_by`` is ignored: the session's order is the order. A page may reach at
    most ``max_ahead`` items past what the session has been served in this feed.
    """
    store = session_store.backend
    session_id, offset, limit = args["session_id"], args["offset"], args["limit"]
    flt = content_filter(kind, args)
    feed_key = f"{kind}:{flt.signature()[:FEED_KEY_HEX]}"
    with SqlCandidateSource(catalog.connect, flt, catalog.state, catalog.item_snapshot, app_clock()) as source:
        try:
            page = random_feeds.feeds.page(store, source, session_id, feed_key, offset, limit, max_ahead)
        except BeyondServedPrefix as error:
            raise ApiError(
                f"offset: a random page may reach at most {error.max_ahead} items past what the session "
                f"has been served in this feed ({error.served}); page through it in order",
                "INVALID_PARAMETER") from None
        items_json, count = source.page_items(page.keys)
    return page_response(items_json, page.is_last_page, listing_message(kind, count, offset))
