"""Each answer of the catalog database is bounded by ``DATABASE_TIMEOUT``
(``catalog/answer_deadline.py``).

* A PostgreSQL catalog that stops answering with its connections open (a stopped server, a stalled
  disk, a partition): every route answers the 503 ``DATABASE_UNAVAILABLE`` envelope within the
  deadline, its client margin and a connect timeout, nothing of the database reaches the client, and requests succeed
  again once it answers. The server is a real one behind a TCP proxy (``tcp_proxy.py``) that the
  tests hold: bytes wait, connections stay open, as a hung server's would.
* A SQLite statement too costly for the catalog (a hundred keywords over every row) is interrupted
  at the deadline: 503, and the next request is served.
* ``flask`` commands wait without the deadline.
"""
from __future__ import annotations

import time

import click
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from conftest import content_index_names, dispose_catalog_app, make_catalog_app
from tcp_proxy import SwitchingProxy
from viralspot.catalog.answer_deadline import CLIENT_MARGIN, deadline_lifted
from viralspot.cli import Commands
from viralspot.extensions import catalog

#: Seconds a request waits for each answer in these tests (``DATABASE_TIMEOUT``).
DEADLINE = 0.5
#: A hung server: the client's margin past the deadline, then a new connection, which libpq gives 2 s
#: at least; and a loaded CI machine.
BOUND = DEADLINE + CLIENT_MARGIN + 2 + 1.5
ROUTES = ["/api/reels?limit=5", "/api/posts?limit=5&sort_by=likes",
          "/api/reels?random_order=true&session_id=hung-database&limit=5", "/api/filter-options"]
LEAKS = ("traceback", "select ", "psycopg", "postgres", "sqlite", "operationalerror", "answer from", "interrupted",
         "sqlalchemy")
#: A SQLite statement of 0.2-0.6 s on the machines the tests run on (a million rows counted).
COUNTING = text("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000) "
                "SELECT count(*) FROM c")


@pytest.fixture
def proxied(postgres_server):
    """(app, proxy): an app on a seeded PostgreSQL catalog reached through a proxy the test can hold."""
    url = postgres_server.create_database()
    seeding = make_catalog_app(url)
    result = seeding.test_cli_runner().invoke(args=["content", "seed", "--items", "40", "--seed", "5"])
    assert result.exit_code == 0, result.output
    dispose_catalog_app(seeding)
    proxy = SwitchingProxy(postgres_server.port)
    app = make_catalog_app(url.replace(f":{postgres_server.port}/", f":{proxy.port}/"),
                           DATABASE_TIMEOUT=DEADLINE)
    yield app, proxy
    proxy.release()
    dispose_catalog_app(app)
    proxy.close()
    postgres_server.drop_database(url)


def timed_get(client, path):
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


@pytest.mark.postgres
def test_every_route_answers_503_within_the_deadline_while_the_database_hangs(proxied):
    app, proxy = proxied
    client = app.test_client()
    for path in ROUTES:
        assert client.get(path).status_code == 200, path
    proxy.hold()
    for path in ROUTES * 2:  # the second time round, the pool's connections were dropped: new ones wait too
        response, seconds = timed_get(client, path)
        assert response.status_code == 503, (path, response.json)
        assert response.json["error_code"] == "DATABASE_UNAVAILABLE"
        assert set(response.json) == {"success", "detail", "error_code", "timestamp", "troubleshooting"}
        assert not any(leak in response.get_data(as_text=True).lower() for leak in LEAKS), response.json
        assert seconds < BOUND, (path, seconds)
    proxy.release()
    for path in ROUTES:
        assert client.get(path).status_code == 200, path


@pytest.mark.postgres
def test_a_request_that_finds_every_pooled_connection_busy_answers_503(proxied):
    """More server threads than the pool's 20 connections, each held by a slow statement: a request
    waited SQLAlchemy's 30 s for one and answered 500 (its pool TimeoutError is not an
    OperationalError). It waits as long as a connect may (2 s here), then answers the 503."""
    app, _proxy = proxied
    seconds = page_with_every_connection_taken(app, 20)  # pool_size 10 + max_overflow 10
    assert seconds < BOUND, seconds


def page_with_every_connection_taken(app, connections: int) -> float:
    """A page requested while ``connections`` (the whole pool) are held: it answers the 503 envelope,
    with nothing of the database in it, and the next page is served. The seconds it took."""
    client = app.test_client()
    engine = app.extensions["viralspot.catalog"]
    held = [engine.connect() for _ in range(connections)]
    try:
        response, seconds = timed_get(client, "/api/reels?limit=5")
    finally:
        for connection in held:
            connection.close()
    assert response.status_code == 503 and response.json["error_code"] == "DATABASE_UNAVAILABLE", response.json
    assert not any(leak in response.get_data(as_text=True).lower() for leak in LEAKS), response.json
    assert client.get("/api/reels?limit=5").status_code == 200
    return seconds


@pytest.mark.postgres
def test_a_statement_past_the_deadline_is_cancelled_on_the_server(proxied, postgres_server):
    """The server stops it (``statement_timeout``): nothing runs on for a client that gave up, and the
    connection serves the next statement."""
    app, _proxy = proxied
    with app.app_context():
        with catalog.connect() as conn:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": 30})
            assert time.monotonic() - started < DEADLINE + CLIENT_MARGIN
        with catalog.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres", dbname="postgres") as admin:
        running = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' "
                                "AND state = 'active'").fetchone()[0]
    assert running == 0


