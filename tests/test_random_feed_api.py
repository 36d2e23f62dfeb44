"""Session-consistent random feeds through the HTTP API: each property of the random-feed issue.

Each test runs with the page's items read from the database and from an item snapshot
("+snapshot"), on SQLite and PostgreSQL: whole-set randomness (chi-square of first items), no
repeats across filters and endpoints, coverage with an exact last page, ``date_range`` feeds at
two pinned moments, replay and jumps, the offset limits, concurrency, unrelated orders per
session, a fresh order after a reset, items imported mid-session.

Determinism: a session's order is keyed by a seed drawn when the session starts, so two servers
serve a new session the same pages when they share its store (Redis), and unrelated pages with
separate memory stores. (The list and walk plans of the old state model are gone: one order of
the whole key space per session serves every filter.)
"""
from __future__ import annotations

import json
import re
import threading
from collections import Counter

import pytest

from moments import MOMENTS, PINNED_NOW, iso
from session_helpers import drain, page, random_get
from viralspot import create_app

CATALOG_ITEMS = 1200


@pytest.fixture(scope="module")
def catalog_url(module_database_url):
    """A seeded catalog (SQLite, then PostgreSQL) shared by the module's apps; each test uses fresh sessions."""
    app = create_app({"CONFIG": "testing", "DATABASE_URL": module_database_url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(CATALOG_ITEMS), "--seed", "7"])
    assert result.exit_code == 0, result.output
    app.extensions["viralspot.catalog"].dispose()
    return module_database_url


#: "+snapshot": items from the item snapshot written after seeding (the server writes none itself,
#: so a catalog write leaves pages on the database until a snapshot of the new state exists).
PLANS = {"database": {}, "database+snapshot": {}}


@pytest.fixture(scope="module")
def snapshot_root(catalog_url, tmp_path_factory):
    """An item snapshot of the seeded catalog, written by ``flask content snapshot``."""
    root = str(tmp_path_factory.mktemp("snapshots"))
    write_snapshot_by_cli(catalog_url, root)
    return root


def write_snapshot_by_cli(url: str, root: str) -> None:
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url, "ITEM_SNAPSHOT_DIR": root})
    result = app.test_cli_runner().invoke(args=["content", "snapshot"])
    assert result.exit_code == 0, result.output
    assert "item snapshot" in result.output
    app.extensions["viralspot.catalog"].dispose()


def plan_config(plan: str, root: str | None) -> dict:
    if plan.endswith("+snapshot"):
        return {**PLANS[plan], "ITEM_SNAPSHOT_DIR": root, "ITEM_SNAPSHOT_WRITE": False}
    return PLANS[plan]


@pytest.fixture(params=sorted(PLANS))
def app_config(request, catalog_url):
    root = request.getfixturevalue("snapshot_root") if request.param.endswith("+snapshot") else None
    return {"DATABASE_URL": catalog_url, **plan_config(request.param, root)}


def all_ids(client, path="/api/reels", **filters):
    ids, offset = [], 0
    while True:
        response = client.get(path, query_string={"limit": 100, "offset": offset, **filters})
        data = response.get_json()["data"]
        ids.extend(item["id"] for item in data["reels"])
        offset += 100
        if data["isLastPage"]:
            return ids


# 1. Whole-set randomness ------------------------------------------------------------------


def test_first_page_is_not_the_top_of_the_default_sort(client):
    top = set(all_ids(client)[:24])
    ids, _ = page(client, "fresh-session")
    assert len(set(ids) & top) <= 6


def chi_square_critical(degrees: int, z: float = 3.09) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (z = 3.09: p = 0.001)."""
    k = degrees
    return k * (1 - 2 / (9 * k) + z * (2 / (9 * k)) ** 0.5) ** 3


def test_first_items_are_uniform_over_the_matching_set(client):
    """Chi-square, per matching item, of where 2,000 new sessions' first item lands."""
    category = _some_category(client)
    matching = all_ids(client, primary_categories=category)
    assert len(matching) >= 10
    sessions = 2000
    counts = Counter(page(client, f"uniform-{n}", limit=1, primary_categories=category)[0][0]
                     for n in range(sessions))
    assert set(counts) <= set(matching)
    expected = sessions / len(matching)
    chi_square = sum((counts[item] - expected) ** 2 / expected for item in matching)
    assert chi_square < chi_square_critical(len(matching) - 1)


