"""Each filter of /api/reels and /api/posts against the oracle, on every database backend."""
from __future__ import annotations

import sys
import threading

import pytest
from sqlalchemy import event

from catalog_data import all_ids, as_json_lines, expected_order, fixture_records, matches
from moments import PINNED_NOW
from test_failover import wait_for
from viralspot.catalog.importer import import_lines
from viralspot.catalog.tables import content


FILTERS = [
    {"primary_categories": "Food"},
    {"primary_categories": "Food, Tech & Gadgets"},
    {"secondary_categories": "Tips"},
    {"tertiary_categories": "Quick"},
    {"keywords": "pasta"},
    {"keywords": "BEACH,long_tail"},
    {"keywords": "100%"},
    {"min_outlier_score": "2.5"},
    {"max_outlier_score": "1"},
    {"min_outlier_score": "1", "max_outlier_score": "4.2"},
    {"min_views": "1000"},
    {"max_views": "999"},
    {"min_likes": "200", "max_likes": "400"},
    {"min_comments": "5"},
    {"max_comments": "2"},
    {"min_followers": "12000"},
    {"max_followers": "5000"},
    {"is_verified": "true"},
    {"is_verified": "false"},
    {"account_types": "Influencer"},
    {"account_types": "theme page,Personal"},
    {"content_types": "post"},
    {"content_types": "video,story"},
    {"content_types": "reel,image"},
    {"languages": "es"},
    {"content_styles": "vlog"},
    {"excluded_usernames": "alice,bob"},
    {"min_account_engagement_rate": "0.5"},
    {"max_account_engagement_rate": "0.05"},
    {"search": "item 1"},
    {"search": "ALICE"},
    {"primary_categories": "Travel", "min_followers": "1000", "keywords": "beach", "languages": "en,pt"},
]


#: Filters on the clock: checked at each pinned moment (tests/moments.py) on a catalog dated from it.
DATE_FILTERS = [{"date_range": "day"}, {"date_range": "week"}, {"date_range": "month"}, {"date_range": "year"}]


def canonical(query: dict) -> dict:
    fixed = dict(query)
    if "account_types" in fixed:  # the API matches account types case-insensitively
        names = {"theme page": "Theme Page", "personal": "Personal", "influencer": "Influencer"}
        fixed["account_types"] = ",".join(names.get(v.strip().lower(), v.strip())
                                          for v in fixed["account_types"].split(","))
    return fixed


@pytest.mark.parametrize("kind", ["reels", "posts"])
@pytest.mark.parametrize("query", FILTERS, ids=lambda q: "&".join(f"{k}={v}" for k, v in q.items()))
def test_each_filter_selects_exactly_the_matching_items(fixture_catalog, kind, query):
    app, records, now = fixture_catalog
    expected = expected_order(records, kind, canonical(query), now)
    baseline = expected_order(records, kind, {"content_types": query.get("content_types", "")}, now)
    got = all_ids(app.test_client(), f"/api/{kind}", query)
    assert got == expected
    # The filter is meaningful on this fixture for at least one endpoint kind.
    if kind == "reels" and "content_types" not in query and "views" not in str(query):
        assert len(expected) < len(baseline)


@pytest.mark.parametrize("kind", ["reels", "posts"])
@pytest.mark.parametrize("query", DATE_FILTERS, ids=lambda q: q["date_range"])
def test_each_date_range_selects_exactly_the_items_posted_within_it(dated_catalog, kind, query):
    app, records, now = dated_catalog
    expected = expected_order(records, kind, query, now)
    assert expected and len(expected) < len(expected_order(records, kind, {}, now))
    assert all_ids(app.test_client(), f"/api/{kind}", query) == expected


def test_filters_are_non_trivial_on_the_fixture(fixture_catalog):
    _app, records, now = fixture_catalog
    for query in FILTERS + DATE_FILTERS:
        hits = sum(matches(r, "reels", canonical(query), now) or matches(r, "posts", canonical(query), now)
                   for r in records)
        assert 0 < hits < len(records), query


def test_posts_ignore_view_filters(fixture_catalog):
    app, records, now = fixture_catalog
    client = app.test_client()
    plain = all_ids(client, "/api/posts", {})
    assert plain and all_ids(client, "/api/posts", {"min_views": "1000000"}) == plain
    assert all(item["content_type"] == "post"
               for item in client.get("/api/posts?limit=100").json["data"]["reels"])


