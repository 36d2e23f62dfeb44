"""Every sort (and the default order) with its tie-break, and pagination that never repeats or skips."""
from __future__ import annotations

import pytest

from catalog_data import all_ids, expected_order
from viralspot.catalog.filters import content_filter
from viralspot.catalog.queries import SORTS_POSTS, SORTS_REELS, plain_order_statement


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


@pytest.mark.parametrize("sort_by", ["account_engagement", "content_engagement"])
def test_the_engagement_sorts_read_their_index_in_order(fixture_catalog, sort_by):
    """The rates are stored at write time and indexed: a page reads the index in order, as the other
    sorts do. Computed by each query, they sorted every matching row: at 1M items on SQLite, 2.4 s (account)
    and 1.4 s (content) of CPU a page. PostgreSQL is told not to sort, so a plan still sorting has no
    index to read."""
    app, _records, _now = fixture_catalog
    engine = app.extensions["viralspot.catalog"]
    stmt = plain_order_statement(content_filter("reels", {}), sort_by).limit(24)
    with engine.connect() as conn:
        sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET enable_sort = off")
            plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {sql}").scalars())
            assert "Sort" not in plan and f"ix_content_{sort_by}" in plan, plan
        else:
            plan = "\n".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "TEMP B-TREE" not in plan and f"ix_content_{sort_by}" in plan, plan


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
