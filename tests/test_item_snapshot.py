"""Item snapshots: every rendered item of one catalog state in a memory-mapped file.

Checked against the database's own items (``joined_item_fragments``) on SQLite
and PostgreSQL; a write during writing, damaged files, the lock between
writers, a re-created catalog, and pages that really read the snapshot.
"""
from __future__ import annotations

import fcntl
import json
import os
import random

import pytest
from sqlalchemy import event, update

from moments import PINNED_NOW
from viralspot import create_app
from viralspot.catalog import item_snapshot
from viralspot.catalog.database import ITEM_SNAPSHOTS
from viralspot.catalog.item_snapshot import (CatalogChanged, ItemSnapshot, SnapshotError, snapshot_name,
                                             write_snapshot)
from viralspot.catalog.queries import bump_version, catalog_state, content_count
from viralspot.catalog.rendering import item_fragments, joined_item_fragments
from viralspot.catalog.seed import seed_catalog
from viralspot.catalog.snapshot_service import LOCK_NAME, ItemSnapshots
from viralspot.catalog.tables import content


def seeded_app(url: str, items: int, seed: int = 1, **config):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": url, **config})
    seed_catalog(app.extensions["viralspot.catalog"], items, seed, reference=PINNED_NOW)
    return app


@pytest.fixture(scope="module")
def seeded(module_database_url):
    app = seeded_app(module_database_url, 150)
    yield app
    app.extensions["viralspot.catalog"].dispose()


def test_snapshot_holds_exactly_the_databases_items(seeded, tmp_path):
    engine = seeded.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        path = write_snapshot(conn, tmp_path)
        state = catalog_state(conn)
        snapshot = ItemSnapshot(path)
        assert snapshot.state == state and path.name == snapshot_name(state)
        assert snapshot.items == content_count(conn)
        largest = state[1]
        rng = random.Random(5)
        key_lists = [[], [5, 3, 9], [3, 3, 3], [0, -1, largest + 5, 2, largest], list(range(1, largest + 1)),
                     *[rng.sample(range(1, largest + 1), 24) for _ in range(5)]]
        for keys in key_lists:
            expected_joined, expected_count = joined_item_fragments(conn, keys)
            joined, count = snapshot.joined(keys)
            assert (joined.decode(), count) == (expected_joined, expected_count)
        assert json.loads(snapshot.joined([7])[0]) == json.loads(item_fragments(conn, [7])[0])
        assert snapshot.joined([largest + 1]) == (b"", 0)
    snapshot.close()


def test_writing_again_keeps_the_existing_file(seeded, tmp_path):
    with seeded.extensions["viralspot.catalog"].connect() as conn:
        first = write_snapshot(conn, tmp_path)
        written = first.stat().st_mtime_ns
        assert write_snapshot(conn, tmp_path) == first
    assert first.stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left


def test_unrendered_rows_are_rendered_into_the_snapshot(tmp_path):
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 40)
    engine = app.extensions["viralspot.catalog"]
    with engine.begin() as conn:
        conn.execute(update(content).where(content.c.id.between(3, 10)).values(item_json=None))
    with engine.connect() as conn:
        snapshot = ItemSnapshot(write_snapshot(conn, tmp_path / "snaps"))
        for key in range(1, 41):
            assert json.loads(snapshot.joined([key])[0]) == json.loads(item_fragments(conn, [key])[0])
    engine.dispose()


def test_a_write_while_writing_leaves_no_file(database_url, tmp_path, monkeypatch):
    app = seeded_app(database_url, 60)
    engine = app.extensions["viralspot.catalog"]
    monkeypatch.setattr(item_snapshot, "WRITE_CHUNK", 10)
    chunks = []

    def write_meanwhile(conn, cursor, statement, parameters, context, executemany):
        if "item_json" in statement and "ORDER BY" in statement.upper():
            chunks.append(1)
            if len(chunks) == 3:  # a real write from another connection, mid-way
                with engine.begin() as other:
                    bump_version(other)

    directory = tmp_path / "snaps"
    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", write_meanwhile)
        with pytest.raises(CatalogChanged):
            write_snapshot(conn, directory)
        event.remove(conn, "before_cursor_execute", write_meanwhile)
        assert list(directory.iterdir()) == []
        path = write_snapshot(conn, directory)  # nothing written meanwhile this time
        assert ItemSnapshot(path).state == catalog_state(conn)
    engine.dispose()