_category_cache: dict = {}


def _some_category(client):
    if "c" not in _category_cache:
        options = client.get("/api/filter-options").get_json()["data"]
        _category_cache["c"] = options["primary_categories"][0]
    return _category_cache["c"]


# 2. No repeats ----------------------------------------------------------------------------


def test_draining_serves_every_matching_item_exactly_once(client):
    served, last_page = drain(client, "drain")
    assert len(served) == len(set(served))
    assert set(served) == set(all_ids(client))
    assert last_page  # the page holding the last item says isLastPage
    assert page(client, "drain", offset=len(served) + 50) == ([], True)


@pytest.fixture(scope="module")
def dated_catalog_urls(catalog_url, module_database_backend, request, tmp_path_factory):
    """moment -> (catalog URL, snapshot root): the module's catalog for the tests' pinned clock, and
    the same seed dated back from each other moment of tests/moments.py."""
    from conftest import _empty_database

    urls, servers = {PINNED_NOW: catalog_url}, []

    def at(moment):
        if moment not in urls:
            url, server = _empty_database(module_database_backend, request, tmp_path_factory.mktemp("dated"))
            servers.append((server, url))
            app = create_app({"CONFIG": "testing", "DATABASE_URL": url, "FIXED_NOW": iso(moment)})
            result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(CATALOG_ITEMS),
                                                        "--seed", "7"])
            assert result.exit_code == 0, result.output
            app.extensions["viralspot.catalog"].dispose()
            urls[moment] = url
        return urls[moment]

    yield at
    for server, url in servers:
        if server is not None:
            server.drop_database(url)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("date_range", ["day", "week", "month", "year"])
def test_a_date_range_feed_serves_exactly_the_items_in_range(app_config, dated_catalog_urls, moment, date_range,
                                                             tmp_path):
    # On the list plans, the list of the current hour's window, checked per page against the clock.
    url = dated_catalog_urls(moment)
    config = {**app_config, "DATABASE_URL": url, "FIXED_NOW": iso(moment)}
    if config.get("ITEM_SNAPSHOT_DIR") and moment != PINNED_NOW:
        config["ITEM_SNAPSHOT_DIR"] = str(tmp_path / "snaps")
        write_snapshot_by_cli(url, config["ITEM_SNAPSHOT_DIR"])
    app = create_app({"CONFIG": "testing", **config})
    client = app.test_client()
    served, _ = drain(client, f"dated-{date_range}", date_range=date_range)
    assert len(served) == len(set(served))
    expected = set(all_ids(client, date_range=date_range))
    assert expected and set(served) == expected
    assert len(expected) < len(all_ids(client))
    app.extensions["viralspot.catalog"].dispose()


def test_no_repeats_across_filters_and_endpoints(client):
    category = _some_category(client)
    first, _ = page(client, "mixed", limit=100, primary_categories=category)
    rest, _ = drain(client, "mixed")
    assert not set(first) & set(rest)
    assert set(first) | set(rest) == set(all_ids(client))
    posts, _ = drain(client, "mixed", path="/api/posts", content_types="reel,post")
    assert not set(posts) & (set(first) | set(rest))
    assert set(posts) == set(all_ids(client, path="/api/posts"))


# 3. A stable, pageable sequence -----------------------------------------------------------


def test_pages_replay_and_jumps_extend_the_sequence(client, store):
    third, _ = page(client, "seq", offset=48)
    assert store.summary("seq").served_items_count == 72
    first, _ = page(client, "seq", offset=0)
    assert page(client, "seq", offset=48)[0] == third
    assert page(client, "seq", offset=0)[0] == first
    second, _ = page(client, "seq", offset=24)
    sequence = first + second + third
    assert len(set(sequence)) == 72
    assert page(client, "seq", offset=40, limit=16)[0] == sequence[40:56]
    assert store.summary("seq").served_items_count == 72


