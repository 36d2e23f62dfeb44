"""Helpers for tests that need a session with served items, or page a random feed through the API."""
from __future__ import annotations

from viralspot.catalog.database import ITEM_SNAPSHOTS
from viralspot.store import FeedView, PageStatus


#: A feed id of the reels endpoint (``feed/service.py``, ``feed_id``).
REELS_FEED = b"r" + bytes(range(8))
SEED = b"\x01" * 8


def serve(store, session_id, positions, feed=REELS_FEED, bounds=(10**6,)):
    """Record ``positions`` (ascending, past the feed's cursor) as served to the session in ``feed``,
    the way the random feed does: a read of the feed, then one page that takes them all."""
    view = FeedView(SEED, bounds)
    result = store.serve_page(session_id, feed, view, offset=0, limit=0, max_ahead=10**9)
    if result.status is PageStatus.SERVED:
        view = result.view
    result = store.serve_page(session_id, feed, view, offset=view.served, limit=len(positions), max_ahead=10**9,
                              candidates=list(positions), scanned_to=max(positions, default=view.cursor) + 1,
                              create=result.status is PageStatus.ABSENT)
    assert result.status is PageStatus.SERVED, result
    return result


def snapshot_reads(app) -> int:
    """Pages whose items the app read from an item snapshot (-1 when snapshots are off)."""
    snapshots = app.extensions[ITEM_SNAPSHOTS]
    return -1 if snapshots is None else snapshots.pages_read


def random_get(client, session_id, offset=0, limit=24, path="/api/reels", **filters):
    """The response to a random page of ``session_id`` (whatever its status)."""
    return client.get(path, query_string={"random_order": "true", "session_id": session_id, "offset": offset,
                                          "limit": limit, **filters})


def page(client, session_id, offset=0, limit=24, path="/api/reels", *, from_snapshot=True, **filters):
    """(ids, isLastPage) of a random page. On a "+snapshot" plan, a page with items must have read
    them from the item snapshot (unless ``from_snapshot`` is False: a state that has none yet)."""
    reads = snapshot_reads(client.application)
    response = random_get(client, session_id, offset, limit, path, **filters)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    if data["reels"] and reads >= 0 and from_snapshot:
        assert snapshot_reads(client.application) > reads, "the page's items did not come from the snapshot"
    return [item["id"] for item in data["reels"]], data["isLastPage"]


def drain(client, session_id, limit=50, path="/api/reels", **filters):
    served, offset = [], 0
    while True:
        ids, last = page(client, session_id, offset, limit, path, **filters)
        served.extend(ids)
        offset += limit
        if last:
            return served, ids
