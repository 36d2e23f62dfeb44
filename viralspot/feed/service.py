"""The one place a random page is made: ``RandomFeedService.serve(kind, args)``.

``content/routes.py`` calls ``serve`` with its validated arguments and gets back the page to send.
The service owns the whole page:

1. the filter of the request and its feed key (``<kind>:<first 128 bits of the filter's hash>``);
2. the page of the session's feed (``random_feed.RandomFeeds``): the plan (``plans.py``), the
   session's permutation (``permutation.py``) and the claim in the session store;
3. the page's items, from the catalog source of the filter.

The catalog reaches it through the narrow ``FeedCatalog`` protocol (the SQL catalog implements it
in ``catalog/feed_source.py``), the session store through a function that gives the app's
backend. Nothing here touches Flask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Protocol

from ..catalog.filters import ContentFilter, content_filter
from ..store import SessionStoreBackend
from .plans import CandidateSource
from .random_feed import RandomFeeds

#: Hex digits of the filter's SHA-256 signature in a feed key (128 bits).
FEED_KEY_HEX = 32


class FeedCatalog(Protocol):
    def source(self, content_filter: ContentFilter) -> ContextManager[CandidateSource]:
        """The catalog as one page of ``content_filter``'s feed reads it (released on exit)."""


@dataclass(frozen=True)
class ServedPage:
    """A random page ready to send: its items' JSON joined by commas, how many, and whether it is
    the feed's last page."""

    items_json: str | bytes
    count: int
    is_last_page: bool


def feed_key(kind: str, content_filter_: ContentFilter) -> str:
    """The key of the feed of an endpoint kind and a filter, in the session store."""
    return f"{kind}:{content_filter_.signature()[:FEED_KEY_HEX]}"


class RandomFeedService:
    """Serves pages of sessions' random feeds; one per app, safe to share across threads.

    A page may reach at most ``max_ahead`` items past what the session has been served in
    that feed (a 400 otherwise).
    """

    def __init__(self, store: Callable[[], SessionStoreBackend], catalog: FeedCatalog, feeds: RandomFeeds,
                 max_ahead: int) -> None:
        self._store = store
        self.catalog = catalog
        self.feeds = feeds
        self.max_ahead = max_ahead

    def serve(self, kind: str, args: Mapping[str, Any]) -> ServedPage:
        """The page ``[offset, offset + limit)`` of ``session_id``'s feed for endpoint ``kind``
        (``reels``, ``posts``) and the filter arguments in ``args``; ``sort_by`` is ignored."""
        flt = content_filter(kind, args)
        with self.catalog.source(flt) as source:
            page = self.feeds.page(self._store(), source, args["session_id"], feed_key(kind, flt),
                                   args["offset"], args["limit"], self.max_ahead)
            items_json, count = source.page_items(page.keys)
        return ServedPage(items_json, count, page.is_last_page)
