"""Item snapshots: every rendered item of the catalog in one memory-mapped, append-only file.

Checked against the database's own items (``joined_item_fragments``) on SQLite
and PostgreSQL; writes that append only the items they changed, deltas that
outgrow the base, new epochs, partial and corrupt deltas, a write during
writing, damaged files, the lock between writers, a re-created catalog, and
pages that really read the snapshot.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import threading

import pytest
from sqlalchemy import event, select, update

from catalog_data import PROFILES, as_json_lines, fixture_records
from moments import PINNED_NOW
from viralspot import create_app
from viralspot.catalog import item_snapshot, item_snapshots
from viralspot.catalog.database import ITEM_SNAPSHOTS
from viralspot.catalog.importer import import_lines
from viralspot.catalog.item_snapshot import (SNAPSHOT_FILE, CatalogChanged, ItemSnapshot, SnapshotError,
                                             update_snapshot)
from viralspot.catalog.queries import bump_version, catalog_state, content_count
from viralspot.catalog.rendering import item_fragments, joined_item_fragments
from viralspot.catalog.seed import seed_catalog
from viralspot.catalog.item_snapshots import LOCK_NAME, ItemSnapshots
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


def write_snapshot(conn, directory):
    return update_snapshot(conn, directory).path


def assert_holds_the_databases_items(conn, snapshot: ItemSnapshot, extra_keys=()):
    state = catalog_state(conn)
    assert snapshot.state == state and snapshot.complete
    assert snapshot.items == content_count(conn)
    largest = state[1]
    for keys in ([[key] for key in range(0, largest + 3)]
                 + [list(range(1, largest + 1)), [3, 3, 3], [0, -1, largest + 5, 2, largest], list(extra_keys)]):
        expected_joined, expected_count = joined_item_fragments(conn, keys)
        joined, count = snapshot.joined(keys)
        assert (joined.decode(), count) == (expected_joined, expected_count), keys


def test_snapshot_holds_exactly_the_databases_items(seeded, tmp_path):
    engine = seeded.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        path = write_snapshot(conn, tmp_path)
        snapshot = ItemSnapshot(path)
        assert path.name == SNAPSHOT_FILE and snapshot.deltas == 0
        largest = catalog_state(conn)[1]
        rng = random.Random(5)
        assert_holds_the_databases_items(conn, snapshot, rng.sample(range(1, largest + 1), 24))
        assert json.loads(snapshot.joined([7])[0]) == json.loads(item_fragments(conn, [7])[0])
        assert snapshot.joined([largest + 1]) == (b"", 0)
    snapshot.close()


def test_writing_again_keeps_the_existing_file(seeded, tmp_path):
    with seeded.extensions["viralspot.catalog"].connect() as conn:
        first = write_snapshot(conn, tmp_path)
        written = first.stat().st_mtime_ns
        assert update_snapshot(conn, tmp_path) == (first, "kept", 0, 0)
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


# --- a catalog write appends ------------------------------------------------------

def digest(path, length: int) -> str:
    with open(path, "rb") as file:
        return hashlib.sha256(file.read(length)).hexdigest()


def changed_records(start: int, count: int, new: int) -> list[dict]:
    """``count`` fixture records from ``start`` with a new description, and ``new`` records not yet
    imported; without profile fields, so that no profile (and none of its other items) changes."""
    records = [{key: value for key, value in record.items() if key not in PROFILE_FIELDS}
               for record in fixture_records(PINNED_NOW)]
    changed = [{**record, "description": f"edited {record['content_id']}"}
               for record in records[start:start + count]]
    added = [{**records[i], "content_id": f"new{start}-{i}", "shortcode": f"NEW{start}-{i}"} for i in range(new)]
    return changed + added


PROFILE_FIELDS = {field for profile in PROFILES.values() for field in profile}


@pytest.fixture
def imported(database_url):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": database_url})
    engine = app.extensions["viralspot.catalog"]
    import_lines(engine, as_json_lines(fixture_records(PINNED_NOW)))
    yield engine
    engine.dispose()


def test_a_write_appends_the_items_it_changed_and_leaves_the_file_before_them_as_it_was(imported, tmp_path):
    with imported.connect() as conn:
        first = update_snapshot(conn, tmp_path)
        old_version = catalog_state(conn)[0]
    assert first.action == "written" and first.items == 60
    inode, size, prefix = first.path.stat().st_ino, first.path.stat().st_size, digest(first.path, first.bytes)
    import_lines(imported, as_json_lines(changed_records(5, 3, new=2)))
    with imported.connect() as conn:
        stamped = conn.execute(select(content.c.id).where(content.c.item_version > old_version)
                               .order_by(content.c.id)).scalars().all()
        update = update_snapshot(conn, tmp_path)
        assert update.action == "appended" and update.items == len(stamped)
        assert stamped == [6, 7, 8, 61, 62]  # 3 edited, 2 new
        stat = update.path.stat()
        assert (stat.st_ino, stat.st_size) == (inode, size + update.bytes)  # appended, not rewritten
        assert digest(update.path, size) == prefix
        snapshot = ItemSnapshot(update.path)
        assert snapshot.deltas == 1 and snapshot.delta_items == len(stamped)
        assert_holds_the_databases_items(conn, snapshot)
        assert json.loads(snapshot.joined([6])[0])["description"] == "edited c005"
        snapshot.close()
        assert update_snapshot(conn, tmp_path).action == "kept"
    import_lines(imported, as_json_lines(changed_records(20, 2, new=1)))  # a second delta on top
    with imported.connect() as conn:
        assert update_snapshot(conn, tmp_path).action == "appended"
        snapshot = ItemSnapshot(tmp_path / SNAPSHOT_FILE)
        assert snapshot.deltas == 2
        assert_holds_the_databases_items(conn, snapshot)
        assert json.loads(snapshot.joined([6])[0])["description"] == "edited c005"  # older delta still read
        snapshot.close()


def test_deltas_that_outgrow_their_share_of_the_base_make_a_whole_write(imported, tmp_path, monkeypatch):
    monkeypatch.setattr(item_snapshot, "APPEND_FLOOR", 12)
    with imported.connect() as conn:
        update_snapshot(conn, tmp_path)
    actions = []
    for start in (0, 20, 40):  # 5 items each: 5, 10, then 15 in deltas, past the 12 allowed
        import_lines(imported, as_json_lines(changed_records(start, 5, new=0)))
        with imported.connect() as conn:
            actions.append(update_snapshot(conn, tmp_path).action)
            snapshot = ItemSnapshot(tmp_path / SNAPSHOT_FILE)
            assert_holds_the_databases_items(conn, snapshot)
            snapshot.close()
    assert actions == ["appended", "appended", "written"]
    assert ItemSnapshot(tmp_path / SNAPSHOT_FILE).deltas == 0  # a whole write holds no delta


def test_deleting_rows_draws_a_new_epoch_and_the_file_is_written_whole(tmp_path):
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 50)
    engine = app.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        update_snapshot(conn, tmp_path / "snaps")
    seed_catalog(engine, 40, 2, reference=PINNED_NOW, replace=True)  # deletes every row
    with engine.connect() as conn:
        update = update_snapshot(conn, tmp_path / "snaps")
        assert update.action == "written"
        assert_holds_the_databases_items(conn, ItemSnapshot(update.path))
    engine.dispose()


def test_a_partial_delta_is_ignored_and_never_written_after(imported, tmp_path):
    with imported.connect() as conn:
        update_snapshot(conn, tmp_path)
    import_lines(imported, as_json_lines(changed_records(5, 1, new=1)))
    with imported.connect() as conn:
        appended = update_snapshot(conn, tmp_path)
    path = appended.path
    good = ItemSnapshot(path)
    inode = path.stat().st_ino
    import_lines(imported, as_json_lines(changed_records(9, 1, new=0)))
    with open(path, "ab") as file:  # a writer that died mid-append: a delta header and half its data
        file.write(item_snapshot.DELTA_HEADER.pack(item_snapshot.DELTA_MAGIC, 10 ** 12, 99, 3, 400) + b"x" * 50)
    reader = ItemSnapshot(path)
    assert reader.state == good.state and not reader.complete  # served as far as complete
    assert reader.joined(range(1, 70)) == good.joined(range(1, 70))
    with imported.connect() as conn:
        update = update_snapshot(conn, tmp_path)
        assert update.action == "written" and path.stat().st_ino != inode  # a new file, renamed over
        assert_holds_the_databases_items(conn, ItemSnapshot(path))
    assert good.joined([6])[1] == 1  # the old map still reads after the file was replaced


def test_a_delta_whose_checksum_fails_is_not_read(imported, tmp_path):
    with imported.connect() as conn:
        base = update_snapshot(conn, tmp_path)
        base_state = catalog_state(conn)
    import_lines(imported, as_json_lines(changed_records(5, 1, new=0)))
    with imported.connect() as conn:
        assert update_snapshot(conn, tmp_path).action == "appended"
    with open(base.path, "r+b") as file:  # one byte of the delta's data flipped on disk
        file.seek(base.bytes + item_snapshot.DELTA_HEADER.size + 40)
        byte = file.read(1)
        file.seek(-1, os.SEEK_CUR)
        file.write(bytes([byte[0] ^ 0x20]))
    reader = ItemSnapshot(base.path)
    assert reader.state == base_state and reader.deltas == 0 and not reader.complete


def test_a_write_while_appending_leaves_the_file_as_it_was(imported, tmp_path):
    with imported.connect() as conn:
        update_snapshot(conn, tmp_path)
    size = (tmp_path / SNAPSHOT_FILE).stat().st_size
    import_lines(imported, as_json_lines(changed_records(5, 2, new=0)))

    def write_meanwhile(conn, cursor, statement, parameters, context, executemany):
        if "item_version >" in statement:
            with imported.begin() as other:
                bump_version(other)

    with imported.connect() as conn:
        event.listen(conn, "before_cursor_execute", write_meanwhile)
        with pytest.raises(CatalogChanged):
            update_snapshot(conn, tmp_path)
        event.remove(conn, "before_cursor_execute", write_meanwhile)
        assert (tmp_path / SNAPSHOT_FILE).stat().st_size == size
        assert update_snapshot(conn, tmp_path).action == "appended"
        assert_holds_the_databases_items(conn, ItemSnapshot(tmp_path / SNAPSHOT_FILE))


def test_concurrent_writers_get_their_own_versions_in_commit_order(database_url):
    """Writers stamp items with the version ``bump_version`` answers: a second writer waiting on
    the first must answer the version after the first's, not the one it would have read before."""
    app = create_app({"CONFIG": "testing", "DATABASE_URL": database_url})
    engine = app.extensions["viralspot.catalog"]
    with engine.begin() as conn:
        start = bump_version(conn)
    answers = {}
    first = engine.connect()
    transaction = first.begin()
    answers["first"] = bump_version(first)
    second = threading.Thread(target=lambda: answers.__setitem__("second", _bump_in_own_transaction(engine)))
    second.start()
    transaction.commit()
    first.close()
    second.join(60)
    assert answers == {"first": start + 1, "second": start + 2}
    with engine.connect() as conn:
        assert catalog_state(conn)[0] == start + 2
    engine.dispose()


