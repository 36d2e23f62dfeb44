"""Items rendered at write time (``content.item_json``): the invariant, every writer, the upgrade, the pages.

The invariant: ``item_json`` equals what ``serialize_item`` builds from the
current row and its profile, or is NULL (then the item is built live); the
stored engagement rates equal those of the current row and its profile.
Real SQLite and PostgreSQL, as the other catalog tests.
"""
from __future__ import annotations

import json

from sqlalchemy import func, select, text

from catalog_data import account_rate, as_json_lines, content_rate, fixture_records
from conftest import dispose_catalog_app, make_catalog_app
from moments import PINNED_NOW
from viralspot.catalog.importer import import_lines
from viralspot.catalog.queries import ITEM_COLUMNS, items_by_keys
from viralspot.catalog.queries import bump_version, catalog_state
from viralspot.catalog.rendering import (encode_item, in_requested_order, item_fragments, joined_item_fragments,
                                         render_items, render_row)
from viralspot.catalog.seed import seed_catalog
from viralspot.catalog.tables import content
from viralspot.catalog.items import serialize_item

ALL_TYPES = {"content_types": "reel,post,story"}


def engine_of(app):
    return app.extensions["viralspot.catalog"]


def stored_and_live(app) -> tuple[dict[int, str | None], dict[int, dict]]:
    """(id -> item_json as stored, id -> serialize_item of the live row) of every content row."""
    with engine_of(app).connect() as conn:
        stored = dict(conn.execute(select(content.c.id, content.c.item_json)).all())
        live = {row["id"]: serialize_item(row) for row in items_by_keys(conn, sorted(stored))}
    return stored, live


def assert_invariant(app) -> None:
    stored, live = stored_and_live(app)
    assert stored and stored.keys() == live.keys()
    for key, fragment in stored.items():
        assert fragment is not None, key
        assert json.loads(fragment) == live[key], key
        assert fragment == encode_item(live[key]), key  # the one encoding, byte for byte
    assert_rates(app)


def assert_rates(app) -> None:
    """The stored engagement rates are those of each row and its profile, as tests compute them."""
    with engine_of(app).connect() as conn:
        rates = select(content.c.id, content.c.content_engagement_rate, content.c.account_engagement_rate)
        stored_rates = {key: (by_content, by_account) for key, by_content, by_account in conn.execute(rates)}
        rows = items_by_keys(conn, sorted(stored_rates))
    assert stored_rates == {row["id"]: (content_rate(row), account_rate(row)) for row in rows}


def served(client, path="/api/reels", **query) -> list[dict]:
    """Every item of the (plain) listing, walked page by page."""
    items, offset = [], 0
    while True:
        body = client.get(path, query_string={**ALL_TYPES, "limit": 100, "offset": offset, **query}).get_json()
        items += body["data"]["reels"]
        if body["data"]["isLastPage"]:
            return items
        offset += 100


def served_random(client, session_id: str) -> list[dict]:
    items, offset = [], 0
    while True:
        body = client.get("/api/reels", query_string={**ALL_TYPES, "random_order": "true", "session_id": session_id,
                                                      "limit": 50, "offset": offset}).get_json()
        items += body["data"]["reels"]
        if body["data"]["isLastPage"]:
            return items
        offset += 50


# --- the invariant, for each writer ---------------------------------------------

def test_imported_items_equal_their_live_rows(fixture_catalog):
    app, _records, _now = fixture_catalog
    assert_invariant(app)


def test_seeded_items_equal_their_live_rows(catalog_app):
    seed_catalog(engine_of(catalog_app), 700, seed=5, reference=PINNED_NOW)
    assert_invariant(catalog_app)


