"""Validation of the /api/reels and /api/posts arguments: 400 envelopes naming the argument."""
from __future__ import annotations

import pytest
from flask import request

from viralspot.args import ApiParser
from viralspot.catalog.filters import content_filter
from viralspot.error_codes import ApiError
from viralspot.schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema

BAD = [
    ("limit", "0"), ("limit", "101"), ("limit", "ten"), ("offset", "-1"), ("offset", "1.5"),
    ("offset", "10000000000"), ("min_views", "-5"), ("max_likes", "abc"), ("min_comments", "1e400"),
    ("min_followers", "99999999999999999999999"), ("min_outlier_score", "nan"), ("max_outlier_score", "-1"),
    ("min_account_engagement_rate", "101"), ("max_account_engagement_rate", "-0.1"),
    ("is_verified", "maybe"), ("date_range", "decade"), ("sort_by", "random"), ("random_order", "sometimes"),
    ("content_types", "reel,gif"), ("account_types", "Celebrity"), ("search", "x" * 501),
    ("primary_categories", ",".join(["c"] * 101)), ("keywords", "k" * 256),
    # Numbers Python's int() and float() take but nobody writes in a URL:
    ("offset", "+5"), ("offset", "1_000"), ("limit", " 5"), ("limit", "5\n"), ("offset", "\u0663"),
    ("min_views", "\uff11"), ("min_outlier_score", "1_0"), ("max_outlier_score", "+2"), ("min_outlier_score", "inf"),
    ("min_account_engagement_rate", "\u0665"),
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


@pytest.mark.parametrize("value, named", [("true", "true"), ("1", "true"), ("weighted", "weighted"),
                                          ("WEIGHTED", "weighted")])
def test_random_order_without_session_id_is_missing_parameter(client, value, named):
    response = client.get(f"/api/reels?random_order={value}")
    assert response.status_code == 400
    assert response.json["error_code"] == "MISSING_PARAMETER"
    assert response.json["detail"] == f"session_id is required when random_order={named}"


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


@pytest.mark.parametrize(("value", "loaded"), [("true", True), ("1", True), ("yes", True), ("ON", True),
                                               ("false", False), ("0", False), ("No", False), ("off", False),
                                               ("weighted", "weighted"), ("Weighted", "weighted"),
                                               ("WEIGHTED", "weighted")])
def test_random_order_reads_boolean_spellings_and_weighted(value, loaded):
    assert ContentQueryArgsSchema().load({"random_order": value, "session_id": "s"})["random_order"] == loaded


# Surrounding spaces are malformed, as in every other argument: a boolean's and weighted's alike.
@pytest.mark.parametrize("value", ["tRuE", "2", "weighed", "yes please", "wEIGHTED", " true ", " weighted ", "weighted\n",
                                   "\tWEIGHTED"])
def test_random_order_refuses_other_values(client, value):
    response = client.get("/api/reels", query_string={"random_order": value, "session_id": "s"})
    assert response.status_code == 400
    assert response.json["detail"] == "random_order: Must be true, false or weighted."


@pytest.mark.parametrize(("name", "value", "loaded"), [
    ("offset", "007", 7), ("limit", "100", 100), ("min_views", "0", 0), ("min_outlier_score", "1.5", 1.5),
    ("min_outlier_score", ".5", 0.5), ("max_outlier_score", "2.", 2.0), ("max_outlier_score", "1e1", 10.0),
    ("min_account_engagement_rate", "2.5E-1", 0.25)])
def test_decimal_numbers_are_read(name, value, loaded):
    assert ContentQueryArgsSchema().load({name: value})[name] == loaded


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


def test_equal_filter_arguments_share_one_filter_and_different_ones_do_not():
    # content_filter remembers filters per (kind, arguments): a feed's pages reuse one, signature included.
    first = content_filter("reels", {"primary_categories": ["Food", "Tech"], "min_views": 10, "limit": 5})
    again = content_filter("reels", {"primary_categories": ["Food", "Tech"], "min_views": 10, "offset": 48})
    assert again is first
    others = [content_filter("posts", {"primary_categories": ["Food", "Tech"], "min_views": 10}),
              content_filter("reels", {"primary_categories": ["Food"], "min_views": 10}),
              content_filter("reels", {"primary_categories": ["Food", "Tech"], "min_views": 11}),
              content_filter("reels", {"primary_categories": ["Food", "Tech"], "min_views": 10, "is_verified": True})]
    assert len({id(flt) for flt in [first, *others]}) == 5
    assert len({flt.signature() for flt in [first, *others]}) == 5
    assert others[3].is_verified is True and first.is_verified is None


def test_a_filter_argument_nothing_can_hash_still_gives_its_filter():
    flt = content_filter("reels", {"primary_categories": [["nested"]], "languages": {"en": 1}})
    assert flt.primary_categories == ("['nested']",) and flt.languages == ("en",)


def test_a_malformed_argument_is_our_400_not_webargs_422(app):
    with app.test_request_context("/api/reels?limit=x"):
        with pytest.raises(ApiError) as refused:
            ApiParser().parse(ContentQueryArgsSchema(), request, location="query")
    assert (refused.value.status, refused.value.error_code) == (400, "INVALID_PARAMETER")
    assert refused.value.detail.startswith("limit: ")


def test_a_schema_with_a_list_field_still_gets_every_repeated_value(app):
    from marshmallow import Schema, fields

    class TagsSchema(Schema):
        tag = fields.List(fields.String())

    with app.test_request_context("/x?tag=a&tag=b"):
        assert ApiParser().parse(TagsSchema(), request, location="query") == {"tag": ["a", "b"]}


@pytest.mark.parametrize("query, code, detail", [
    ("primary_categories=Food&primary_categories=Tech", "INVALID_PARAMETER",
     "primary_categories: given 2 times; give it once (a list is one comma-separated value: a,b)"),
    ("random_order=true&random_order=false&session_id=s", "INVALID_PARAMETER", "random_order: given 2 times; give it once"),
    ("random_order=true&session_id=ok&session_id=bad@id", "INVALID_FORMAT", "session_id: given 2 times; give it once"),
    ("limit=5&limit=6&limit=7", "INVALID_PARAMETER", "limit: given 3 times; give it once"),
])
def test_an_argument_given_twice_is_a_400_naming_it(client, query, code, detail):
    """The first value won, silently: two categories filtered by one, and ``session_id=ok&session_id=bad@id``
    was served while the same two the other way round were refused."""
    response = client.get(f"/api/reels?{query}")
    assert response.status_code == 400
    assert (response.json["error_code"], response.json["detail"]) == (code, detail)


def test_a_session_id_given_twice_to_the_reset_is_refused_in_its_own_codes(client):
    response = client.post("/api/reset-session?session_id=a&session_id=b")
    assert (response.status_code, response.json["error_code"]) == (400, "INVALID_FORMAT")


def test_an_argument_no_route_declares_may_come_twice(client):
    assert client.get("/api/reels?limit=1&_=1&_=2").status_code == 200


@pytest.mark.parametrize("query, named", [("search=%ff%fe", "search"), ("languages=en,%c3", "languages"),
                                          ("limit=2&keywords=caf%e9", "keywords")])
def test_an_argument_that_is_not_utf8_once_decoded_is_a_400_naming_it(client, query, named):
    """Werkzeug keeps such bytes percent-encoded, so a search for them answered 200 with nothing found."""
    response = client.get(f"/api/reels?{query}")
    assert (response.status_code, response.json["error_code"]) == (400, "INVALID_PARAMETER")
    assert response.json["detail"] == f"{named}: not UTF-8 once percent-decoded"


def test_utf8_arguments_and_unknown_ones_with_other_bytes_are_taken(client):
    assert client.get("/api/reels?search=caf%C3%A9&keywords=%E2%9C%93&x=%ff").status_code == 200
    # A session id's own rule refuses such bytes, in its own code.
    response = client.get("/api/reels?random_order=true&session_id=%ff")
    assert (response.status_code, response.json["error_code"]) == (400, "INVALID_FORMAT")
