"""Reading the catalog by key lists (one bound parameter, packed answers), filters' matching sets,
and the catalog-state cache.

A filter's matching set is checked against the fixture catalog's oracle, on every filter kind whose
parameters need processing (IN lists, LIKE patterns, dates, booleans, the profile join), on SQLite
and PostgreSQL.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import DBAPIError, OperationalError

from viralspot.catalog.database import create_schema
from viralspot.catalog.filters import content_filter
from viralspot.catalog.key_lookup import KEYS, encode_keys
from catalog_data import expected_order
from viralspot.catalog.queries import (bump_version, catalog_state, items_by_keys, matching_keys,
                                       matching_keys_until, unpack_fragments)
from viralspot.catalog.rendering import encode_item, fragments_statement, item_fragments, render_row
from viralspot.catalog import state_cache
from viralspot.catalog.state_cache import CatalogStateCache
from viralspot.catalog.tables import content
from viralspot.schemas.content import ContentQueryArgsSchema

QUERIES = [
    {},
    {"content_types": "post,story,reel"},
    {"primary_categories": "Food,Travel", "min_views": "100"},
    {"search": "%"},
    {"search": "a_b"},
    {"date_range": "month"},
    {"is_verified": "true", "account_types": "Influencer,Theme Page"},
    {"min_followers": "10000", "max_account_engagement_rate": "50"},
    {"keywords": "food,travel", "languages": "es,en"},
]


def make_filter(query: dict):
    return content_filter("reels", ContentQueryArgsSchema().load(query))


@pytest.mark.parametrize("query", QUERIES)
def test_a_filters_matching_set_is_exactly_the_matching_keys(fixture_catalog, query):
    app, records, now = fixture_catalog
    flt = make_filter(query)
    with app.extensions["viralspot.catalog"].connect() as conn:
        ids = dict(conn.execute(select(content.c.content_id, content.c.id)).all())
        expected = sorted(ids[content_id] for content_id in expected_order(records, "reels", query, now))
        if flt.date_range:
            keys, until = matching_keys_until(conn, flt, now)
            assert (until >= now.timestamp()).all()
        else:
            keys = matching_keys(conn, flt)
        assert keys.tolist() == expected


@pytest.mark.parametrize("query", QUERIES)
def test_the_feed_catalogs_matching_set_answers_a_probe_as_the_filter_does(fixture_catalog, query):
    """What a random page checks positions against: the app's feed catalog reads the filter's set
    (for a ``date_range``, at the start of the clock's hour, each key with its last second), and
    ``matches`` on a probe with unknown, repeated and out-of-range ids finds exactly the items the
    filter selects now."""
    app, records, now = fixture_catalog
    flt = make_filter(query)
    with app.extensions["viralspot.catalog"].connect() as conn:
        ids = dict(conn.execute(select(content.c.content_id, content.c.id)).all())
    expected = {ids[content_id] for content_id in expected_order(records, "reels", query, now)}
    catalog = app.extensions["viralspot.random_feeds"].catalog
    with catalog.source(flt) as source:
        matching_set = source.matching()
        assert (matching_set.until is not None) == bool(flt.date_range)
        assert set(matching_set.keys_at(now.timestamp()).tolist()) == expected
        probe = np.array(list(range(0, len(records) + 20)) + [2, 2, 10 ** 6])
        assert set(probe[matching_set.matches(probe, now.timestamp())].tolist()) == expected
        assert source.matching() is matching_set  # kept for the catalog version (and hour)


def test_an_empty_key_list_finds_nothing(fixture_catalog):
    app, _records, _now = fixture_catalog
    with app.extensions["viralspot.catalog"].connect() as conn:
        assert item_fragments(conn, []) == []


def test_fragments_are_the_rendered_items_in_the_asked_order(fixture_catalog):
    app, _records, _now = fixture_catalog
    with app.extensions["viralspot.catalog"].connect() as conn:
        keys = [7, 3, 999_999, 1]
        rows = {row["id"]: row for row in items_by_keys(conn, keys)}
        assert item_fragments(conn, keys) == [encode_item(json.loads(render_row(rows[k]))) for k in (7, 3, 1)]


def test_key_values_are_bound_not_spliced_into_the_sql(fixture_catalog):
    app, _records, _now = fixture_catalog
    with app.extensions["viralspot.catalog"].connect() as conn:
        compiled = fragments_statement(conn.dialect.name).compile(dialect=conn.dialect)
        assert "123456" not in str(compiled) and KEYS in compiled.binds
        rows = conn.execute(fragments_statement(conn.dialect.name), {KEYS: encode_keys(conn.dialect.name, [123456])})
        assert [packed for (packed,) in rows] in ([None], [""])


def test_a_driver_error_is_raised_as_sqlalchemys():
    engine = create_engine("sqlite://")  # no content table
    with engine.connect() as conn:
        with pytest.raises(OperationalError) as raised:
            item_fragments(conn, [1, 2])
    assert isinstance(raised.value, DBAPIError) and "no such table" in str(raised.value.orig)


def test_keys_are_a_json_array_on_sqlite_and_a_list_elsewhere():
    assert encode_keys("sqlite", [3, 1]) == "[3,1]"
    assert encode_keys("postgresql", (3, 1)) == [3, 1]


def test_unpack_reads_null_items_as_none_and_skips_empty_answers():
    packed = "1\x1f{\"a\":1}\x1e2\x1f\x1e30\x1f[]"
    assert list(unpack_fragments([(packed,), (None,), ("",)])) == [(1, '{"a":1}'), (2, None), (30, "[]")]


def bump(conn) -> None:
    with conn.begin_nested() if conn.in_transaction() else conn.begin():
        bump_version(conn)


def test_state_cache_answers_from_memory_within_its_ttl(catalog_app):
    now = [100.0]
    asked = []
    cache = CatalogStateCache(ttl=1.0, clock=lambda: now[0])
    with catalog_app.extensions["viralspot.catalog"].connect() as conn:
        bump(conn)  # a catalog's first version

        def connection():
            asked.append(1)
            return conn

        before = cache.get(connection)
        bump(conn)
        assert catalog_state(conn)[0] == before[0] + 1
        now[0] += 0.5
        assert cache.get(connection) == before  # within the interval: remembered
        assert len(asked) == 1  # ... and no connection was asked for
        now[0] += 0.6
        assert cache.get(connection)[0] == before[0] + 1  # past it: asked again
        assert len(asked) == 2


def test_a_fresh_read_of_the_state_cache_is_what_it_remembers_next(catalog_app):
    """A page that asks the database now (a feed's start, a last page) leaves the newer state for the
    pages after it, which would otherwise work on the older one until the interval ends."""
    now = [100.0]
    cache = CatalogStateCache(ttl=1.0, clock=lambda: now[0])
    with catalog_app.extensions["viralspot.catalog"].connect() as conn:
        bump(conn)
        before = cache.get(lambda: conn)
        bump(conn)
        now[0] += 0.5
        assert cache.get(lambda: conn) == before  # remembered
        assert cache.get(lambda: conn, fresh=True)[0] == before[0] + 1  # asked now
        bump(conn)
        now[0] += 0.4
        assert cache.get(lambda: conn)[0] == before[0] + 1  # the fresh answer, remembered from its time
        now[0] += 0.7
        assert cache.get(lambda: conn)[0] == before[0] + 2


def test_a_state_asked_for_earlier_does_not_replace_one_asked_for_later(monkeypatch):
    """Two readers racing (a feed's start, a page past the interval): the answer to the later
    question is the newer one, and it is what the process remembers, whichever arrives last."""
    now = [100.0]
    cache = CatalogStateCache(ttl=1.0, clock=lambda: now[0])
    asked = []

    def database(_connection):
        asked.append(now[0])
        if len(asked) == 1:  # the first question's answer is read, then the second is asked and answered
            now[0] += 0.1
            assert cache.get(lambda: None, fresh=True) == (6, 120)
            return (5, 100)
        return (6, 120)

    monkeypatch.setattr(state_cache, "catalog_state", database)
    assert cache.get(lambda: None, fresh=True) == (5, 100)
    assert cache.get(lambda: None) == (6, 120) and asked == [100.0, 100.1]


def test_state_cache_with_no_ttl_always_asks(catalog_app):
    cache = CatalogStateCache(ttl=0)
    with catalog_app.extensions["viralspot.catalog"].connect() as conn:
        bump(conn)
        before = cache.get(lambda: conn)
        bump(conn)
        assert cache.get(lambda: conn)[0] == before[0] + 1
    with pytest.raises(ValueError):
        CatalogStateCache(ttl=-1)


def test_a_new_catalogs_first_version_is_random(tmp_path):
    """A catalog re-created at the same place must not repeat its predecessor's versions (they name
    item snapshots): its first version is drawn at random, not 1."""
    firsts = set()
    for attempt in range(3):
        engine = create_engine(f"sqlite:///{tmp_path}/catalog{attempt}.db")
        create_schema(engine)
        with engine.begin() as conn:
            assert catalog_state(conn)[0] == 0  # nothing written yet
            first = bump_version(conn)
            assert catalog_state(conn)[0] == first and first > 0
            assert bump_version(conn) == first + 1
        firsts.add(first)
        engine.dispose()
    assert len(firsts) == 3