def test_seeds_render_the_same_items_in_worker_processes(catalog_app, monkeypatch):
    from viralspot.catalog import seed

    monkeypatch.setattr(seed, "CHUNK", 250)  # several chunks (the chunk size shapes the draws)
    seed_catalog(engine_of(catalog_app), 900, seed=4, reference=PINNED_NOW)
    inline, _live = stored_and_live(catalog_app)
    monkeypatch.setattr(seed, "PARALLEL_RENDER_ITEMS", 1)  # the large-seed path, on a small seed
    seed_catalog(engine_of(catalog_app), 900, seed=4, replace=True, reference=PINNED_NOW)
    parallel, _live = stored_and_live(catalog_app)
    # The replacing rows keep the keys of their content_ids (seed.py): the same items under the same keys.
    assert parallel == inline
    assert_invariant(catalog_app)


def test_render_items_renders_the_rows_asked_for(catalog_app):
    import_lines(engine_of(catalog_app), as_json_lines(fixture_records(PINNED_NOW)))
    with engine_of(catalog_app).begin() as conn:
        conn.execute(content.update().values(item_json=None))
        version = bump_version(conn)
        assert render_items(conn, version=version, content_ids=[1, 2, 2, 999_999]) == 2
        assert render_items(conn, version=version, profile_ids=[1]) == conn.execute(
            select(func.count()).where(content.c.profile_id == 1)).scalar()
        left = conn.execute(select(func.count()).where(content.c.item_json.is_(None))).scalar()
        assert 0 < left < 60
        stamped = conn.execute(select(func.count()).where(content.c.item_version == version)).scalar()
        assert stamped == 60 - left  # each rendered row carries the version of its write
        assert render_items(conn, version=version) == 60
    assert_invariant(catalog_app)


# --- imports keep the served items current ---------------------------------------

def test_profile_changes_reach_every_item_of_the_profile(catalog_app):
    records = fixture_records(PINNED_NOW)
    import_lines(engine_of(catalog_app), as_json_lines(records))
    client = catalog_app.test_client()
    before_random = served_random(client, "before-change")
    assert before_random
    alice = [r for r in records if r["username"] == "alice"]
    assert len(alice) > 3
    # One line of one of alice's items carries new profile fields: all of her items must show them.
    changed = {**alice[0], "followers": 4_242_424, "bio": "New bio ✨", "profile_name": "Alice Renamed",
               "is_verified": False, "account_type": "Personal"}
    report = import_lines(engine_of(catalog_app), [json.dumps(changed)])
    assert (report.updated, report.rejected) == (1, 0)
    for items in (served(client), served_random(client, "after-change")):
        theirs = [item for item in items if item["username"] == "alice"]
        assert {item["content_id"] for item in theirs} == {r["content_id"] for r in alice}
        for item in theirs:
            assert (item["followers"], item["profile_followers"]) == (4_242_424, 4_242_424)
            assert (item["bio"], item["profile_name"]) == ("New bio ✨", "Alice Renamed")
            assert (item["is_verified"], item["account_type"]) == (False, "Personal")
        others = [item for item in items if item["username"] != "alice"]
        assert others and all(item["followers"] != 4_242_424 for item in others)
    assert_invariant(catalog_app)


def test_content_changes_reach_the_served_item(catalog_app):
    records = fixture_records(PINNED_NOW)
    import_lines(engine_of(catalog_app), as_json_lines(records))
    target = records[10]
    changed = {key: target[key] for key in ("content_id", "shortcode", "content_type", "date_posted", "username")}
    changed.update(description="Rewritten caption", view_count=7_654_321, like_count=1234)
    import_lines(engine_of(catalog_app), [json.dumps(changed)])
    client = catalog_app.test_client()
    for items in (served(client), served_random(client, "content-change")):
        item = next(item for item in items if item["content_id"] == target["content_id"])
        assert (item["description"], item["title"]) == ("Rewritten caption", "Rewritten caption")
        assert (item["view_count"], item["views"], item["like_count"], item["likes"]) == \
               (7_654_321, "7.7M", 1234, "1.2K")
    assert_invariant(catalog_app)


# --- a catalog written before the derived columns existed -----------------------------------

