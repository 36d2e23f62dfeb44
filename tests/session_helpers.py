"""Helpers for tests that need a session with served items, or page a random feed through the API."""
from __future__ import annotations

from viralspot.catalog.database import ITEM_SNAPSHOTS


def serve(store, session_id, keys, feed="reels"):
    """Record ``keys`` as served to the session, the way the random feed does (one claim)."""
    view = store.read_feed(session_id, feed, 0, 0)
    result = store.claim_unseen(
        session_id, feed, generation=view.generation, expect_cursor=view.cursor, expect_plan=view.plan,
        plan="p", domain=10**6, candidates=list(enumerate(keys, start=view.cursor)),
        scanned_to=view.cursor + len(keys), want=len(keys), page=(0, 0))
    assert result.ok
    return result


def snapshot_reads(app) -> int:
    """Pages whose items the app read from an item snapshot (-1 when snapshots are off)."""
    snapshots = app.extensions[ITEM_SNAPSHOTS]
    return -1 if snapshots is None else snapshots.pages_read


def page(client, session_id, offset=0, limit=24, path="/api/reels", *, from_snapshot=True, **filters):
    """(ids, isLastPage) of a random page. On a "+snapshot" plan, a page with items must have read
    them from the item snapshot (unless ``from_snapshot`` is False: a state that has none yet)."""
    query = {"random_order": "true", "session_id": session_id, "offset": offset, "limit": limit, **filters}
    reads = snapshot_reads(client.application)
    response = client.get(path, query_string=query)
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