def test_offset_far_past_the_served_prefix_is_rejected(client, store):
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": "far",
                                                      "offset": 5000})
    assert response.status_code == 404
    body = response.get_json()
    assert body["error_code"] == "SESSION_NOT_FOUND" and "offset 0" in body["detail"]
    assert store.summary("far") is None and store.session_count() == 0  # nothing was started
    assert random_get(client, "far").status_code == 200
    again = random_get(client, "far", offset=24 + 1001)  # now stored: past what its feed was served
    assert again.status_code == 400 and again.get_json()["error_code"] == "INVALID_PARAMETER"
    assert "(24); page through it in order" in again.get_json()["detail"]


# A session lost between pages ----------------------------------------------------------------


def order(response) -> str:
    """The response's X-Session-Order (a page answered 200)."""
    assert response.status_code == 200, response.get_json()
    return response.headers["X-Session-Order"]


def page_ids(response) -> set[str]:
    return {item["id"] for item in response.get_json()["data"]["reels"]}


def test_every_random_page_names_its_session_order_and_a_lost_session_gets_a_new_one(client, store):
    """What a client needs when its session was lost (expired, evicted, reset elsewhere) while its
    offset stayed within VIRALSPOT_RANDOM_MAX_AHEAD: the page is of a new session, and says so."""
    first = order(random_get(client, "told"))
    assert re.fullmatch("[0-9a-f]{16}", first)
    assert order(random_get(client, "told", offset=24)) == first
    assert order(random_get(client, "told", offset=0)) == first  # a replay
    assert order(random_get(client, "told", path="/api/posts")) == first  # every feed of the session
    assert order(random_get(client, "other")) != first
    store.reset("told")  # gone, as by expiry or eviction: this process still holds its view
    lost = random_get(client, "told", offset=48)
    renewed = order(lost)
    assert renewed != first and len(page_ids(lost)) == 24
    # Paging the new session from offset 0 shows the items that page took unseen, each once.
    restarted = page(client, "told", offset=0)[0] + page(client, "told", offset=24)[0]
    assert len(set(restarted) | page_ids(lost)) == 72
    assert store.summary("told").served_items_count == 72
    assert order(random_get(client, "told", offset=72)) == renewed
    assert "X-Session-Order" not in client.get("/api/reels", query_string={"limit": 3}).headers


def test_a_feed_deep_in_a_lost_session_started_again_by_another_feed_is_told_by_the_order(catalog_url):
    """Two grids of one session, the session lost: the posts grid pages first and starts a new one;
    the reels grid, deeper than VIRALSPOT_RANDOM_MAX_AHEAD, gets a 400 for its offset, which carries
    the new session's order, not the one its pages had (a genuine jump too far carries its own)."""
    (app,) = apps_on(catalog_url, "memory://", 1, RANDOM_MAX_AHEAD=30)
    client, store = app.test_client(), app.extensions["viralspot.session_store"]
    try:
        old = {order(random_get(client, "grids", offset=offset)) for offset in (0, 24, 48)}
        assert len(old) == 1
        too_far = random_get(client, "grids", offset=72 + 31)
        assert too_far.status_code == 400 and too_far.headers["X-Session-Order"] in old  # the client's own bug
        store.reset("grids")  # lost, as by expiry or eviction
        new = order(random_get(client, "grids", path="/api/posts"))
        assert new not in old
        deep = random_get(client, "grids", offset=72)
        assert deep.status_code == 400 and deep.get_json()["error_code"] == "INVALID_PARAMETER"
        assert deep.headers["X-Session-Order"] == new and deep.headers["Cache-Control"] == "no-store"
        store.reset("grids")
        gone = random_get(client, "grids", offset=72)
        assert gone.status_code == 404 and gone.get_json()["error_code"] == "SESSION_NOT_FOUND"
        assert "X-Session-Order" not in gone.headers and gone.headers["Cache-Control"] == "no-store"
    finally:
        close_apps([app])


