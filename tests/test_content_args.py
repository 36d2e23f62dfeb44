"""Validation of the /api/reels and /api/posts arguments: 400 envelopes naming the argument."""
from __future__ import annotations

import pytest

from viralspot.catalog.filters import content_filter
from viralspot.schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema

BAD = [
    ("limit", "0"), ("limit", "101"), ("limit", "ten"), ("offset", "-1"), ("offset", "1.5"),
    ("offset", "10000000000"), ("min_views", "-5"), ("max_likes", "abc"), ("min_comments", "1e400"),
    ("min_followers", "99999999999999999999999"), ("min_outlier_score", "nan"), ("max_outlier_score", "-1"),
    ("min_account_engagement_rate", "101"), ("max_account_engagement_rate", "-0.1"),
    ("is_verified", "maybe"), ("date_range", "decade"), ("sort_by", "random"), ("random_order", "sometimes"),
    ("content_types", "reel,gif"), ("account_types", "Celebrity"), ("search", "x" * 501),
    ("primary_categories", ",".join(["c"] * 101)), ("keywords", "k" * 256),
]


@pytest.mark.parametrize("path", ["/api/reels", "/api/posts"])
@pytest.mark.parametrize(("name", "value"), BAD)
def test_malformed_or_out_of_range_argument_is_a_400_naming_it(client, path, name, value):
    response = client.get(path, query_string={name: value})
    assert response.status_code == 400
    body = response.json
    assert body["success"] is False
    assert body["error_code"] == "INVALID_PARAMETER"
    assert name in body["detail"]


@pytest.mark.parametrize("sort_by", ["views", "followers", "account_engagement", "content_engagement"])
def test_posts_refuse_sorts_they_do_not_support(client, sort_by):
    assert client.get("/api/reels", query_string={"sort_by": sort_by}).status_code == 200
    response = client.get("/api/posts", query_string={"sort_by": sort_by})
    assert response.status_code == 400
    assert "sort_by" in response.json["detail"]


def test_min_above_max_is_refused(client):
    response = client.get("/api/reels?min_likes=10&max_likes=5")
    assert response.status_code == 400
    assert "min_likes" in response.json["detail"]


def test_random_order_without_session_id_is_missing_parameter(client):
    response = client.get("/api/reels?random_order=true")
    assert response.status_code == 400
    assert response.json["error_code"] == "MISSING_PARAMETER"
    assert response.json["detail"] == "session_id is required when random_order=true"


@pytest.mark.parametrize(("session_id", "code"), [("   ", "EMPTY_VALUE"), ("a b", "INVALID_FORMAT"),
                                                  ("x" * 256, "TOO_LONG")])
def test_session_id_follows_its_own_rules(client, session_id, code):
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": session_id})
    assert response.status_code == 400
    assert response.json["error_code"] == code


def test_random_order_with_a_session_answers_a_page(client):
    response = client.get("/api/reels?random_order=true&session_id=abc-1")
    assert response.status_code == 200
    assert response.json["data"] == {"reels": [], "isLastPage": True}


def test_blank_filters_count_as_absent_and_defaults_apply():
    args = ContentQueryArgsSchema().load({"min_views": "", "search": "  ", "sort_by": "", "keywords": ""})
    assert args == {"random_order": False, "limit": 24, "offset": 0}


def test_comma_lists_are_split_and_stripped():
    args = ContentQueryArgsSchema().load({"primary_categories": " Food, ,Travel ", "account_types": "theme page"})
    assert args["primary_categories"] == ["Food", "Travel"]
    assert args["account_types"] == ["Theme Page"]


def test_posts_schema_accepts_view_filters_which_the_filter_then_drops():
    args = PostQueryArgsSchema().load({"min_views": "10", "max_views": "20"})
    assert args["min_views"] == 10
    flt = content_filter("posts", args)
    assert flt.min_views is None and flt.max_views is None
    assert content_filter("reels", args).min_views == 10