def test_damaged_files_are_refused_and_written_again(seeded, tmp_path):
    engine = seeded.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        path = write_snapshot(conn, tmp_path)
        state = catalog_state(conn)
    size = path.stat().st_size
    os.truncate(path, size - 10)
    with pytest.raises(SnapshotError):
        ItemSnapshot(path)
    snapshots = ItemSnapshots(engine, tmp_path, write=False)
    assert snapshots.current(state) is None  # ignored, not served
    with engine.connect() as conn:
        assert write_snapshot(conn, tmp_path) == path
    assert path.stat().st_size == size and ItemSnapshot(path).state == state
    path.write_bytes(b"not a snapshot at all, but long enough for a header....")
    with pytest.raises(SnapshotError):
        ItemSnapshot(path)
    path.write_bytes(b"short")
    with pytest.raises(SnapshotError):
        ItemSnapshot(path)


def test_one_writer_at_a_time_per_directory(seeded, tmp_path):
    snapshots = ItemSnapshots(seeded.extensions["viralspot.catalog"], tmp_path)
    with open(tmp_path / LOCK_NAME, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process writing
        assert snapshots.write_now() is None
        assert not list(tmp_path.glob("items-*.snap"))
        fcntl.flock(held, fcntl.LOCK_UN)
    (tmp_path / ".items-v1-n5.snap.999.1.tmp").write_bytes(b"left by a writer that died")
    path = snapshots.write_now()
    assert path is not None and path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, path.name])


def page_items(client, session_id="s", limit=24):
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": session_id,
                                                      "limit": limit})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["reels"]


def test_pages_read_the_snapshot_of_their_state_and_the_server_writes_the_next(tmp_path):
    root = str(tmp_path / "snaps")
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 60, ITEM_SNAPSHOT_DIR=root)
    engine = app.extensions["viralspot.catalog"]
    snapshots = app.extensions[ITEM_SNAPSHOTS]
    client = app.test_client()
    from_database = page_items(client, "first", 60)  # no snapshot yet: items from the database...
    snapshots.wait(60)  # ... while the server writes one in the background
    with engine.connect() as conn:
        old_state = catalog_state(conn)
    old_file = snapshots.directory / snapshot_name(old_state)
    assert old_file.exists()
    # Change the stored items without a new version (no writer does that): a page that still shows
    # the old items can only have read them from the snapshot.
    with engine.begin() as conn:
        conn.execute(update(content).values(item_json='{"id":"changed"}'))
    from_snapshot = page_items(client, "second", 60)
    assert {item["id"] for item in from_snapshot} == {item["id"] for item in from_database}
    assert "changed" not in {item["id"] for item in from_snapshot}
    with engine.begin() as conn:  # a write: the snapshot of the old state no longer answers
        bump_version(conn)
    assert {item["id"] for item in page_items(client, "third", 60)} == {"changed"}
    snapshots.wait(60)
    with engine.connect() as conn:
        new_file = snapshots.directory / snapshot_name(catalog_state(conn))
    assert new_file.exists() and not old_file.exists()  # the older state's file is deleted
    assert ItemSnapshot(new_file).joined([1]) == (b'{"id":"changed"}', 1)
    assert {item["id"] for item in page_items(client, "fourth", 60)} == {"changed"}
    engine.dispose()