def test_the_session_order_header_is_documented_and_readable_by_a_browser(client):
    spec = client.get("/api/openapi.json").get_json()
    for path in ("/api/reels", "/api/posts"):
        operation = spec["paths"][path]["get"]
        assert "X-Session-Order" in operation["responses"]["200"]["headers"]
        assert "X-Session-Order" in operation["responses"]["400"]["headers"]  # an offset too far ahead
        assert "SESSION_NOT_FOUND" in json.dumps(operation["responses"]["404"])
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": "browser", "limit": 1},
                          headers={"Origin": "http://localhost:3000"})
    assert order(response)
    assert "X-Session-Order" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.redis
def test_processes_sharing_a_store_name_one_order_and_a_lost_session_a_new_one(catalog_url, redis_clean):
    """Two processes over one Redis: one session, one order id, whichever process serves it; after
    the session is lost, the new one's, also in the process whose remembered view is of the old."""
    apps = apps_on(catalog_url, redis_clean.url, 2)
    a, b = (app.test_client() for app in apps)
    try:
        first = order(random_get(a, "shared"))
        assert order(random_get(b, "shared")) == first  # B meets the session A started
        assert order(random_get(a, "shared", offset=24)) == first
        with redis_clean.client() as raw:
            raw.flushall()  # the session is lost; A still remembers its view
        renewed = order(random_get(b, "shared", offset=48))
        assert renewed != first
        assert order(random_get(a, "shared", offset=72)) == renewed  # A's old view was stale
        store = apps[0].extensions["viralspot.session_store"]
        assert store.summary("shared").served_items_count == 96
    finally:
        close_apps(apps)


@pytest.mark.redis
def test_a_refused_first_page_starts_no_session_on_redis(catalog_url, redis_clean):
    (app,) = apps_on(catalog_url, redis_clean.url, 1)
    try:
        client = app.test_client()
        response = client.get("/api/reels", query_string={"random_order": "true", "session_id": "far",
                                                          "offset": 5000})
        assert response.status_code == 404 and response.get_json()["error_code"] == "SESSION_NOT_FOUND"
        store = app.extensions["viralspot.session_store"]
        assert store.summary("far") is None
        assert store.session_count() == 0 and store.session_ids() == []
    finally:
        close_apps([app])


# 4. Deterministic -------------------------------------------------------------------------


def apps_on(catalog_url: str, store_url: str, count: int, **config) -> list:
    return [create_app({"CONFIG": "testing", "DATABASE_URL": catalog_url, "SESSION_STORE_URL": store_url, **config})
            for _ in range(count)]


def close_apps(apps) -> None:
    for app in apps:
        app.extensions["viralspot.session_store"].close()
        app.extensions["viralspot.catalog"].dispose()


@pytest.mark.redis
def test_two_servers_sharing_a_store_serve_a_new_session_the_same_pages(catalog_url, redis_clean):
    apps = apps_on(catalog_url, redis_clean.url, 2)
    try:
        a, b = (app.test_client() for app in apps)
        first = page(a, "det", limit=30)
        assert page(b, "det", limit=30) == first  # B replays A's page: one session, one order
        second = page(b, "det", offset=30, limit=30)
        assert page(a, "det", offset=30, limit=30) == second and not set(second[0]) & set(first[0])
        # B starts a session A then pages: still one order.
        started = page(b, "det-2", limit=30)
        assert page(a, "det-2", limit=30) == started and started != first
    finally:
        close_apps(apps)
    # Another secret is another order, even for a session of the same id and store state.
    with redis_clean.client() as raw:
        raw.flushall()
    others = apps_on(catalog_url, redis_clean.url, 1, SECRET_KEY="other")
    try:
        assert len(set(page(others[0].test_client(), "det", limit=30)[0]) & set(first[0])) < 10
    finally:
        close_apps(others)


def test_separate_memory_stores_give_a_new_session_unrelated_pages(catalog_url):
    """Seeds are random per session: two processes that do not share a store start two sessions."""
    apps = apps_on(catalog_url, "memory://", 2)
    try:
        a, b = (app.test_client() for app in apps)
        assert len(set(page(a, "det", limit=30)[0]) & set(page(b, "det", limit=30)[0])) < 10
    finally:
        close_apps(apps)


# 5. Fresh after reset ---------------------------------------------------------------------


