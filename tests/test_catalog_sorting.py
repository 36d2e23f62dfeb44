"""Every sort (and the default order) with its tie-break, and pagination that never repeats or skips."""
from __future__ import annotations

import pytest

from catalog_data import all_ids, expected_order
from viralspot.catalog.queries import SORTS_POSTS, SORTS_REELS


@pytest.mark.parametrize("sort_by", [None, *SORTS_REELS])
def test_reel_sorts_follow_the_documented_order(fixture_catalog, sort_by):
    app, records, now = fixture_catalog
    query = {"content_types": "reel,post,story"}
    if sort_by:
        query["sort_by"] = sort_by
    expected = expected_order(records, "reels", query, now)
    assert len(expected) == len(records)
    assert all_ids(app.test_client(), "/api/reels", query, limit=100) == expected


@pytest.mark.parametrize("sort_by", [None, *SORTS_POSTS])
def test_post_sorts_follow_the_documented_order(fixture_catalog, sort_by):
    app, records, now = fixture_catalog
    query = {"sort_by": sort_by} if sort_by else {}
    expected = expected_order(records, "posts", query, now)
    assert all_ids(app.test_client(), "/api/posts", query, limit=100) == expected


@pytest.mark.parametrize("limit", [1, 4, 7, 24, 59, 60, 100])
@pytest.mark.parametrize("sort_by", ["popular", "views", "recent", "oldest", "followers", "account_engagement"])
def test_pagination_returns_every_item_exactly_once(fixture_catalog, limit, sort_by):
    app, records, _now = fixture_catalog
    query = {"content_types": "reel,post,story", "sort_by": sort_by}
    ids = all_ids(app.test_client(), "/api/reels", query, limit=limit)
    assert len(ids) == len(set(ids)) == len(records)


def test_is_last_page_is_exact(fixture_catalog):
    app, records, _now = fixture_catalog
    client = app.test_client()
    total = sum(r["content_type"] == "reel" for r in records)
    exact = client.get("/api/reels", query_string={"limit": total}).json["data"]
    assert len(exact["reels"]) == total and exact["isLastPage"] is True
    short = client.get("/api/reels", query_string={"limit": total - 1}).json["data"]
    assert len(short["reels"]) == total - 1 and short["isLastPage"] is False
    past = client.get("/api/reels", query_string={"offset": total + 5}).json["data"]
    assert past == {"reels": [], "isLastPage": True}
