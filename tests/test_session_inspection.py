"""GET /api/sessions/<session_id>: an active session's state; unknown or reset sessions are a 404."""
from __future__ import annotations

import re

import pytest

from session_helpers import serve

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def test_an_active_session_shows_its_feeds_and_served_count(client, store):
    serve(store, "watcher", [1, 2, 3], feed=b"r" + bytes.fromhex("aaaa000000000000"))
    serve(store, "watcher", [4, 5], feed=b"p" + bytes.fromhex("bbbb000000000000"))
    body = client.get("/api/sessions/watcher").get_json()
    assert body["success"] is True and body["message"] == "Session found"
    session = body["data"]["session"]
    assert set(session) == {"session_id", "served_items_count", "created_at", "last_seen_at",
                            "expires_in_seconds", "feeds"}
    assert (session["session_id"], session["served_items_count"]) == ("watcher", 5)
    assert TIMESTAMP.match(session["created_at"]) and TIMESTAMP.match(session["last_seen_at"])
    assert session["created_at"] <= session["last_seen_at"]
    assert 86_000 < session["expires_in_seconds"] <= 86_400
    assert session["feeds"] == [
        {"feed_key": "reels:aaaa000000000000", "endpoint": "/api/reels", "served_items_count": 3,
         "positions_examined": 4},
        {"feed_key": "posts:bbbb000000000000", "endpoint": "/api/posts", "served_items_count": 2,
         "positions_examined": 6},
    ]


def test_a_random_page_creates_the_session_it_shows(client):
    assert client.get("/api/reels?random_order=true&session_id=fresh").status_code == 200
    response = client.get("/api/sessions/fresh")
    assert response.headers["Cache-Control"] == "no-store"  # this moment's state: no cache keeps it
    assert client.get("/api/sessions/never-made").headers["Cache-Control"] == "no-store"  # nor a 404
    session = response.get_json()["data"]["session"]
    assert [feed["endpoint"] for feed in session["feeds"]] == ["/api/reels"]


@pytest.mark.parametrize("session_id", ["never-seen", "was-reset"])
def test_unknown_and_reset_sessions_are_not_found(client, store, session_id):
    serve(store, "was-reset", [1])
    client.post("/api/reset-session?session_id=was-reset")
    response = client.get(f"/api/sessions/{session_id}")
    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False and body["error_code"] == "SESSION_NOT_FOUND"
    assert session_id in body["detail"] and body["troubleshooting"] and TIMESTAMP.match(body["timestamp"])


@pytest.mark.parametrize("raw, code", [("%20%20", "EMPTY_VALUE"), ("a%20b", "INVALID_FORMAT"),
                                       ("x" * 256, "TOO_LONG"), ("%C3%A9t%C3%A9", "INVALID_FORMAT"),
                                       ("a%2Fb", "INVALID_FORMAT"), ("a/b", "INVALID_FORMAT"),
                                       ("a%0Ab", "INVALID_FORMAT"), ("a%0D%0Ab", "INVALID_FORMAT")])
def test_session_ids_follow_the_reset_endpoints_rules(client, raw, code):
    response = client.get(f"/api/sessions/{raw}")
    assert response.status_code == 400
    assert response.get_json()["error_code"] == code


def test_surrounding_whitespace_is_stripped(client, store):
    serve(store, "padded", [9])
    assert client.get("/api/sessions/%20padded%20").get_json()["data"]["session"]["session_id"] == "padded"


def test_a_weighted_feed_shows_as_weighted_beside_the_uniform_one(client):
    for mode in ("true", "weighted"):
        assert client.get(f"/api/posts?random_order={mode}&session_id=both&limit=5").status_code == 200
    feeds = client.get("/api/sessions/both").get_json()["data"]["session"]["feeds"]
    assert [feed["feed_key"].split(":")[0] for feed in feeds] == ["posts", "posts+weighted"]
    assert feeds[0]["feed_key"].split(":")[1] == feeds[1]["feed_key"].split(":")[1]
    assert [feed["endpoint"] for feed in feeds] == ["/api/posts", "/api/posts"]


def test_a_head_request_never_serves_a_random_page(client):
    """A HEAD (a link checker, a prefetcher) shows no items: it must not use any up."""
    response = client.head("/api/reels?random_order=true&session_id=headed&limit=50")
    assert response.status_code == 405 and response.headers["Allow"] == "GET"
    assert client.get("/api/sessions/headed").status_code == 404  # no session made, nothing served
    assert client.head("/api/reels?limit=5").status_code == 200  # a plain page changes nothing: HEAD is fine