def _bump_in_own_transaction(engine) -> int:
    with engine.begin() as conn:
        return bump_version(conn)


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
        assert not (tmp_path / SNAPSHOT_FILE).exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    (tmp_path / ".items.snap.999.1.tmp").write_bytes(b"left by a writer that died")
    (tmp_path / "items-v1-n5.snap").write_bytes(b"a file of the first format")
    update = snapshots.write_now()
    assert update is not None and update.path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([LOCK_NAME, SNAPSHOT_FILE])


def wait_for_writer(snapshots: ItemSnapshots, timeout: float = 60) -> None:
    """Wait for the server's background snapshot write under way, if any."""
    writer = snapshots._writer
    if writer is not None:
        writer.join(timeout)


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
    wait_for_writer(snapshots)  # ... while the server writes one in the background
    path = snapshots.directory / SNAPSHOT_FILE
    assert path.exists()
    # Change the stored items without a new version (no writer does that): a page that still shows
    # the old items can only have read them from the snapshot.
    with engine.begin() as conn:
        conn.execute(update(content).values(item_json='{"id":"changed"}'))
    from_snapshot = page_items(client, "second", 60)
    assert {item["id"] for item in from_snapshot} == {item["id"] for item in from_database}
    assert "changed" not in {item["id"] for item in from_snapshot}
    inode, size = path.stat().st_ino, path.stat().st_size
    with engine.begin() as conn:  # a write (as writers do: a version, and the items stamped with it)
        conn.execute(update(content).where(content.c.id <= 5)
                     .values(item_json='{"id":"new"}', item_version=bump_version(conn)))
    assert {item["id"] for item in page_items(client, "third", 60)} == {"changed", "new"}
    wait_for_writer(snapshots)
    assert path.stat().st_ino == inode and path.stat().st_size > size  # the 5 items appended
    reader = ItemSnapshot(path)
    assert reader.joined([1, 2, 6]) == (b'{"id":"new"},{"id":"new"},' + reader.joined([6])[0], 3)
    before = snapshots.pages_read
    fourth = page_items(client, "fourth", 60)
    assert snapshots.pages_read == before + 1  # read from the grown file, mapped anew
    assert sorted(item["id"] for item in fourth).count("new") == 5
    assert "changed" not in {item["id"] for item in fourth}  # the others: still the base's items
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


