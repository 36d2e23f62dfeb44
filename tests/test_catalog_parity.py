"""SQLite and PostgreSQL answer alike, and random feeds serve the plain listing's set: cases a review
comparing the two databases found different, each fixed at the root (real SQLite and PostgreSQL, as
the other catalog tests)."""
from __future__ import annotations

import json

import pytest

from catalog_data import all_ids
from conftest import dispose_catalog_app, make_catalog_app
from viralspot.catalog.importer import import_lines

ALL_TYPES = "reel,post,story"


def line(content_id: str, **fields) -> str:
    record = {"content_id": content_id, "shortcode": content_id, "content_type": "reel",
              "date_posted": "2026-11-01T00:00:00Z", "username": f"user_{content_id}", **fields}
    return json.dumps(record)


def random_ids(client, query: dict, session_id: str) -> list[str]:
    return all_ids(client, "/api/reels", {**query, "random_order": "true", "session_id": session_id}, limit=5)


@pytest.fixture
def app_at(database_url):
    """An app on a fresh catalog with its clock pinned at the instant given."""
    made = []

    def make(fixed_now: str):
        made.append(make_catalog_app(database_url, FIXED_NOW=fixed_now))
        return made[-1]

    yield make
    for application in made:
        dispose_catalog_app(application)


@pytest.mark.parametrize("argument", ["search", "keywords"])
@pytest.mark.parametrize("query, expected", [
    ("ΣΟΦΟΣ", ["g1"]), ("σοφοσ", ["g1"]), ("İstanbul", ["t1"]), ("istanbul", ["t1"]), ("İSTANBUL", ["t1"]),
    ("kelvin", ["k1"]), ("KELVIN", ["k1"]), ("\u212aelvin", ["k1"]),
    ("PLA", ["x1"]), ("lvn", []),  # ASCII without i or k: matched through lower() (filters.py)
])
def test_search_folds_case_by_one_rule(app_at, argument, query, expected):
    """Python's ``str.lower`` maps "İ" to two characters and a word-final "Σ" to "ς"; PostgreSQL's
    ``lower()`` maps each character alone: "İstanbul" and "ΣΟΦΟΣ" did not find themselves there. An
    ASCII text went to SQLite's ``LIKE``, which folds no Kelvin sign: "kelvin" found nothing there."""
    app = app_at("2026-12-02T12:00:00Z")
    report = import_lines(app.extensions["viralspot.catalog"], [
        line("g1", description="ΣΟΦΟΣ", keyword_1="ΣΟΦΟΣ"), line("t1", description="İSTANBUL", keyword_1="İSTANBUL"),
        line("k1", description="\u212aELVIN", keyword_1="\u212aELVIN"), line("x1", description="plain")])
    assert report.rejected == 0, report.errors
    query_args = {"content_types": ALL_TYPES, argument: query}
    client = app.test_client()
    assert all_ids(client, "/api/reels", query_args) == expected
    assert random_ids(client, query_args, "fold") == expected


@pytest.mark.parametrize("fixed_now, posted, inside", [
    # SQLite's strftime('%s') rounded 59.9995 s up to the next second: the random feed kept the item.
    ("2026-12-02T12:30:00Z", "2026-12-01T12:29:59.9995Z", False),
    ("2026-12-02T12:30:00Z", "2026-12-01T12:30:00Z", True),
    # A clock with a fraction: the plain filter compared it exactly, the feed by whole seconds.
    ("2026-12-02T12:30:00.500Z", "2026-12-01T12:30:00.7Z", True),
    ("2026-12-02T12:30:00.500Z", "2026-12-01T12:29:59.9Z", False),
])
def test_a_date_range_keeps_the_same_items_in_plain_and_random_pages(app_at, fixed_now, posted, inside):
    app = app_at(fixed_now)
    report = import_lines(app.extensions["viralspot.catalog"], [line("edge", date_posted=posted),
                                                                line("new", date_posted="2026-12-02T00:00:00Z")])
    assert report.rejected == 0, report.errors
    query = {"content_types": ALL_TYPES, "date_range": "day"}
    expected = ["new", "edge"] if inside else ["new"]
    client = app.test_client()
    assert sorted(all_ids(client, "/api/reels", query)) == sorted(expected)
    assert sorted(random_ids(client, query, "edge")) == sorted(expected)


@pytest.mark.parametrize("huge", [1e16, 1e308])
def test_a_huge_outlier_score_weighs_as_the_largest(app_at, huge):
    """PostgreSQL refused the score x 1000 as a bigint: every weighted page of the catalog was a 500."""
    app = app_at("2026-12-02T12:00:00Z")
    import_lines(app.extensions["viralspot.catalog"], [line("big", outlier_score=huge), line("small", outlier_score=1.0)])
    response = app.test_client().get("/api/reels", query_string={"random_order": "weighted", "session_id": "w",
                                                                  "limit": 10})
    assert response.status_code == 200, response.get_json()
    assert sorted(item["content_id"] for item in response.get_json()["data"]["reels"]) == ["big", "small"]


def test_an_import_refuses_the_same_lines_on_both_databases(app_at):
    app = app_at("2026-12-02T12:00:00Z")
    report = import_lines(app.extensions["viralspot.catalog"], [
        line("nul", description="nul\x00byte"),                        # SQLite stored it, PostgreSQL refused
        line("bio", bio="x\x00y"),
        line("url", all_image_urls=["https://a.example/\x00"]),
        line("early", date_posted="0001-01-01T00:00:00+01:00"),     # an OverflowError stopped the import
        line("late", date_posted="9999-12-31T23:30:00-01:00"),
        line("ok", categorization_confidence=-0.0, outlier_score=-0.0),
    ])
    assert [number for number, _reason in report.errors] == [1, 2, 3, 4, 5]
    reasons = [reason for _number, reason in report.errors]
    assert all("NUL" in reason for reason in reasons[:3]) and all("out of range" in r for r in reasons[3:]), reasons
    assert report.inserted == 1
    item = app.test_client().get("/api/reels", query_string={"content_types": ALL_TYPES}).get_json()["data"]["reels"][0]
    # PostgreSQL kept the sign of -0.0, SQLite did not: the same item on both now.
    assert json.dumps([item["categorization_confidence"], item["outlier_score"]]) == "[0.0, 0.0]"
