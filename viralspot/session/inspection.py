"""What a session looks like from outside: ``GET /api/sessions/<id>`` and ``flask sessions show``.
A feed's id (``feed/service.py``) is the endpoint's initial (a capital for a weighted feed) and 8
bytes of the filter's hash."""
from __future__ import annotations

from datetime import datetime, timezone

from ..store import SessionSummary
from ..clock import utc_timestamp

KINDS = {b"r": "reels", b"p": "posts"}


def feed_key(feed_id: bytes) -> str:
    """``reels:<16 hex digits>`` for a feed id; ``reels+weighted:...`` for a weighted feed."""
    weighted = "+weighted" if feed_id[:1].isupper() else ""
    return f"{KINDS.get(feed_id[:1].lower(), '?')}{weighted}:{feed_id[1:].hex()}"


def feed_endpoint(feed_id: bytes) -> str | None:
    """``/api/reels`` for a feed of the reels endpoint; None for an id of no known endpoint."""
    kind = KINDS.get(feed_id[:1].lower())
    return f"/api/{kind}" if kind else None


def _timestamp(epoch_seconds: float) -> str:
    return utc_timestamp(datetime.fromtimestamp(epoch_seconds, timezone.utc))


def session_document(summary: SessionSummary) -> dict:
    """The documented ``data.session`` of an active session."""
    return {
        "session_id": summary.session_id,
        "served_items_count": summary.served_items_count,
        "created_at": _timestamp(summary.created_at),
        "last_seen_at": _timestamp(summary.last_seen_at),
        "expires_in_seconds": max(0, int(summary.expires_in_seconds)),
        "feeds": [
            {"feed_key": feed_key(key), "endpoint": feed_endpoint(key), "served_items_count": feed.served,
             "positions_examined": feed.cursor}
            for key, feed in summary.feeds.items()
        ],
    }