def test_default_content_type_per_endpoint(fixture_catalog):
    app, records, _now = fixture_catalog
    client = app.test_client()
    reels = client.get("/api/reels?limit=100").json["data"]["reels"]
    assert {item["content_type"] for item in reels} == {"reel"}
    assert len(reels) == sum(r["content_type"] == "reel" for r in records)
    stories = client.get("/api/posts?limit=100&content_types=story").json["data"]["reels"]
    assert {item["content_type"] for item in stories} == {"story"}


HOSTILE = ["%", "_", "100%", "50%_", "\\", "C:\\temp", "'", '"quoted"', "it's", "'; DROP TABLE content; --",
           "' OR '1'='1", "%%", "__", "\\%", "Percent sign alone: %", "under_score"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_search_strings_match_as_text(fixture_catalog, text):
    app, records, now = fixture_catalog
    client = app.test_client()
    query = {"search": text, "content_types": "reel,post,story"}
    expected = expected_order(records, "reels", query, now)
    assert all_ids(client, "/api/reels", query) == expected
    # keywords share the escaping
    kw_query = {"keywords": text.replace(",", ""), "content_types": "reel,post,story"}
    if kw_query["keywords"].strip():
        assert all_ids(client, "/api/reels", kw_query) == expected_order(records, "reels", kw_query, now)


def test_hostile_strings_select_the_literal_items_and_leave_the_table_intact(fixture_catalog):
    app, records, _now = fixture_catalog
    client = app.test_client()
    everything = {"content_types": "reel,post,story"}
    percent = all_ids(client, "/api/reels", {**everything, "search": "%"})
    assert sorted(percent) == sorted(r["content_id"] for r in records
                                     if "%" in r["description"] or "%" in r["username"])
    assert len(percent) < len(records)  # a raw LIKE '%%%' would match everything
    underscore = all_ids(client, "/api/reels", {**everything, "search": "_"})
    assert len(underscore) < len(records)
    assert all_ids(client, "/api/reels", {**everything, "search": "'; DROP TABLE content; --"}) == ["c005"]
    with app.app_context():
        with app.extensions["viralspot.catalog"].connect() as conn:
            assert conn.execute(content.select()).all().__len__() == len(records)


def test_filter_options_lists_sorted_distinct_values(fixture_catalog):
    app, records, _now = fixture_catalog
    data = app.test_client().get("/api/filter-options").json["data"]
    assert data["primary_categories"] == sorted({r["primary_category"] for r in records})
    assert data["secondary_categories"] == ["Recipes", "Tips"]
    assert data["tertiary_categories"] == ["Deep", "Quick"]
    assert data["keywords"] == sorted({r[f"keyword_{n}"] for r in records for n in range(1, 5)} - {None})
    assert data["usernames"] == [{"username": name, "profile_name": (profile_name or name)}
                                 for name, profile_name in sorted((r["username"], r["profile_name"])
                                                                  for r in {x["username"]: x for x in records}
                                                                  .values())]
    assert data["account_types"] == sorted({r["account_type"] for r in records})
    assert data["content_types"] == ["post", "reel", "story"]
    assert data["languages"] == ["en", "es", "pt"]
    assert data["content_styles"] == ["tutorial", "vlog"]


def _waiting_for_a_future(thread: threading.Thread) -> bool:
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "result" and "concurrent" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def one_computing_the_rest_waiting(ask, computes, release: threading.Event, waiting: int) -> None:
    """One thread runs ``ask``; once it computes (``computes()``), ``waiting`` more; once they all wait
    for the first one's answer, ``release`` lets its computation go on. Every thread is joined."""
    first = threading.Thread(target=ask)
    others = [threading.Thread(target=ask) for _ in range(waiting)]
    try:
        first.start()
        wait_for(computes, 20, "the first request computes the options", 0.01)
        for thread in others:
            thread.start()
        wait_for(lambda: all(_waiting_for_a_future(thread) for thread in others), 20,
                 "the later requests wait for the first one's answer", 0.01)
    finally:
        release.set()
        for thread in [first, *others]:
            thread.join(60)


def test_filter_options_requests_during_their_computation_wait_for_it(catalog_app):
    """After a catalog write the first request computes the filter options; the requests of the same
    process that come while it does wait for its answer: one computation's statements in all."""
    engine = catalog_app.extensions["viralspot.catalog"]
    records = fixture_records(PINNED_NOW)
    with catalog_app.app_context():
        import_lines(engine, as_json_lines(records[:-1]))
    distinct_statements: list[str] = []
    computing = threading.Event()
    computing.set()

    @event.listens_for(engine, "before_cursor_execute")
    def hold_the_computation(conn, cursor, statement, parameters, context, executemany):
        if "DISTINCT" in statement.upper():
            distinct_statements.append(statement)
            computing.wait(60)

    client = catalog_app.test_client()
    before = client.get("/api/filter-options").json["data"]
    per_computation = len(distinct_statements)
    assert per_computation > 0

    added = {**records[-1], "keyword_1": "single-flight"}
    with catalog_app.app_context():
        import_lines(engine, as_json_lines([added]))
    distinct_statements.clear()
    computing.clear()
    answers: list = []

    def ask():
        response = catalog_app.test_client().get("/api/filter-options")
        answers.append((response.status_code, response.json["data"]))

    one_computing_the_rest_waiting(ask, lambda: distinct_statements, computing, waiting=5)
    assert [status for status, _ in answers] == [200] * 6
    assert all(data == answers[0][1] for _, data in answers)
    assert "single-flight" in answers[0][1]["keywords"] and "single-flight" not in before["keywords"]
    assert len(distinct_statements) == per_computation


@pytest.mark.postgres
def test_filter_options_that_failed_are_computed_again(postgres_server):
    """The computation's connection is lost: the request computing the options and those waiting for
    its answer get the 503 envelope; the next request computes them again."""
    from conftest import dispose_catalog_app, make_catalog_app

    url = postgres_server.create_database()
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    with app.app_context():
        import_lines(engine, as_json_lines(fixture_records(PINNED_NOW)))
    computing = threading.Event()
    lost = []

    @event.listens_for(engine, "before_cursor_execute")
    def lose_the_connection(conn, cursor, statement, parameters, context, executemany):
        if "DISTINCT" in statement.upper() and not lost:
            lost.append(statement)
            computing.wait(60)
            cursor.connection.close()

    answers: list = []

    def ask():
        response = app.test_client().get("/api/filter-options")
        answers.append((response.status_code, response.json["error_code"] if response.status_code != 200 else None))

    one_computing_the_rest_waiting(ask, lambda: lost, computing, waiting=3)
    try:
        assert answers == [(503, "DATABASE_UNAVAILABLE")] * 4
        response = app.test_client().get("/api/filter-options")
        assert response.status_code == 200
        assert response.json["data"]["content_types"] == ["post", "reel", "story"]
    finally:
        dispose_catalog_app(app)
        postgres_server.drop_database(url)


@pytest.mark.parametrize("query, found", [
    ({"search": "café"}, True), ({"search": "CAFÉ"}, True), ({"search": "école"}, True),
    ({"search": "ÉCOLE"}, True), ({"search": "straße"}, True), ({"search": "cafe"}, False),
    ({"keywords": "Über"}, True), ({"keywords": "über"}, True), ({"keywords": "ÜBER"}, True),
    ({"keywords": "uber"}, False),
])
def test_search_and_keywords_ignore_case_beyond_ascii(catalog_app, query, found):
    """SQLite's lower() and LIKE fold ASCII letters only: "café" did not find "CAFÉ", and a keyword
    "Über" was matched by no spelling at all, though the filter options list it."""
    record = {**fixture_records(PINNED_NOW)[0], "content_id": "unicode-1", "shortcode": "UNICODE1",
              "content_type": "reel", "description": "Visit the CAFÉ École Straße", "keyword_1": "Über"}
    with catalog_app.app_context():
        report = import_lines(catalog_app.extensions["viralspot.catalog"], as_json_lines([record]))
    assert report.inserted == 1, report.errors
    client = catalog_app.test_client()
    assert client.get("/api/filter-options").json["data"]["keywords"].count("Über") == 1
    items = client.get("/api/reels", query_string=query).json["data"]["reels"]
    assert [item["id"] for item in items] == (["unicode-1"] if found else [])


def test_an_argument_the_endpoint_does_not_know_is_ignored(fixture_catalog):
    """As the upstream services do (a frontend may send its own, such as a cache buster): a misspelt
    filter filters nothing (README, Arguments)."""
    client = fixture_catalog[0].test_client()
    everything = all_ids(client, "/api/reels", {})
    assert all_ids(client, "/api/reels", {"primary_category": "Food", "foo": "bar", "%zz": "1"}) == everything
    assert len(all_ids(client, "/api/reels", {"primary_categories": "Food"})) < len(everything)
