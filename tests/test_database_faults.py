"""A SQLite catalog that is missing, unreadable or locked: every route answers the 503
``DATABASE_UNAVAILABLE`` envelope (never a 500, a traceback or SQL), within a bounded time,
and the service resumes once the fault is removed.

Each fault is tried at start-up (the app must still start) and, where it can happen to a
running server, after start. Tests run as root in CI, where ``chmod 000`` does not stop
reads: the unreadable file is then garbage bytes or a directory in its place; the
permission variant runs only as another user.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import time

import pytest

from conftest import dispose_catalog_app, make_catalog_app
from config import Config
from viralspot.catalog.database import EXTENSION_NAME

SQLITE_BUSY_TIMEOUT = Config.DATABASE_BUSY_TIMEOUT

CATALOG_ITEMS = 60
#: Seconds SQLite waits on a lock in these tests (``DATABASE_BUSY_TIMEOUT``); the default is checked once.
BUSY = 0.2
#: What a faulted request may take beyond the busy timeout (a loaded CI machine).
MARGIN = 2.0

RANDOM = "/api/reels?random_order=true&session_id=faults&limit=5"
ROUTES = ["/api/reels?limit=5", "/api/posts?limit=5&sort_by=likes", RANDOM, "/api/filter-options", "/health"]
ENVELOPE = {"success", "detail", "error_code", "timestamp", "troubleshooting"}
#: Nothing of the database's internals may reach a client.
LEAKS = ("traceback", "select ", "sqlite", "operationalerror", "databaseerror", "not a database", "locked",
         "unable to open", ".db", "sqlalchemy", "file ")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A seeded SQLite catalog each test copies."""
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    app = make_catalog_app(f"sqlite:///{path}")
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(CATALOG_ITEMS), "--seed", "3"])
    assert result.exit_code == 0, result.output
    dispose_catalog_app(app)
    with sqlite3.connect(path) as conn:  # one self-contained file: no -wal to copy alongside
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def put_in_place(template, path) -> None:
    """Install a copy of the template at ``path`` atomically (a new file, as a restore does)."""
    staging = path.with_name(path.name + ".restore")
    shutil.copyfile(template, staging)
    os.replace(staging, path)


def remove_database(path) -> None:
    """Delete the database and its WAL companions, as an operator's ``rm catalog.db*`` would."""
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if name.is_dir():
            shutil.rmtree(name)
        elif name.exists():
            name.unlink()


@pytest.fixture
def apps():
    """``start(path, **config)``: apps on a SQLite file, disposed after the test."""
    started = []

    def start(path, **config):
        app = make_catalog_app(f"sqlite:///{path}", DATABASE_BUSY_TIMEOUT=BUSY, **config)
        started.append(app)
        return app

    yield start
    for app in started:
        dispose_catalog_app(app)


def assert_unavailable(client, routes=ROUTES, bound=BUSY + MARGIN) -> None:
    for route in routes:
        began = time.monotonic()
        response = client.get(route)
        elapsed = time.monotonic() - began
        assert response.status_code == 503, (route, response.status_code, response.data[:300])
        assert elapsed < bound, (route, elapsed)
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert set(body) == ENVELOPE, route
        assert body["success"] is False and body["error_code"] == "DATABASE_UNAVAILABLE", (route, body)
        text = response.get_data(as_text=True).lower()
        assert not [leak for leak in LEAKS if leak in text], (route, text)


def assert_serving(client, items: bool = True) -> list[int]:
    """Every route answers 200; returns the ids of the random page."""
    for route in ROUTES:
        response = client.get(route)
        assert response.status_code == 200, (route, response.status_code, response.data[:300])
        if items and route.startswith("/api/") and "filter-options" not in route:
            assert response.json["data"]["reels"], route
    return [item["id"] for item in client.get(RANDOM).json["data"]["reels"]]


# --- missing -------------------------------------------------------------------------------------

def test_a_database_deleted_after_start_answers_503_until_it_is_restored(template, tmp_path, apps):
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    client = apps(path).test_client()
    first_page = assert_serving(client)
    remove_database(path)
    assert_unavailable(client)
    assert_unavailable(client)  # not only the connections that were open when the file went
    assert not path.exists(), "a running server must not create an empty catalog in place of a deleted one"
    put_in_place(template, path)
    assert assert_serving(client) == first_page  # the session's feed replays as it was


