"""Validation of the /api/reels and /api/posts arguments: 400 envelopes naming the argument."""
from __future__ import annotations

import pytest
from flask import request

from viralspot.args import MAX_REMEMBERED_QUERY, parser, present_arguments
from viralspot.catalog.filters import content_filter
from viralspot.api_errors import ApiError
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


QUERIES = [
    {},
    {"random_order": "true", "session_id": "abc-123", "offset": "48", "limit": "24"},
    {"min_views": "", "limit": " ", "session_id": ""},
    {"primary_categories": "Tech, ,Food", "sort_by": "views", "unknown_argument": "1"},
    {"min_likes": "10", "max_likes": "5"},
    {"random_order": "true"},
    {"content_types": "video,photo", "is_verified": "yes", "date_range": "week", "offset": "x"},
]


@pytest.mark.parametrize("schema_class", [ContentQueryArgsSchema, PostQueryArgsSchema])
@pytest.mark.parametrize("query", QUERIES)
def test_narrowed_schema_loads_what_the_full_schema_loads(app, schema_class, query):
    # Views load the schema narrowed to the arguments present (args.present_arguments): same
    # arguments, same defaults, same refusals as loading the full schema.
    narrowed = present_arguments(schema_class)
    with app.test_request_context("/api/reels", query_string=query):
        try:
            expected = parser.parse(schema_class(), request)
        except ApiError as error:
            expected = ("refused", error.detail, error.error_code)
        try:
            got = parser.parse(narrowed(request), request)
        except ApiError as error:
            got = ("refused", error.detail, error.error_code)
    assert got == expected
    if isinstance(expected, dict):
        assert {"random_order", "limit", "offset"} <= expected.keys()


def test_narrowed_schemas_are_reused_per_set_of_argument_names(app):
    narrowed = present_arguments(ContentQueryArgsSchema)
    with app.test_request_context("/api/reels?limit=5&offset=1&foo=2"):
        first = narrowed(request)
    with app.test_request_context("/api/reels?offset=9&limit=7"):
        second = narrowed(request)
    with app.test_request_context("/api/reels?limit=7"):
        third = narrowed(request)
    assert first is second
    assert third is not first
    assert set(first.load_fields) == {"limit", "offset"}


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


def test_a_repeated_query_argument_counts_with_its_first_value(app):
    # The query loader hands marshmallow a plain dict of first values, as webargs' proxy would.
    with app.test_request_context("/api/reels?limit=5&limit=7&primary_categories=Food&primary_categories=Tech"):
        args = parser.parse(present_arguments(ContentQueryArgsSchema)(request), request)
    assert args["limit"] == 5 and args["primary_categories"] == ["Food"]


def test_a_schema_with_a_list_field_still_gets_every_repeated_value(app):
    from marshmallow import Schema, fields

    class TagsSchema(Schema):
        tag = fields.List(fields.String())

    with app.test_request_context("/x?tag=a&tag=b"):
        assert parser.parse(TagsSchema(), request) == {"tag": ["a", "b"]}


def _parsed(app, argmap, query):
    """What ``parser.parse`` answers for ``query``: the arguments, or the refusal's detail and code."""
    with app.test_request_context("/api/reels", query_string=query):
        try:
            return parser.parse(argmap, request)
        except ApiError as error:
            return ("refused", error.detail, error.error_code)


SAME_BUT_SESSION = [
    # (query that warms the memory, query differing only in session_id)
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "b.2_x", "offset": "48"}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "  padded-1  "}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "a b"}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "   "}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "x" * 256}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "a\x00b"}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true"}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": ["b-2", "c-3"]}),
    ({"min_views": "10", "primary_categories": "Food,Tech"},
     {"min_views": "10", "primary_categories": "Food,Tech", "session_id": "s-9"}),
    ({"min_views": "10", "session_id": "a-1"}, {"min_views": "10", "session_id": ""}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "a-1", "offset": "72"}),
    ({"random_order": "true", "session_id": "a-1"}, {"random_order": "true", "session_id": "a-1", "offset": "24"}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"}, {"random_order": "true", "session_id": "a-1"}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "a-1", "offset": "-1"}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "a-1", "offset": "1.5"}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "a-1", "offset": " "}),
    ({"random_order": "true", "session_id": "a-1", "offset": "48"},
     {"random_order": "true", "session_id": "a-1", "offset": ["24", "48"]}),
    ({"offset": " ", "limit": "5"}, {"offset": "10000000000", "limit": "5"}),
]


