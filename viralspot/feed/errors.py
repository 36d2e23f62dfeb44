"""Why a random page cannot be served: domain exceptions, mapped to the error envelope by ``errors.py``."""
from __future__ import annotations


class FeedError(Exception):
    """A random page the feed refuses; ``str()`` is the client-facing detail, ``error_code`` its code,
    ``order_id`` the stored session's order when the refusal is about it (``service.order_id``)."""

    error_code = "INVALID_PARAMETER"
    order_id: str | None = None


class BeyondServedPrefix(FeedError):
    """A page of a stored session starting further past what the feed has served than allowed."""

    def __init__(self, served: int, max_ahead: int, order_id: str | None = None) -> None:
        limit = (f"offset: a random page may start at most {max_ahead} items (VIRALSPOT_RANDOM_MAX_AHEAD) past what "
                 f"the session has been served in this feed")
        super().__init__(f"{limit} ({served}); page through it in order" if served else
                         f"{limit}, and this feed has been served nothing: start it at offset 0")
        self.served = served
        self.max_ahead = max_ahead
        self.order_id = order_id


class SessionNotStored(FeedError):
    """A page starting past ``max_ahead`` of a session that is not stored: new, or lost since its
    client's last page (expired, evicted, reset, or lost in a failover)."""

    error_code = "SESSION_NOT_FOUND"

    def __init__(self, max_ahead: int) -> None:
        super().__init__(f"session_id: no session is stored under this id (it expired, was evicted, was reset or was "
                         f"lost in a failover, or it is new), and a new session's feed starts at most {max_ahead} "
                         f"items in (VIRALSPOT_RANDOM_MAX_AHEAD): page it from offset 0")
        self.max_ahead = max_ahead


class OffsetTooLarge(FeedError):
    def __init__(self, max_offset: int) -> None:
        super().__init__(f"offset: a random page accepts an offset of at most {max_offset} "
                         f"(VIRALSPOT_RANDOM_MAX_OFFSET)")
        self.max_offset = max_offset


class SessionLimit(FeedError):
    """A session that would pass its most feeds or items."""

    error_code = "SESSION_LIMIT"

    SETTINGS = {"feeds": "VIRALSPOT_SESSION_MAX_FEEDS", "items": "VIRALSPOT_SESSION_MAX_ITEMS"}

    def __init__(self, what: str, limit: int) -> None:
        detail = {"feeds": f"session_id: this session already holds {limit} random feeds (filter sets), the most "
                           f"a session holds ({self.SETTINGS['feeds']}); reset it to start again",
                  "items": f"session_id: this page would take the session past {limit} served items, the most a "
                           f"session holds ({self.SETTINGS['items']}); reset it to start again"}[what]
        super().__init__(detail)
        self.what = what
        self.limit = limit


class WeightedOutOfRange(FeedError):
    """A catalog whose keys pass what a weighted order's ticket positions can hold."""

    def __init__(self, largest: int) -> None:
        super().__init__(f"random_order: weighted feeds serve catalogs whose ids are at most {largest}; "
                         f"use random_order=true")


class FeedConflict(FeedError):
    """Concurrent requests of one session kept changing it under this page."""

    error_code = "SESSION_CONFLICT"

    def __init__(self) -> None:
        super().__init__("Too many concurrent requests for this session")