def test_an_old_catalog_gets_the_columns_serves_live_items_and_render_fills_them(database_url):
    first = make_catalog_app(database_url)
    import_lines(engine_of(first), as_json_lines(fixture_records(PINNED_NOW)))
    expected_plain = first.test_client().get("/api/reels", query_string={**ALL_TYPES, "limit": 100}).get_json()
    by_engagement = {**ALL_TYPES, "limit": 100, "sort_by": "account_engagement"}
    expected_by_engagement = first.test_client().get("/api/reels", query_string=by_engagement).get_json()
    by_rate = {**ALL_TYPES, "limit": 100, "min_account_engagement_rate": 0.5}
    expected_by_rate = first.test_client().get("/api/reels", query_string=by_rate).get_json()
    assert 0 < len(expected_by_rate["data"]["reels"]) < 60
    with engine_of(first).begin() as conn:  # as written before the derived columns
        for name in ("content_engagement", "account_engagement"):
            conn.execute(text(f"DROP INDEX ix_content_{name}"))
        for name in ("item_json", "content_engagement_rate", "account_engagement_rate"):
            conn.execute(text(f"ALTER TABLE content DROP COLUMN {name}"))
    dispose_catalog_app(first)

    app = make_catalog_app(database_url)  # start-up adds the column, empty
    try:
        stored, live = stored_and_live(app)
        assert set(stored.values()) == {None}
        # The rates are filled at start-up (by SQL, the same operations): their sort and filters answer
        # as before at once. Left empty until a render, the filters matched no row.
        assert_rates(app)
        client = app.test_client()
        assert client.get("/api/reels", query_string=by_engagement).get_json() == expected_by_engagement
        assert client.get("/api/reels", query_string=by_rate).get_json() == expected_by_rate
        plain_before = client.get("/api/reels", query_string={**ALL_TYPES, "limit": 100}).get_json()
        assert plain_before == expected_plain
        random_before = served_random(client, "upgrade")
        expected_ids = sorted(item["content_id"] for item in expected_plain["data"]["reels"])
        assert sorted(item["content_id"] for item in random_before) == expected_ids
        with engine_of(app).connect() as conn:  # reads build NULL items live, and write nothing
            assert [json.loads(f) for f in item_fragments(conn, [3, 1])] == [live[3], live[1]]
            assert conn.execute(select(func.count()).where(content.c.item_json.is_not(None))).scalar() == 0

        with engine_of(app).connect() as conn:
            version_before = catalog_state(conn)[0]
        result = app.test_cli_runner().invoke(args=["content", "render", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "rendered 60 items" in result.output
        with engine_of(app).connect() as conn:  # a new catalog state: snapshots of the old shape retire
            assert catalog_state(conn)[0] == version_before + 1
        assert_invariant(app)
        assert client.get("/api/reels", query_string={**ALL_TYPES, "limit": 100}).get_json() == expected_plain
        assert client.get("/api/reels", query_string=by_engagement).get_json() == expected_by_engagement
        assert served_random(client, "upgrade") == random_before  # the same pages, replayed
    finally:
        dispose_catalog_app(app)


# --- fragments and the page body ---------------------------------------------------

def test_item_fragments_keep_order_skip_missing_and_repeat(fixture_catalog):
    app, _records, _now = fixture_catalog
    with engine_of(app).connect() as conn:
        fragments = item_fragments(conn, [5, 999_999, 1, 60, 5])
        rows = items_by_keys(conn, [5, 1, 60, 5])
        assert item_fragments(conn, []) == []
    assert [json.loads(f) for f in fragments] == [serialize_item(row) for row in rows]


def test_joined_fragments_are_the_item_fragments_in_order(fixture_catalog):
    # One row joined by the database, checked against the per-item path it replaces on pages.
    app, _records, _now = fixture_catalog
    with engine_of(app).connect() as conn:
        for keys in ([5, 999_999, 1, 60, 5], [60, 59, 58, 1, 2, 3], [2], [], [999_998, 999_999], list(range(60, 0, -1))):
            expected = item_fragments(conn, keys)
            assert joined_item_fragments(conn, keys) == (",".join(expected), len(expected))


def test_an_unrendered_item_is_built_live_in_a_joined_page(fixture_catalog):
    app, _records, _now = fixture_catalog
    with engine_of(app).connect() as conn:
        transaction = conn.begin()
        try:
            live = render_row(items_by_keys(conn, [3])[0])
            conn.execute(content.update().where(content.c.id == 3).values(item_json=None))
            joined, count = joined_item_fragments(conn, [4, 3, 2])
            assert count == 3
            assert json.loads("[" + joined + "]")[1] == json.loads(live)
            assert joined == ",".join(item_fragments(conn, [4, 3, 2]))
        finally:
            transaction.rollback()


def test_the_joined_ids_prove_the_order_or_send_the_page_back_to_the_per_item_path():
    assert in_requested_order("3,1,7", [3, 1, 7])
    assert in_requested_order("3,7", [3, 1, 7])  # 1 does not exist
    assert in_requested_order("5,1,5", [5, 99, 1, 5])
    assert not in_requested_order("1,3,7", [3, 1, 7])
    assert not in_requested_order("7,3", [3, 1, 7])
    assert not in_requested_order("5,5,1", [5, 1, 5])


def test_page_body_is_the_documented_envelope_in_order(fixture_catalog):
    app, _records, _now = fixture_catalog
    client = app.test_client()
    for query in ({"limit": 5, "offset": 2, "sort_by": "likes"},
                  {"limit": 7, "random_order": "true", "session_id": "body-check"},
                  {"limit": 5, "offset": 10_000}):
        response = client.get("/api/reels", query_string={**ALL_TYPES, **query})
        assert response.status_code == 200 and response.mimetype == "application/json"
        body = json.loads(response.get_data(as_text=True))
        assert set(body) == {"success", "data", "message"} and body["success"] is True
        assert set(body["data"]) == {"reels", "isLastPage"}
        assert body["message"] == f"Found {len(body['data']['reels'])} reels (offset {query.get('offset', 0)})"
    plain = client.get("/api/reels", query_string={**ALL_TYPES, "limit": 5, "offset": 2, "sort_by": "likes"})
    ids = [item["content_id"] for item in plain.get_json()["data"]["reels"]]
    with engine_of(app).connect() as conn:
        ordered = conn.execute(select(content.c.content_id).where(content.c.content_type.in_(["reel", "post", "story"]))
                               .order_by(content.c.like_count.desc(), content.c.id.desc()).limit(5).offset(2)).scalars()
        assert ids == list(ordered)


def test_item_columns_do_not_read_the_rendered_item():
    assert "item_json" not in {column.name for column in ITEM_COLUMNS}


def test_page_response_splices_items_into_the_envelope_of_each_message_and_last_page_flag(app):
    from viralspot.content.page_response import page_response
    from viralspot.schemas.envelope import envelope

    items = [{"id": 1, "caption": "ünïcode \"quoted\" ,\"reels\":[]"}, {"id": 2, "caption": "b"}]
    fragments = ",".join(json.dumps(item, ensure_ascii=False) for item in items)
    cases = [(fragments, False, "Found 2 reels (offset 0)"), (fragments.encode(), True, "Found 2 reels (offset 24)"),
             ("", True, "Found 0 reels (offset 48)"), (b"", False, 'a message with "reels":[] in it')]
    with app.app_context():
        for _repeat in range(2):  # the second time each envelope comes from memory
            for joined, is_last, message in cases:
                response = page_response(joined, is_last, message)
                expected = envelope({"reels": items if joined else [], "isLastPage": is_last}, message)
                assert response.mimetype == "application/json"
                assert json.loads(response.get_data()) == expected
