"""``flask content seed`` and ``stats``: a deterministic, realistic sample catalog."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from conftest import content_index_names
from moments import MOMENTS, PINNED_NOW, YEARS_AHEAD, iso
from viralspot.catalog.queries import catalog_state
from viralspot.catalog.seed import CatalogNotEmpty, seed_catalog
from viralspot.catalog.tables import content, primary_profiles


#: Every content column but the version of the write (bookkeeping for item snapshots).
CONTENT_DATA = [column for column in content.c if column.name != "item_version"]


def dump(engine) -> tuple[list, list]:
    with engine.connect() as conn:
        items = [tuple(row) for row in conn.execute(select(*CONTENT_DATA).order_by(content.c.id))]
        profiles = [tuple(row) for row in conn.execute(select(primary_profiles).order_by(primary_profiles.c.id))]
    return items, profiles


def test_same_seed_gives_the_same_catalog_and_another_seed_does_not(catalog_app):
    engine = catalog_app.extensions["viralspot.catalog"]
    seed_catalog(engine, 600, seed=5, reference=PINNED_NOW)
    first = dump(engine)
    assert [row[0] for row in first[0]] == list(range(1, 601))  # dense ids from 1
    seed_catalog(engine, 600, seed=5, replace=True, reference=PINNED_NOW)
    again = dump(engine)
    # The same items and profiles, each item under the key it had (the same content_id: the same
    # item, as an import's update in place).
    assert [row[1:] for row in again[0]] == [row[1:] for row in first[0]] and again[1] == first[1]
    assert [row[0] for row in again[0]] == list(range(1, 601))
    seed_catalog(engine, 600, seed=6, replace=True, reference=PINNED_NOW)
    other = dump(engine)
    assert [row[1:] for row in other[0]] != [row[1:] for row in first[0]]
    assert [row[0] for row in other[0]] == list(range(601, 1201))  # other items: no key reused


def test_seeded_catalog_is_realistic(catalog_app):
    engine = catalog_app.extensions["viralspot.catalog"]
    report = seed_catalog(engine, 2000, seed=1, reference=PINNED_NOW)
    assert (report.items, report.profiles) == (2000, 40)
    items, profiles = dump(engine)
    columns = [column.name for column in CONTENT_DATA]
    by_name = [dict(zip(columns, row)) for row in items]
    types = Counter(row["content_type"] for row in by_name)
    assert set(types) == {"reel", "post", "story"} and types["reel"] > types["post"] > types["story"]
    assert len({row["primary_category"] for row in by_name}) >= 10
    assert len({row["language"] for row in by_name}) >= 5
    views = sorted(row["view_count"] for row in by_name if row["content_type"] == "reel")
    assert views[-1] > 20 * views[len(views) // 2]  # heavy tail
    assert all(row["view_count"] == 0 for row in by_name if row["content_type"] == "post")
    dates = [row["date_posted"] for row in by_name]
    assert (max(dates) - min(dates)).days > 600
    assert len({row["shortcode"] for row in by_name}) == 2000
    assert all(row["keyword_1"] for row in by_name)
    assert max(row["outlier_score"] for row in by_name) > 5 > min(row["outlier_score"] for row in by_name)


def test_seed_refuses_a_non_empty_catalog_unless_replacing(catalog_app):
    engine = catalog_app.extensions["viralspot.catalog"]
    seed_catalog(engine, 100, seed=1, reference=PINNED_NOW)
    try:
        seed_catalog(engine, 100, seed=2, reference=PINNED_NOW)
    except CatalogNotEmpty:
        pass
    else:
        raise AssertionError("seeded into a non-empty catalog")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(content)).scalar() == 100


def test_seed_command_if_empty_and_version_bump(catalog_app):
    runner = catalog_app.test_cli_runner()
    result = runner.invoke(args=["content", "seed", "--items", "300", "--seed", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "seeded 300 items and 6 profiles" in result.output
    engine = catalog_app.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        version, largest = catalog_state(conn)
    assert version >= 1 and largest == 300
    again = runner.invoke(args=["content", "seed", "--if-empty", "--no-progress"])
    assert again.exit_code == 0 and "already holds 300 items" in again.output
    refused = runner.invoke(args=["content", "seed", "--items", "10", "--no-progress"])
    assert refused.exit_code != 0 and "--replace" in refused.output
    with engine.connect() as conn:
        assert catalog_state(conn) == (version, 300)


def test_seed_if_empty_uses_the_configured_size(database_url):
    from conftest import dispose_catalog_app, make_catalog_app

    app = make_catalog_app(database_url, SEED_ITEMS=150)
    try:
        result = app.test_cli_runner().invoke(args=["content", "seed", "--if-empty", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert "seeded 150 items" in result.output
    finally:
        dispose_catalog_app(app)


def test_stats_command_counts_by_type_and_category(catalog_app):
    engine = catalog_app.extensions["viralspot.catalog"]
    seed_catalog(engine, 500, seed=2, reference=PINNED_NOW)
    with engine.connect() as conn:
        reels = conn.execute(select(func.count()).where(content.c.content_type == "reel")).scalar()
        food_reels = conn.execute(select(func.count()).where(content.c.content_type == "reel",
                                                             content.c.primary_category == "Food")).scalar()
    output = catalog_app.test_cli_runner().invoke(args=["content", "stats"]).output
    assert "500 items" in output
    assert f"reel: {reels}\n" in output
    reel_section = output.split("reel:")[1]
    assert f"  Food: {food_reels}\n" in reel_section


@pytest.mark.parametrize("moment", MOMENTS)
def test_the_sample_catalog_spans_the_two_years_up_to_the_moment_it_is_seeded(database_url, moment):
    """``flask content seed`` dates the catalog back from the service's clock: on any day,
    ``date_range=week`` finds items, and each was posted within the week before that moment."""
    from conftest import dispose_catalog_app, make_catalog_app

    app = make_catalog_app(database_url, FIXED_NOW=iso(moment))
    try:
        result = app.test_cli_runner().invoke(args=["content", "seed", "--items", "400", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"posted up to {iso(moment)[:19]}" in result.output
        dates = dated_items(app)
        assert max(dates) <= moment and min(dates) >= moment - timedelta(days=730)
        assert max(dates) > moment - timedelta(days=7)
        week = app.test_client().get("/api/reels?date_range=week&limit=100&content_types=reel,post,story")
        posted = [datetime.fromisoformat(item["date_posted"].replace("Z", "+00:00"))
                  for item in week.get_json()["data"]["reels"]]
        assert posted and all(moment - timedelta(days=7) <= day <= moment for day in posted)
        assert len(posted) == sum(day >= moment - timedelta(days=7) for day in dates)
    finally:
        dispose_catalog_app(app)


def test_a_reference_date_makes_the_seed_independent_of_the_clock(tmp_path):
    from conftest import dispose_catalog_app, make_catalog_app

    dumps = []
    for name, moment in (("a", PINNED_NOW), ("b", YEARS_AHEAD)):
        app = make_catalog_app(f"sqlite:///{tmp_path}/{name}.db", FIXED_NOW=iso(moment))
        result = app.test_cli_runner().invoke(args=["content", "seed", "--items", "50", "--no-progress",
                                                    "--reference-date", "2025-01-31T00:00:00Z"])
        assert result.exit_code == 0, result.output
        dumps.append(dump(app.extensions["viralspot.catalog"]))
        assert max(dated_items(app)) <= datetime(2025, 1, 31, tzinfo=timezone.utc)
        dispose_catalog_app(app)
    assert dumps[0] == dumps[1]
    bad = make_catalog_app(f"sqlite:///{tmp_path}/c.db").test_cli_runner().invoke(
        args=["content", "seed", "--items", "5", "--reference-date", "last tuesday"])
    assert bad.exit_code == 2 and "--reference-date" in bad.output


def dated_items(app) -> list[datetime]:
    with app.extensions["viralspot.catalog"].connect() as conn:
        return [day if day.tzinfo else day.replace(tzinfo=timezone.utc)
                for day in conn.execute(select(content.c.date_posted)).scalars()]


@pytest.mark.postgres
def test_a_seed_replacing_the_catalog_during_an_import_takes_its_turn(postgres_server):
    """Every catalog writer takes the version row's lock first, then the tables'. The seed took it
    after its TRUNCATE: an import holding the version and about to read ``content`` waited on the
    TRUNCATE's lock while the seed waited on the version: PostgreSQL ended one of them (deadlock)."""
    import threading

    from catalog_data import as_json_lines, fixture_records
    from conftest import dispose_catalog_app, make_catalog_app
    from held_writers import HeldWriter, waits_or_ends
    from viralspot.catalog.importer import import_lines

    url = postgres_server.create_database()
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    held = HeldWriter(url, "UPDATE CATALOG_META")  # the import, held after it took the version
    outcomes: dict = {}

    def run(name, work):
        try:
            with app.app_context():
                outcomes[name] = work()
        except Exception as error:  # noqa: BLE001 - the test reports it
            outcomes[name] = error

    records = fixture_records(PINNED_NOW)
    importing = threading.Thread(target=run, args=("import", lambda: import_lines(held.engine, as_json_lines(records))))
    seeding = threading.Thread(target=run, args=("seed", lambda: seed_catalog(engine, 40, 5, reference=PINNED_NOW,
                                                                              replace=True)))
    try:
        seed_catalog(engine, 30, 4, reference=PINNED_NOW)
        importing.start()
        assert held.holding.wait(60), "the import did not take the version"
        seeding.start()
        waits_or_ends(engine, seeding)
    finally:
        held.release.set()
        importing.join(60)
        seeding.join(60)
        held.close()
        dispose_catalog_app(app)
        postgres_server.drop_database(url)
    assert not any(isinstance(outcome, Exception) for outcome in outcomes.values()), outcomes
    assert outcomes["import"].inserted == len(records) and outcomes["seed"].items == 40


