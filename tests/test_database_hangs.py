"""A PostgreSQL catalog that stops answering with its connections open (a stopped server, a stalled
disk, a partition): every route answers the 503 ``DATABASE_UNAVAILABLE`` envelope within
``DATABASE_BUSY_TIMEOUT`` plus a connect timeout, nothing of the database reaches the client, and
requests succeed again once it answers. ``flask`` commands wait on it without that deadline.

The server is a real one behind a TCP proxy (``tcp_proxy.py``) that the tests hold: bytes wait,
connections stay open, as a hung server's would.
"""
from __future__ import annotations

import time

import click
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from conftest import dispose_catalog_app, make_catalog_app
from tcp_proxy import SwitchingProxy
from viralspot.catalog.answer_deadline import deadline_lifted
from viralspot.cli import Commands
from viralspot.extensions import catalog

pytestmark = pytest.mark.postgres

#: Seconds a request waits for each answer in these tests (``DATABASE_BUSY_TIMEOUT``).
DEADLINE = 0.5
#: A request may also open a connection, which libpq gives 2 s at least; and a loaded CI machine.
BOUND = DEADLINE + 2 + 1.5
ROUTES = ["/api/reels?limit=5", "/api/posts?limit=5&sort_by=likes",
          "/api/reels?random_order=true&session_id=hung-database&limit=5", "/api/filter-options"]
LEAKS = ("traceback", "select ", "psycopg", "postgres", "operationalerror", "answer from", "sqlalchemy")


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
                           DATABASE_BUSY_TIMEOUT=DEADLINE)
    yield app, proxy
    proxy.release()
    dispose_catalog_app(app)
    proxy.close()
    postgres_server.drop_database(url)


def timed_get(client, path):
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


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


def test_a_statement_longer_than_the_deadline_fails_and_its_connection_is_dropped(proxied):
    app, _proxy = proxied
    with app.app_context():
        with pytest.raises(OperationalError) as raised, catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 3})
        assert raised.value.connection_invalidated  # the pool does not hand it out again
        with catalog.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1


def test_a_statement_within_the_deadline_succeeds(proxied):
    app, _proxy = proxied
    with app.app_context(), catalog.connect() as conn:
        assert conn.execute(text("SELECT pg_sleep(:seconds), 7"), {"seconds": DEADLINE / 5}).all()[0][1] == 7


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


def test_the_deadline_is_lifted_only_inside_deadline_lifted(proxied):
    app, _proxy = proxied
    with app.app_context():
        with deadline_lifted(), catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 2})
        with pytest.raises(OperationalError), catalog.connect() as conn:
            conn.execute(text("SELECT pg_sleep(:seconds)"), {"seconds": DEADLINE * 2})
