"""An unreachable catalog database: the app still starts, requests answer the 503 envelope. The
schema is created once the database answers, and by one of several processes starting at once."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import dispose_catalog_app, make_catalog_app


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # released on close: nothing listens there


@pytest.fixture
def unreachable_app():
    app = make_catalog_app(f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/viralspot")
    yield app
    dispose_catalog_app(app)


@pytest.mark.parametrize("path", ["/api/reels", "/api/posts?sort_by=likes", "/api/filter-options"])
def test_requests_answer_503_database_unavailable(unreachable_app, path):
    response = unreachable_app.test_client().get(path)
    assert response.status_code == 503
    body = response.json
    assert body["success"] is False
    assert body["error_code"] == "DATABASE_UNAVAILABLE"
    assert set(body) == {"success", "detail", "error_code", "timestamp", "troubleshooting"}
    assert response.headers["Retry-After"] == "2"


def test_bad_arguments_are_still_400_when_the_database_is_down(unreachable_app):
    assert unreachable_app.test_client().get("/api/reels?limit=0").status_code == 400


def test_schema_is_created_once_the_database_answers(tmp_path):
    from sqlalchemy import inspect

    app = make_catalog_app(f"sqlite:///{tmp_path}/missing-dir/catalog.db")  # cannot be opened yet
    try:
        assert app.test_client().get("/api/reels").status_code == 503
        (tmp_path / "missing-dir").mkdir()
        response = app.test_client().get("/api/reels")
        assert response.status_code == 200
        assert "content" in inspect(app.extensions["viralspot.catalog"]).get_table_names()
    finally:
        dispose_catalog_app(app)


@pytest.mark.postgres
def test_processes_starting_together_on_an_empty_postgresql_database_all_start(postgres_server):
    """Six processes (gunicorn workers) create the schema at once: two ``CREATE TABLE`` of one name
    at once fail on PostgreSQL's unique type names; they take turns (an advisory lock)."""
    url = postgres_server.create_database()
    start = ("from viralspot import create_app; "
             "app = create_app({'CONFIG': 'testing', 'DATABASE_URL': %r}); "
             "print(app.extensions.get('viralspot.catalog.schema_ready'))" % url)
    processes = [subprocess.Popen([sys.executable, "-c", start], cwd=Path(__file__).resolve().parents[1],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outcomes = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 6, [err[-500:] for _out, err in outcomes]
    assert [out.strip() for out, _err in outcomes] == ["True"] * 6, outcomes
    postgres_server.drop_database(url)