def test_reset_clears_served_items_and_gives_a_fresh_order(client):
    before = page(client, "again", limit=40)[0] + page(client, "again", offset=40, limit=40)[0]
    body = client.post("/api/reset-session?session_id=again").get_json()
    assert body["data"]["session_reset"]["cleared_items_count"] == 80
    assert "generation" not in json.dumps(body)
    after = page(client, "again", limit=40)[0]
    assert len(set(after) & set(before[:40])) < 10  # by chance only: ~40 * 40 / 1,000
    served, _ = drain(client, "again")
    assert set(served) == set(all_ids(client))  # previously seen items come back


# 6. Concurrency ---------------------------------------------------------------------------


def test_concurrent_pages_of_one_session_share_no_item(app):
    # One page first: while the first page of a process maps the snapshot, others read the database.
    page(app.test_client(), "warm-up")
    results, barrier = {}, threading.Barrier(6)

    def fetch(offset):
        client = app.test_client()
        barrier.wait()
        results[offset] = page(client, "tabs", offset=offset)[0]

    threads = [threading.Thread(target=fetch, args=(i * 24,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    served = [item for offset in sorted(results) for item in results[offset]]
    assert len(served) == 6 * 24 == len(set(served))


def test_concurrent_requests_of_one_page_get_the_same_page(app):
    # One page first: while the first page of a process maps the snapshot, others read the database.
    page(app.test_client(), "warm-up")
    results, barrier = [], threading.Barrier(6)

    def fetch():
        client = app.test_client()
        barrier.wait()
        results.append(page(client, "double-fetch")[0])

    threads = [threading.Thread(target=fetch) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert app.extensions["viralspot.session_store"].summary("double-fetch").served_items_count == 24


# 7. Independence and validation -----------------------------------------------------------


def test_sessions_get_unrelated_orders(client):
    a, _ = page(client, "alice", limit=100)
    b, _ = page(client, "bob", limit=100)
    assert len(set(a) & set(b)) < 40  # ~100*100/|reels| expected by chance


# Catalog changes during a session ---------------------------------------------------------


def _reel_line(n: int) -> str:
    return json.dumps({"content_id": f"grown-{n}", "shortcode": f"GROWN{n:05d}", "content_type": "reel",
                       "date_posted": "2026-10-01T12:00:00Z", "username": "newcomer", "followers": 10,
                       "view_count": 1000 + n, "like_count": n, "comment_count": 1})


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_items_imported_mid_session_are_served_once_without_repeats(plan, tmp_path):
    url = f"sqlite:///{tmp_path}/growing.db"
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url, **plan_config(plan, str(tmp_path / "snaps"))})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["content", "seed", "--items", "300", "--seed", "3"]).exit_code == 0
    if plan.endswith("+snapshot"):
        write_snapshot_by_cli(url, str(tmp_path / "snaps"))
    client = app.test_client()
    before, _ = drain(client, "grower")
    imports = tmp_path / "new.jsonl"
    imports.write_text("\n".join(_reel_line(n) for n in range(30)) + "\n")
    result = runner.invoke(args=["content", "import", str(imports)])
    assert result.exit_code == 0, result.output
    offset = len(before)  # the sequence continues right after the last item served
    after = []
    while True:  # the new catalog state has no snapshot: its pages read the database
        ids, last = page(client, "grower", offset, 50, from_snapshot=False)
        after.extend(ids)
        offset += 50
        if last:
            break
    assert not set(after) & set(before)
    assert set(after) == {f"grown-{n}" for n in range(30)}
    assert len(after) == 30
    app.extensions["viralspot.catalog"].dispose()


def test_a_random_page_is_never_stored_by_a_cache_and_a_plain_page_may_be(client):
    """A random page is one session's, and serving it changed the session: no cache may keep it."""
    random_page = client.get("/api/reels", query_string={"random_order": "true", "session_id": "cached", "limit": 3})
    assert random_page.status_code == 200 and random_page.headers["Cache-Control"] == "no-store"
    plain_page = client.get("/api/reels", query_string={"limit": 3})
    assert plain_page.status_code == 200 and "Cache-Control" not in plain_page.headers