def test_a_path_whose_directory_does_not_exist_answers_503_until_it_does(tmp_path, apps):
    path = tmp_path / "not-yet" / "catalog.db"
    client = apps(path).test_client()
    assert_unavailable(client)
    path.parent.mkdir()
    assert_serving(client, items=False)  # the schema is created: an empty catalog


def test_a_database_whose_directory_is_removed_after_start_answers_503(template, tmp_path, apps):
    path = tmp_path / "data" / "catalog.db"
    path.parent.mkdir()
    put_in_place(template, path)
    client = apps(path).test_client()
    assert_serving(client)
    shutil.rmtree(path.parent)
    assert_unavailable(client)
    path.parent.mkdir()
    put_in_place(template, path)
    assert_serving(client)


# --- unreadable ----------------------------------------------------------------------------------

def write_garbage(path) -> None:
    staging = path.with_name(path.name + ".garbage")
    staging.write_bytes(b"not a database\n" * 1000)
    os.replace(staging, path)


def put_directory(path) -> None:
    remove_database(path)
    path.mkdir()
    (path / "inside").write_text("a directory where the database file should be")


UNREADABLE = {"garbage": write_garbage, "directory": put_directory}


@pytest.mark.parametrize("fault", sorted(UNREADABLE))
def test_an_unreadable_database_at_start_up_answers_503(fault, template, tmp_path, apps):
    path = tmp_path / "catalog.db"
    UNREADABLE[fault](path)
    client = apps(path).test_client()  # the app starts
    assert_unavailable(client)
    remove_database(path)
    put_in_place(template, path)
    assert_serving(client)


@pytest.mark.parametrize("fault", sorted(UNREADABLE))
def test_a_database_made_unreadable_after_start_answers_503(fault, template, tmp_path, apps):
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    client = apps(path).test_client()
    first_page = assert_serving(client)
    if fault == "garbage":
        remove_database(path)  # the old WAL must not be replayed into another file
    UNREADABLE[fault](path)
    assert_unavailable(client)
    remove_database(path)
    put_in_place(template, path)
    assert assert_serving(client) == first_page


def test_a_database_corrupted_in_place_answers_503_not_500(template, tmp_path, apps):
    """Pages overwritten under open connections ("database disk image is malformed"): the content
    routes and ``/health`` (which reads the catalog's state) answer 503.
    The file keeps its size: shrinking a file SQLite has memory-mapped would fault the process."""
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    client = apps(path).test_client()
    assert_serving(client)
    size, page = path.stat().st_size, 4096
    with open(path, "r+b") as file:
        for offset in range(page, size, page):  # every page but the header's
            file.seek(offset)
            file.write(b"\xa5" * page)
    assert path.stat().st_size == size
    assert_unavailable(client, ROUTES)
    put_in_place(template, path)
    assert_serving(client)


# --- locked --------------------------------------------------------------------------------------

class Locker:
    """Another process's connection holding the database exclusively (readers included)."""

    def __init__(self, path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0.0)
        self.conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        self.conn.execute("BEGIN EXCLUSIVE")
        self.conn.execute("SELECT count(*) FROM content").fetchall()

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_database_locked_at_start_up_answers_503_within_the_busy_timeout(template, tmp_path, apps):
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    locker = Locker(path)
    try:
        began = time.monotonic()
        client = apps(path).test_client()
        assert time.monotonic() - began < BUSY + MARGIN  # start-up does not hang either
        assert_unavailable(client)
    finally:
        locker.release()
    assert_serving(client)


def test_a_database_locked_after_start_answers_503_within_the_busy_timeout(template, tmp_path, apps):
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    app = apps(path)
    client = app.test_client()
    first_page = assert_serving(client)
    # The server's open connections share the file (WAL); a lock taken when they are recycled:
    app.extensions[EXTENSION_NAME].dispose()
    locker = Locker(path)
    try:
        assert_unavailable(client)
    finally:
        locker.release()
    assert assert_serving(client) == first_page


def test_the_default_busy_timeout_is_bounded(template, tmp_path):
    assert 0 < SQLITE_BUSY_TIMEOUT <= 5
    path = tmp_path / "catalog.db"
    put_in_place(template, path)
    app = make_catalog_app(f"sqlite:///{path}")  # the shipped default
    try:
        client = app.test_client()
        assert_serving(client)
        app.extensions[EXTENSION_NAME].dispose()
        locker = Locker(path)
        try:
            assert_unavailable(client, ["/api/filter-options"], bound=SQLITE_BUSY_TIMEOUT + MARGIN)
        finally:
            locker.release()
        assert_serving(client)
    finally:
        dispose_catalog_app(app)
