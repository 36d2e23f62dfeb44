"""Helpers for tests that need a session with served items."""
from __future__ import annotations


def serve(store, session_id, keys, feed="reels"):
    """Record ``keys`` as served to the session, the way the random feed does (one claim)."""
    view = store.read_feed(session_id, feed, 0, 0)
    result = store.claim_unseen(
        session_id, feed, generation=view.generation, expect_cursor=view.cursor, expect_plan=view.plan,
        plan="p", domain=10**6, candidates=list(enumerate(keys, start=view.cursor)),
        scanned_to=view.cursor + len(keys), want=len(keys), page=(0, 0))
    assert result.ok
    return result
