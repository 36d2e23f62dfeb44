"""The catalog functions the random feed builds on: ContentFilter, key lookups, plain_page_keys, serialize_item."""
from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from catalog_data import expected_order
from viralspot.catalog.filters import ContentFilter, content_filter
from viralspot.catalog.feed_source import SqlCandidateSource
from viralspot.catalog.queries import (catalog_state, items_by_keys, matching_keys,
                                       matching_keys_until, plain_page_keys)
from viralspot.catalog.tables import content
from viralspot.catalog.items import display_count, serialize_item
from viralspot.schemas.content import ContentQueryArgsSchema


def make_filter(kind: str, query: dict) -> ContentFilter:
    return content_filter(kind, ContentQueryArgsSchema().load(query))


# --- ContentFilter -------------------------------------------------------------

def test_filter_keeps_only_filter_arguments_in_canonical_form():
    flt = make_filter("reels", {"primary_categories": "Travel,Food,Food", "sort_by": "views", "limit": "5",
                                "offset": "10", "random_order": "true", "session_id": "s1",
                                "content_types": "video,reel", "date_range": "all", "search": "  hi "})
    assert flt.primary_categories == ("Food", "Travel")
    assert flt.content_types == ("reel",)
    assert flt.date_range is None and flt.search == "hi"
    assert not any(name in flt.canonical() for name in ("sort_by", "limit", "offset", "random_order", "session"))


def test_signature_ignores_argument_and_list_order_but_not_values():
    one = make_filter("reels", {"primary_categories": "Food,Travel", "min_likes": "3", "languages": "en,es"})
    two = make_filter("reels", {"languages": "es,en", "min_likes": "3", "primary_categories": "Travel,Food",
                                "sort_by": "recent"})
    assert one == two and one.signature() == two.signature()
    assert make_filter("reels", {"min_likes": "4"}).signature() != make_filter("reels", {"min_likes": "3"}).signature()
    assert make_filter("posts", {}).signature() != make_filter("reels", {}).signature()
    assert make_filter("reels", {"content_types": "reel"}).signature() == make_filter("reels", {}).signature()


def test_signature_is_stable_across_processes():
    flt = make_filter("reels", {"keywords": "b,a", "is_verified": "true", "min_outlier_score": "1.5"})
    code = ("from viralspot.catalog.filters import content_filter;"
            "print(content_filter('reels', {'keywords': ['a', 'b'], 'is_verified': True,"
            " 'min_outlier_score': 1.5}).signature())")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"})
        assert out.stdout.strip() == flt.signature()
    assert len(flt.signature()) == 64


def test_signature_values_are_pinned():
    """Feed keys of existing sessions are built from signatures: their values must never change."""
    flt = content_filter("reels", {"search": "pasta", "primary_categories": ["Food", "Travel"], "keywords": ["Vegan"],
                                   "min_views": 1000, "max_outlier_score": 5, "is_verified": True,
                                   "date_range": "week", "excluded_usernames": ["bob"]})
    assert flt.signature() == "6901bb2c3662d43e786156c62e2f62df5d6808dd999fd7b9c1179ee18405fdf2"
    assert flt.signature() == flt.signature()  # memoized or not, the same value
    assert content_filter("posts", {}).signature() == \
        "ad1e3410da639ec74b7ffd7d26f3aa70698ef0b71ec5dfec90807bac7cd5022b"
    assert content_filter("posts", {}).canonical() == (
        '{"account_types":[],"content_styles":[],"content_types":["post"],"date_range":null,'
        '"excluded_usernames":[],"is_verified":null,"keywords":[],"kind":"posts","languages":[],'
        '"max_account_engagement_rate":null,"max_comments":null,"max_followers":null,"max_likes":null,'
        '"max_outlier_score":null,"max_views":null,"min_account_engagement_rate":null,"min_comments":null,'
        '"min_followers":null,"min_likes":null,"min_outlier_score":null,"min_views":null,'
        '"primary_categories":[],"search":null,"secondary_categories":[],"tertiary_categories":[]}')


def test_where_joins_profiles_only_for_profile_conditions():
    plain = str(make_filter("reels", {"primary_categories": "Food"}).where(select(content.c.id)))
    assert "primary_profiles" not in plain
    for query in ({"min_followers": "1"}, {"is_verified": "false"}, {"account_types": "Personal"},
                  {"max_account_engagement_rate": "3"}):
        assert "primary_profiles" in str(make_filter("reels", query).where(select(content.c.id)))


def test_where_binds_every_value():
    flt = make_filter("reels", {"search": "x'; DROP TABLE content; --", "keywords": "a%b"})
    sql = str(flt.where(select(content.c.id)))
    assert "DROP" not in sql and "a%b" not in sql


# --- queries over the fixture catalog ------------------------------------------

def ids_of(app, content_ids: list[str]) -> list[int]:
    with app.extensions["viralspot.catalog"].connect() as conn:
        mapping = dict(conn.execute(select(content.c.content_id, content.c.id)).all())
    return [mapping[c] for c in content_ids]


def test_catalog_state_is_version_and_largest_id(fixture_catalog):
    app, records, _now = fixture_catalog
    with app.extensions["viralspot.catalog"].connect() as conn:
        version, largest = catalog_state(conn)
    assert version >= 1 and largest == len(records)


@pytest.mark.parametrize("query", [{}, {"primary_categories": "Food"}, {"min_followers": "10000"},
                                   {"search": "%"}, {"content_types": "post,story", "languages": "es"}])