def test_a_seed_that_rebuilds_the_indexes_ends_with_all_of_them(catalog_app, monkeypatch):
    """A large seed (the path taken here by a small one) drops and rebuilds the secondary indexes, by
    name (IF [NOT] EXISTS): checked by reflection, which skips expression indexes on SQLite, it
    failed to create the engagement indexes it had not dropped ("already exists"): no 1M seed ended."""
    from viralspot.catalog import seed
    from viralspot.catalog.tables import CONTENT_SECONDARY_INDEXES

    engine = catalog_app.extensions["viralspot.catalog"]
    expected = content_index_names(engine)
    assert {index.name for index in CONTENT_SECONDARY_INDEXES} <= expected
    monkeypatch.setattr(seed, "REBUILD_INDEXES_ITEMS", 1)
    for replace in (False, True):  # into an empty catalog, and over one
        assert seed.seed_catalog(engine, 50, seed=3, replace=replace, reference=PINNED_NOW).items == 50
        assert content_index_names(engine) == expected


def test_indexes_a_killed_seed_dropped_come_back_at_the_next_start(catalog_app):
    """A large seed drops the secondary indexes for its load and rebuilds them at its end: killed
    before, it left the catalog without them (a default page then scanned and sorted every row), and a
    restart did not bring them back. Every start creates the indexes that do not exist."""
    from viralspot.catalog.database import create_schema
    from viralspot.catalog.tables import CONTENT_SECONDARY_INDEXES

    engine = catalog_app.extensions["viralspot.catalog"]
    names = lambda: content_index_names(engine)  # noqa: E731
    expected = names()
    assert {index.name for index in CONTENT_SECONDARY_INDEXES} <= expected
    with engine.begin() as conn:
        for index in CONTENT_SECONDARY_INDEXES:
            index.drop(conn)
    assert not names() & {index.name for index in CONTENT_SECONDARY_INDEXES}
    create_schema(engine)  # what every start (app and command) runs
    assert names() == expected