@pytest.mark.postgres
def test_a_statement_within_the_deadline_succeeds(proxied):
    app, _proxy = proxied
    with app.app_context(), catalog.connect() as conn:
        assert conn.execute(text("SELECT pg_sleep(:seconds), 7"), {"seconds": DEADLINE / 5}).all()[0][1] == 7


@pytest.mark.postgres
def test_commands_wait_without_the_deadline(proxied):
    app, _proxy = proxied
    group = Commands("probe")

    @group.command("sleep")
    def sleep():
        with catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 2})
        click.echo("slept")

    result = app.test_cli_runner().invoke(group, ["sleep"])
    assert result.exit_code == 0, result.output
    assert "slept" in result.output


@pytest.mark.postgres
def test_the_deadline_is_lifted_only_inside_deadline_lifted(proxied):
    app, _proxy = proxied
    with app.app_context():
        with deadline_lifted(), catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 2})
        with pytest.raises(OperationalError), catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 2})


# --- SQLite ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_catalog(tmp_path):
    """The URL of a SQLite catalog of 5,000 items (seeded by the command, which has no deadline)."""
    url = f"sqlite:///{tmp_path}/catalog.db"
    seeding = make_catalog_app(url)
    result = seeding.test_cli_runner().invoke(args=["content", "seed", "--items", "5000", "--seed", "5"])
    assert result.exit_code == 0, result.output
    dispose_catalog_app(seeding)
    return url


def test_a_sqlite_statement_past_the_deadline_is_interrupted_unless_lifted(sqlite_catalog):
    app = make_catalog_app(sqlite_catalog, DATABASE_TIMEOUT=0.02)
    with app.app_context():
        started = time.monotonic()
        with pytest.raises(OperationalError, match="interrupted"), catalog.connect() as conn:
            conn.execute(COUNTING).all()
        assert time.monotonic() - started < 0.02 + 1.0
        with deadline_lifted(), catalog.connect() as conn:
            assert conn.execute(COUNTING).scalar() == 1_000_000
        with catalog.connect() as conn:  # the interrupted connection serves the next statement
            assert conn.execute(text("SELECT 7")).scalar() == 7
    dispose_catalog_app(app)


def test_a_request_too_costly_for_the_catalog_answers_503_at_the_deadline(sqlite_catalog):
    """A hundred keywords of two characters matching nothing: 500 LIKE tests a row, no index helps (a
    text shorter than a trigram is not looked up; 0.2-0.5 s at 5,000 items here)."""
    app = make_catalog_app(sqlite_catalog, DATABASE_TIMEOUT=0.05)
    client = app.test_client()
    keywords = ",".join(f"~{chr(0x4E00 + number)}" for number in range(100))
    for path in ("/api/reels", "/api/reels?random_order=true&session_id=costly"):
        response, seconds = timed_get(client, path + ("&" if "?" in path else "?") + "keywords=" + keywords)
        assert response.status_code == 503, response.json
        assert response.json["error_code"] == "DATABASE_UNAVAILABLE"
        assert not any(leak in response.get_data(as_text=True).lower() for leak in LEAKS), response.json
        assert seconds < 0.05 + 1.0
    assert client.get("/api/reels?limit=5&keywords=no-such-keyword").status_code == 200
    assert len(client.get("/api/reels?limit=5").json["data"]["reels"]) == 5
    dispose_catalog_app(app)


def test_a_sqlite_request_that_finds_every_pooled_connection_busy_answers_503(sqlite_catalog):
    """More server threads than the SQLite pool's 32 connections: a request waited SQLAlchemy's 30 s
    for one. It waits as long as an answer may (at most 5 s), then answers the 503."""
    app = make_catalog_app(sqlite_catalog, DATABASE_TIMEOUT=0.5)
    assert app.test_client().get("/api/reels?limit=5").status_code == 200
    seconds = page_with_every_connection_taken(app, 32)  # SQLITE_POOL_SIZE + its overflow
    assert 0.5 <= seconds < 0.5 + 1.5, seconds
    dispose_catalog_app(app)


def test_indexes_missing_at_start_are_built_past_the_statement_deadline(sqlite_catalog):
    """Building an index over a large catalog takes longer than a request's statement may: cut off at
    the deadline, start-up failed, and each request tried again and was cut off: 503 for good. Here
    the deadline (1 ms) is shorter than any build."""
    from sqlalchemy import text as sql

    seeding = make_catalog_app(sqlite_catalog)
    with seeding.extensions["viralspot.catalog"].begin() as conn:
        for name in ("ix_content_views", "ix_content_account_engagement"):
            conn.execute(sql(f"DROP INDEX {name}"))
    dispose_catalog_app(seeding)
    app = make_catalog_app(sqlite_catalog, DATABASE_TIMEOUT=0.001)
    engine = app.extensions["viralspot.catalog"]
    assert {"ix_content_views", "ix_content_account_engagement"} <= content_index_names(engine)
    dispose_catalog_app(app)
