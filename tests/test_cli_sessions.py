"""`flask sessions ...`: list, show and reset sessions from the command line."""
from __future__ import annotations

import json

from session_helpers import REELS_FEED, SEED, serve
from viralspot.store import FeedView, PageStatus


def test_list_shows_count_and_most_recent_first(app, store):
    serve(store, "first", [1])
    serve(store, "second", [2, 3])
    result = app.test_cli_runner().invoke(args=["sessions", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "2 sessions in in_memory_dict"
    assert lines[1:] == ["second", "first"]
    # memory:// says plainly that a separate process cannot see a server's sessions.
    assert "only its own process's sessions, not a running server's" in result.stderr
    assert "VIRALSPOT_SESSION_STORE_URL=redis://" in result.stderr


def test_show_prints_the_session_as_json(app, store):
    serve(store, "shown", [4, 5, 6], feed=b"r" + bytes.fromhex("00000000000000ff"))
    result = app.test_cli_runner().invoke(args=["sessions", "show", "shown"])
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["session_id"] == "shown"
    assert summary["served_items_count"] == 3 and "generation" not in summary
    assert summary["feeds"] == [{"feed_key": "reels:00000000000000ff", "endpoint": "/api/reels",
                                 "served_items_count": 3, "positions_examined": 7}]
    assert summary["created_at"].endswith("Z") and 0 < summary["expires_in_seconds"] <= 86400


def test_show_unknown_session_fails(app):
    result = app.test_cli_runner().invoke(args=["sessions", "show", "ghost"])
    assert result.exit_code == 1
    assert "no session ghost (unknown, expired or reset)" in result.output


def test_reset_clears_the_session(app, store):
    serve(store, "gone", [7, 8])
    result = app.test_cli_runner().invoke(args=["sessions", "reset", "gone"])
    assert result.exit_code == 0
    assert "Session reset successfully" in result.output
    assert store.summary("gone") is None  # the session ended
    shown = app.test_cli_runner().invoke(args=["sessions", "show", "gone"])
    assert shown.exit_code == 1 and "no session gone (unknown, expired or reset)" in shown.output
    # Nothing of it is left: its next page starts a new session (a new seed, a fresh order).
    assert store.serve_page("gone", REELS_FEED, FeedView(SEED, (10,)), offset=0, limit=1,
                            max_ahead=10).status is PageStatus.ABSENT


def test_cli_validates_session_ids(app):
    result = app.test_cli_runner().invoke(args=["sessions", "show", "bad id!"])
    assert result.exit_code == 2
    assert "invalid characters" in result.output


def test_stats_reports_the_store_and_its_active_sessions(app, store):
    serve(store, "a", [1, 2])
    serve(store, "b", [3])
    store.reset("b")
    result = app.test_cli_runner().invoke(args=["sessions", "stats"])
    assert result.exit_code == 0
    stats = json.loads(result.stdout)
    assert stats["storage_type"] == "in_memory_dict" and stats["active_sessions"] == 1
    assert stats["max_sessions"] == 100_000 and stats["evicted"] == 0


def test_commands_say_in_one_line_that_the_store_or_the_database_is_unreachable():
    from redis_fixtures import free_port
    from viralspot import create_app

    closed = free_port()  # nothing listens there
    app = create_app({"CONFIG": "testing", "SESSION_STORE_URL": f"redis://127.0.0.1:{closed}/0",
                      "SESSION_STORE_CONNECT_TIMEOUT": 0.2, "SESSION_STORE_RETRIES": 0})
    for args in (["sessions", "list"], ["sessions", "show", "someone"], ["sessions", "reset", "someone"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "Error: the session store is unavailable (redis: ConnectionError" in result.output, result.output
        assert "Traceback" not in result.output
    app.extensions["viralspot.session_store"].close()

    app = create_app({"CONFIG": "testing", "DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{closed}/none"})
    for args in (["content", "stats"], ["content", "seed", "--items", "1"]):
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1, (args, result.output)
        assert "Error: the catalog database is unavailable (OperationalError); see VIRALSPOT_DATABASE_URL" in (
            result.output), result.output
    app.extensions["viralspot.catalog"].dispose()


def test_seed_refuses_if_empty_with_replace(app):
    result = app.test_cli_runner().invoke(args=["content", "seed", "--if-empty", "--replace"])
    assert result.exit_code == 2
    assert "--if-empty keeps a catalog that holds content, --replace deletes it: choose one" in result.output