@pytest.mark.parametrize("schema_class", [ContentQueryArgsSchema, PostQueryArgsSchema])
@pytest.mark.parametrize(("warm", "query"), SAME_BUT_SESSION)
def test_a_remembered_query_answers_what_loading_the_full_schema_answers(app, schema_class, warm, query):
    # A query remembered (args.PresentArguments.validated) answers, for another session_id or offset,
    # exactly what loading the whole schema answers: the arguments with those, or the same refusal.
    narrowed = present_arguments(schema_class)
    assert isinstance(_parsed(app, narrowed, warm), dict)
    assert _parsed(app, narrowed, query) == _parsed(app, schema_class(), query)


def test_a_query_differing_only_in_session_id_and_offset_is_answered_from_memory(app):
    narrowed = present_arguments(ContentQueryArgsSchema)
    query = {"random_order": "true", "offset": "24", "min_likes": "3", "content_types": "video"}
    with app.test_request_context("/api/reels", query_string={**query, "session_id": "b-2"}):
        assert narrowed.validated(request.args) is None  # nothing loaded yet
    first = _parsed(app, narrowed, {**query, "session_id": "a-1"})
    with app.test_request_context("/api/reels", query_string={**query, "session_id": "b-2"}):
        remembered = narrowed.validated(request.args)
    assert remembered == {**first, "session_id": "b-2"}
    with app.test_request_context("/api/reels", query_string={**query, "session_id": "b-2", "offset": "96"}):
        assert narrowed.validated(request.args) == {**first, "session_id": "b-2", "offset": 96}
    for other in ({**query, "session_id": "bad id"}, {**query, "session_id": ["b-2", "b-3"]},
                  {**query, "session_id": "b-2", "offset": "-24"}, {**query, "session_id": "b-2", "offset": ["0", "1"]},
                  {**query, "session_id": "b-2", "limit": "5"}, {**query, "session_id": "b-2", "min_likes": "4"}):
        with app.test_request_context("/api/reels", query_string=other):
            assert narrowed.validated(request.args) is None, other
    # Each answer is its own dict: a view changing one does not change the next.
    remembered["min_likes"] = 99
    assert _parsed(app, narrowed, {**query, "session_id": "c-3"})["min_likes"] == 3


def test_a_refused_query_is_not_remembered(app):
    narrowed = present_arguments(ContentQueryArgsSchema)
    refused = {"random_order": "true", "session_id": "a-1", "limit": "0"}
    assert _parsed(app, narrowed, refused)[0] == "refused"
    with app.test_request_context("/api/reels", query_string={**refused, "session_id": "b-2"}):
        assert narrowed.validated(request.args) is None
    assert _parsed(app, narrowed, {**refused, "session_id": "b-2"})[0] == "refused"


def test_a_query_longer_than_the_limit_is_loaded_every_time(app):
    narrowed = present_arguments(ContentQueryArgsSchema)
    long_words, short_words = ["w" * 40] * 60, ["w" * 40] * 20  # 2,459 and 819 characters of keywords
    assert len("keywords") + len(",".join(long_words)) > MAX_REMEMBERED_QUERY
    for words, remembered_expected in ((long_words, False), (short_words, True)):
        query = {"keywords": ",".join(words), "session_id": "a-1"}
        assert _parsed(app, narrowed, query)["keywords"] == words
        with app.test_request_context("/api/reels", query_string={**query, "session_id": "b-2"}):
            remembered = narrowed.validated(request.args)
        assert (remembered is not None) is remembered_expected
        assert _parsed(app, narrowed, {**query, "session_id": "b-2"})["keywords"] == words