def test_a_recreated_catalog_does_not_serve_the_old_snapshot(tmp_path):
    url, root = f"sqlite:///{tmp_path}/c.db", str(tmp_path / "snaps")
    first = seeded_app(url, 50, seed=1, ITEM_SNAPSHOT_DIR=root)
    first.extensions[ITEM_SNAPSHOTS].write_now()
    first.extensions["viralspot.catalog"].dispose()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{tmp_path}/c.db{suffix}"):
            os.remove(f"{tmp_path}/c.db{suffix}")
    second = seeded_app(url, 50, seed=2, ITEM_SNAPSHOT_DIR=root, ITEM_SNAPSHOT_WRITE=False)
    served = page_items(second.test_client(), "s", 50)
    with second.extensions["viralspot.catalog"].connect() as conn:
        expected = {json.loads(fragment)["id"]: json.loads(fragment)
                    for fragment in item_fragments(conn, range(1, 51))}
    assert served and all(item == expected[item["id"]] for item in served)  # reels of the new catalog
    second.extensions["viralspot.catalog"].dispose()


def test_the_snapshot_command_needs_snapshots_on(tmp_path):
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 5, ITEM_SNAPSHOT_DIR="")
    result = app.test_cli_runner().invoke(args=["content", "snapshot"])
    assert result.exit_code != 0 and "item snapshots are off" in result.output
    app.extensions["viralspot.catalog"].dispose()


def test_a_snapshot_that_cannot_be_written_leaves_pages_on_the_database(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the snapshot directory should be")
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 30, ITEM_SNAPSHOT_DIR=str(blocker))
    client = app.test_client()
    first = page_items(client, "s", 10)
    app.extensions[ITEM_SNAPSHOTS].wait(60)
    assert "writing the item snapshot failed" in caplog.text
    assert "not-a-directory" not in caplog.text  # the error's type is logged, not paths or messages
    second = page_items(client, "s", 20)
    assert len(first) == 10 and second[:10] == first  # still served, from the database
    app.extensions["viralspot.catalog"].dispose()


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_server_writes_a_state_only_once_it_has_settled_and_backs_off_while_it_changes(seeded, tmp_path):
    """During an import every chunk commits a new state: writing each would rescan the table over
    and over. A state is written once it stayed current ``settle`` seconds; a write the catalog
    overtook makes the next wait twice as long."""
    clock = ManualClock()
    snapshots = ItemSnapshots(seeded.extensions["viralspot.catalog"], tmp_path, settle=5.0, recheck=1.0,
                              clock=clock)
    started = []
    snapshots._write_in_background = lambda: started.append(clock.now)  # record, do not write
    for state in ((1, 10), (2, 10), (3, 10)):  # a new state every second: none settles
        assert snapshots.current(state) is None
        clock.now += 1.0
    assert started == []
    for _ in range(5):  # (3, 10) stays current
        snapshots.current((3, 10))
        clock.now += 1.0
    assert started == [107.0]  # first seen at 102, settled 5 s later
    del snapshots._write_in_background
    writes = []

    def overtaken(self=snapshots):
        writes.append(clock.now)
        raise CatalogChanged("the catalog version changed while writing")

    snapshots.write_now = overtaken
    for _ in range(3):
        snapshots._write_in_background()
        assert snapshots._next_write - clock.now == snapshots._backoff
    assert (len(writes), snapshots._backoff) == (3, 20.0)  # 5, 10, 20 s


def test_mapping_a_snapshot_holds_no_lock_other_pages_wait_on(seeded, tmp_path, monkeypatch):
    import threading

    snapshots = ItemSnapshots(seeded.extensions["viralspot.catalog"], tmp_path, write=False)
    path = snapshots.write_now()
    opening, release = threading.Event(), threading.Event()
    real_open = ItemSnapshots._open

    def slow_open(found_path):
        opening.set()
        release.wait(30)
        return real_open(found_path)

    monkeypatch.setattr(snapshots, "_open", slow_open)
    with engine_connect(seeded) as conn:
        state = catalog_state(conn)
    first = threading.Thread(target=lambda: snapshots.current(state))
    first.start()
    assert opening.wait(30)
    # While the file is being mapped: the lock is free, and another page goes to the database at once.
    assert snapshots._lock.acquire(timeout=5)
    snapshots._lock.release()
    assert snapshots.current(state) is None
    release.set()
    first.join(30)
    assert snapshots.current(state).path == path


def engine_connect(app):
    return app.extensions["viralspot.catalog"].connect()