def blocked_after_start(app) -> None:
    """The app's snapshot directory, made at start-up, replaced by a file (a disk or mount gone bad)."""
    import shutil

    directory = app.extensions[ITEM_SNAPSHOTS].directory
    shutil.rmtree(directory)
    directory.write_text("a file where the snapshot directory should be")


def test_the_snapshot_command_says_in_one_line_when_it_cannot_write(tmp_path):
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 5, ITEM_SNAPSHOT_DIR=str(tmp_path / "snapshots"),
                     ITEM_SNAPSHOT_WRITE=True)
    blocked_after_start(app)
    result = app.test_cli_runner().invoke(args=["content", "snapshot"])
    assert result.exit_code == 1, result.output
    assert "Error: cannot write the item snapshot in" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    app.extensions["viralspot.catalog"].dispose()


def test_a_snapshot_that_cannot_be_written_leaves_pages_on_the_database(tmp_path, caplog):
    app = seeded_app(f"sqlite:///{tmp_path}/c.db", 30, ITEM_SNAPSHOT_DIR=str(tmp_path / "snapshots"))
    blocked_after_start(app)
    client = app.test_client()
    first = page_items(client, "s", 10)
    wait_for_writer(app.extensions[ITEM_SNAPSHOTS])
    assert "writing the item snapshot failed" in caplog.text
    assert str(tmp_path) not in caplog.text  # the error's type is logged, not paths or messages
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
    path = snapshots.write_now().path
    opening, release = threading.Event(), threading.Event()
    real_open = item_snapshots.ItemSnapshot

    def slow_open(found_path):
        opening.set()
        release.wait(30)
        return real_open(found_path)

    monkeypatch.setattr(item_snapshots, "ItemSnapshot", slow_open)
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


def test_a_snapshot_directory_that_cannot_be_made_stops_start_up_in_one_line(tmp_path):
    """It started, then logged "writing the item snapshot failed" at every catalog state."""
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(RuntimeError) as refused:
        create_app({"CONFIG": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
                    "ITEM_SNAPSHOT_DIR": str(tmp_path / "a-file" / "snapshots")})
    message = str(refused.value)
    assert message.startswith(f"VIRALSPOT_ITEM_SNAPSHOT_DIR: cannot make {tmp_path}/a-file/snapshots/")
    assert "\n" not in message and "empty to turn snapshots off" in message


def test_a_reader_of_snapshots_another_process_writes_makes_no_directory(tmp_path):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
                      "ITEM_SNAPSHOT_DIR": str(tmp_path / "shared"), "ITEM_SNAPSHOT_WRITE": False})
    try:
        assert not (tmp_path / "shared").exists()
    finally:
        app.extensions["viralspot.catalog"].dispose()
