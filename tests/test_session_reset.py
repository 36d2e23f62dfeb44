"""POST /api/reset-session against the documented contract (../shared/seed/reset-session.md)."""
from __future__ import annotations

import re

import pytest

from session_helpers import REELS_FEED, SEED, serve
from viralspot.store import FeedView, PageStatus

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


# -- the documented bodies -----------------------------------------------------------------


def test_found_body_matches_the_contract(client, store):
    serve(store, "user_session_abc123", list(range(1, 48)))
    serve(store, "other", [1])
    body = client.post("/api/reset-session?session_id=user_session_abc123").get_json()
    assert set(body) == {"success", "data", "message"}
    assert body["message"] == "Session reset successfully"
    data = body["data"]
    assert data["session_reset"] == {
        "session_id": "user_session_abc123",
        "operation_status": "completed",
        "session_found": True,
        "cleared_items_count": 47,
        "memory_freed": True,
    }
    assert data["next_steps"] == {
        "randomization": "Fresh randomization will be applied",
        "content_delivery": "Previously seen content may now reappear in random feeds",
        "integration": "Compatible with /api/reels and /api/posts random_order=true",
    }
    assert TIMESTAMP.match(data["timestamp"])
    # The reset ended the session: only "other" is still active.
    assert data["server_info"] == {"total_active_sessions": 1, "session_storage_type": "in_memory_dict"}
    assert store.summary("user_session_abc123") is None


def test_not_found_body_matches_the_contract(client):
    body = client.post("/api/reset-session?session_id=nonexistent_session_xyz789").get_json()
    assert body["message"] == "Session not found - no data to reset"
    assert body["data"]["session_reset"] == {
        "session_id": "nonexistent_session_xyz789",
        "operation_status": "completed",
        "session_found": False,
        "cleared_items_count": 0,
        "memory_freed": False,
    }
    assert body["data"]["next_steps"] == {
        "randomization": "New session will be created on first content request",
        "content_delivery": "Fresh content delivery experience will be provided",
        "integration": "Ready for content endpoints with random ordering",
    }
    assert body["data"]["server_info"] == {"total_active_sessions": 0, "session_storage_type": "in_memory_dict"}


def test_cleared_count_spans_every_feed_of_the_session(client, store):
    serve(store, "s", [1, 2], feed=b"r" + bytes(8))
    serve(store, "s", [3, 4, 5], feed=b"p" + bytes(8))
    body = client.post("/api/reset-session?session_id=s").get_json()
    assert body["data"]["session_reset"]["cleared_items_count"] == 5


def test_a_reset_ends_the_session(client, store):
    serve(store, "s", [1, 2])
    assert client.get("/api/sessions/s").status_code == 200
    first = client.post("/api/reset-session?session_id=s").get_json()
    assert first["data"]["server_info"]["total_active_sessions"] == 0
    assert client.get("/api/sessions/s").get_json()["error_code"] == "SESSION_NOT_FOUND"
    second = client.post("/api/reset-session?session_id=s").get_json()
    assert second["message"] == "Session not found - no data to reset"
    assert second["data"]["session_reset"]["session_found"] is False
    assert second["data"]["session_reset"]["cleared_items_count"] == 0
    # Nothing of it is left: its next page starts a new session.
    assert store.serve_page("s", REELS_FEED, FeedView(SEED, (10,)), offset=0, limit=1,
                            max_ahead=10).status is PageStatus.ABSENT


def test_surrounding_whitespace_is_stripped(client, store):
    serve(store, "abc", [7])
    body = client.post("/api/reset-session?session_id=%20%20abc%09").get_json()
    assert body["data"]["session_reset"]["session_id"] == "abc"
    assert body["data"]["session_reset"]["session_found"] is True


def test_longest_allowed_session_id_is_accepted(client):
    session_id = "a" * 255
    response = client.post(f"/api/reset-session?session_id={session_id}")
    assert response.status_code == 200


def test_reset_is_logged_with_the_sessions_fingerprint_and_count(client, store, caplog):
    from viralspot.logs import session_fingerprint

    serve(store, "logged", [1, 2])
    with caplog.at_level("INFO", logger="viralspot"):
        client.post("/api/reset-session?session_id=logged")
        client.post("/api/reset-session?session_id=never-seen")
    messages = [record.getMessage() for record in caplog.records]
    assert f"reset session {session_fingerprint('logged')}: cleared 2 served items" in messages
    assert f"reset requested for unknown session {session_fingerprint('never-seen')}" in messages
    assert not [message for message in messages if "logged" in message or "never-seen" in message]


# -- validation: every branch --------------------------------------------------------------


@pytest.mark.parametrize(
    "query, detail, code",
    [
        ("", "session_id parameter is required", "MISSING_PARAMETER"),
        ("?other=1", "session_id parameter is required", "MISSING_PARAMETER"),
        ("?session_id=", "session_id cannot be empty", "EMPTY_VALUE"),
        ("?session_id=%20%20%20", "session_id cannot be empty", "EMPTY_VALUE"),
        ("?session_id=" + "a" * 256, "session_id is too long (maximum 255 characters)", "TOO_LONG"),
        ("?session_id=a%20b",
         "session_id contains invalid characters (only alphanumeric, dots, underscores, and hyphens allowed)",
         "INVALID_FORMAT"),
        ("?session_id=%C3%A9t%C3%A9", None, "INVALID_FORMAT"),  # non-ASCII letters
        ("?session_id=a/b", None, "INVALID_FORMAT"),
        ("?session_id=a%00b", None, "INVALID_FORMAT"),
        ("?session_id=x';DROP%20TABLE", None, "INVALID_FORMAT"),
    ],
)
def test_bad_session_ids_are_rejected(client, query, detail, code, caplog):
    with caplog.at_level("WARNING", logger="viralspot"):
        response = client.post(f"/api/reset-session{query}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False
    assert body["error_code"] == code
    if detail:
        assert body["detail"] == detail
    assert TIMESTAMP.match(body["timestamp"]) and body["troubleshooting"]
    assert any(r.levelname == "WARNING" for r in caplog.records)


def test_invalid_format_has_documented_troubleshooting(client):
    body = client.post("/api/reset-session?session_id=bad!").get_json()
    assert body["troubleshooting"] == "Use only letters, numbers, dots, underscores, and hyphens in session IDs"


def test_rejected_session_id_never_reaches_the_log(client, caplog):
    with caplog.at_level("DEBUG", logger="viralspot"):
        client.post("/api/reset-session?session_id=evil%0Ainjected-line")
    assert not any("injected-line" in r.getMessage() for r in caplog.records)
