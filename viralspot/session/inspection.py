"""What a session looks like from outside: ``GET /api/sessions/<id>`` and ``flask sessions show``.

A feed's key is ``<endpoint kind>:<filter hash>`` (``feed/service.py``, ``feed_key``), so the
document can name each feed's endpoint without the store knowing about endpoints.
"""
from __future__ import annotations

from datetime import datetime, timezone

from ..store import SessionSummary
from ..timeutil import utc_timestamp


def feed_endpoint(feed_key: str) -> str | None:
    """``/api/reels`` for a feed key ``reels:...``; None for a key of no known endpoint."""
    kind, separator, _hash = feed_key.partition(":")
    return f"/api/{kind}" if separator and kind in ("reels", "posts") else None


def _timestamp(epoch_seconds: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(epoch_seconds, timezone.utc))


def session_document(summary: SessionSummary) -> dict:
    """The documented ``data.session`` of an active session."""
    return {
        "session_id": summary.session_id,
        "generation": summary.generation,
        "served_items_count": summary.served_items_count,
        "created_at": _timestamp(summary.created_at),
        "last_seen_at": _timestamp(summary.last_seen_at),
        "expires_in_seconds": max(0, int(summary.expires_in_seconds)),
        "feeds": [
            {"feed_key": key, "endpoint": feed_endpoint(key), "served_items_count": feed.served,
             "exhausted": feed.exhausted}
            for key, feed in summary.feeds.items()
        ],
    }