def test_matching_keys_and_the_filter_check_agree_with_the_oracle(fixture_catalog, query):
    app, records, now = fixture_catalog
    expected = sorted(ids_of(app, expected_order(records, "reels", query, now)))
    flt = make_filter("reels", query)
    with app.extensions["viralspot.catalog"].connect() as conn:
        keys = matching_keys(conn, flt)
        assert keys.dtype == np.int64 and keys.tolist() == expected
        probe = list(range(-5, 4500)) + [3, 3]  # a long list, unknown and repeated ids
        assert SqlCandidateSource(conn, flt).matching_among(probe) == set(expected)


@pytest.mark.parametrize("date_range", ["day", "week", "month", "year"])
def test_expiring_keys_say_until_when_each_key_matches(dated_catalog, date_range):
    """``matching_keys_until`` at one moment, cut at later moments by each key's last second,
    equals the live filter at those moments (what a date_range list serves)."""
    app, records, now = dated_catalog
    flt = make_filter("reels", {"date_range": date_range})
    start = now.replace(microsecond=0)
    with app.extensions["viralspot.catalog"].connect() as conn:
        keys, until = matching_keys_until(conn, flt, start)
        assert keys.dtype == until.dtype == np.int64 and keys.tolist() == sorted(keys.tolist())
        assert keys.size  # the fixture has reels in every range
        for later in (start, start + timedelta(hours=20), start + timedelta(days=5), start + timedelta(days=40)):
            live = {row[0] for row in conn.execute(flt.where(select(content.c.id), now=later))}
            assert {int(k) for k, u in zip(keys, until) if u >= later.timestamp()} == live


def test_items_by_keys_keeps_the_given_order_and_skips_missing(fixture_catalog):
    app, records, _now = fixture_catalog
    with app.extensions["viralspot.catalog"].connect() as conn:
        rows = items_by_keys(conn, [5, 999_999, 1, 60, 2])
    assert [row["id"] for row in rows] == [5, 1, 60, 2]
    assert rows[1]["content_id"] == records[0]["content_id"]
    assert rows[1]["followers"] == records[0]["followers"]
    assert rows[1]["profile_name"] == records[0]["profile_name"]


def test_plain_page_keys_and_is_last_page(fixture_catalog):
    app, records, now = fixture_catalog
    flt = make_filter("reels", {"content_types": "reel,post,story"})
    order = expected_order(records, "reels", {"content_types": "reel,post,story", "sort_by": "likes"}, now)
    with app.extensions["viralspot.catalog"].connect() as conn:
        keys, last = plain_page_keys(conn, flt, "likes", 10, 45)
        tail, tail_last = plain_page_keys(conn, flt, "likes", 10, 55)
        rows, tail_rows = items_by_keys(conn, keys), items_by_keys(conn, tail)
    assert [row["content_id"] for row in rows] == order[45:55] and last is False
    assert [row["content_id"] for row in tail_rows] == order[55:] and tail_last is True


# --- serialize_item --------------------------------------------------------------

ITEM_FIELDS = ("id reel_id content_id content_type shortcode url description title thumbnail_url thumbnail_local "
               "thumbnail view_count like_count comment_count outlier_score outlierScore date_posted username "
               "profile profile_name bio profile_followers followers profile_image_url profileImage is_verified "
               "primary_category secondary_category tertiary_category keyword_1 keyword_2 keyword_3 keyword_4 "
               "categorization_confidence content_style views likes comments").split()


def test_api_items_have_the_frontend_shape(fixture_catalog):
    app, records, _now = fixture_catalog
    item = app.test_client().get("/api/reels?limit=1&search=Item 30").json["data"]["reels"][0]
    record = next(r for r in records if r["content_id"] == "c030")
    assert set(ITEM_FIELDS) <= set(item)
    assert item["id"] == item["reel_id"] == item["content_id"] == "c030"
    assert item["title"] == item["description"] == record["description"]
    assert item["thumbnail"] == item["thumbnail_local"] == item["thumbnail_url"] == record["thumbnail_url"]
    assert item["profile"] == f"@{record['username']}"
    assert item["followers"] == item["profile_followers"] == record["followers"]
    assert item["date_posted"].endswith("Z")


def test_serialize_item_formats_counts_scores_and_fallbacks():
    from datetime import datetime

    row = {"content_id": "9", "content_type": "reel", "shortcode": "s", "username": "zed", "view_count": 1_234_567,
           "like_count": 45_000, "comment_count": 321, "outlier_score": 4.16, "profile_name": None,
           "date_posted": datetime(2026, 1, 2, 3, 4, 5), "followers": None, "is_verified": 0}
    item = serialize_item(row)
    assert (item["views"], item["likes"], item["comments"]) == ("1.2M", "45K", "321")
    assert item["outlierScore"] == "4.2x"
    assert item["profile_name"] == "zed"
    assert item["date_posted"] == "2026-01-02T03:04:05Z"
    assert item["followers"] == 0 and item["is_verified"] is False
    assert [display_count(v) for v in (0, 999, 1000, 1050, 45_200, 2_000_000_000)] == \
           ["0", "999", "1K", "1.1K", "45.2K", "2B"]


def test_lists_are_read_at_one_catalog_version(catalog_app):
    """The list's keys and the version it is cached under come from one catalog state: a read
    that a write overtook is read again; one that keeps being overtaken belongs to no version."""
    from viralspot.catalog.queries import bump_version, read_at_one_version

    engine = catalog_app.extensions["viralspot.catalog"]
    reads = []

    def read_overtaken(times):
        def read(conn):
            reads.append(len(reads))
            if len(reads) <= times:
                with engine.begin() as writer:
                    bump_version(writer)
            return len(reads)
        return read

    with engine.connect() as conn:
        version, result = read_at_one_version(conn, read_overtaken(1))
        assert (len(reads), result) == (2, 2) and version == catalog_state(conn)[0]
        reads.clear()
        assert read_at_one_version(conn, read_overtaken(99)) == (None, 3)
