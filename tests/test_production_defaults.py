"""End to end through the HTTP client with the production defaults: the catalog state remembered
for 1 s, item snapshots on and written by the server in the background once a state has settled."""
from __future__ import annotations

import json
import time

from viralspot import create_app
from viralspot.catalog.database import ITEM_SNAPSHOTS
from viralspot.catalog.item_snapshot import SNAPSHOT_FILE

#: Bound on waiting for the server's own work (the snapshot write, the state's 1 s memory).
PATIENCE_SECONDS = 60


def random_page(client, session_id, offset, limit=50):
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": session_id,
                                                      "offset": offset, "limit": limit})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return [item["id"] for item in data["reels"]], data["isLastPage"]


def until(condition, poke):
    """Call ``poke`` until ``condition()`` holds, for at most ``PATIENCE_SECONDS``."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        poke()
        time.sleep(0.2)


def test_random_feeds_with_the_production_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "end-to-end-secret")
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "end-to-end-admin-token")
    app = create_app({"CONFIG": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db",
                      "ITEM_SNAPSHOT_DIR": str(tmp_path / "snapshots")})
    assert (app.config["CATALOG_STATE_TTL"], app.config["ITEM_SNAPSHOT_WRITE"]) == (1.0, True)
    runner = app.test_cli_runner()
    seeded = runner.invoke(args=["content", "seed", "--items", "800", "--seed", "4", "--no-progress",
                                 "--reference-date", "2026-06-01T00:00:00Z"])
    assert seeded.exit_code == 0, seeded.output
    client = app.test_client()
    snapshots = app.extensions[ITEM_SNAPSHOTS]

    served, offset = [], 0
    first, _ = random_page(client, "reader", 0)  # no snapshot yet: items from the database
    served += first
    offset += len(first)
    until(lambda: snapshots.pages_read > 0, lambda: random_page(client, "poller", 0))
    assert (snapshots.directory / SNAPSHOT_FILE).exists()
    reads = snapshots.pages_read
    while True:
        ids, last = random_page(client, "reader", offset)
        served += ids
        offset += 50
        if last:
            break
    assert snapshots.pages_read > reads  # the rest came from the snapshot
    reels = client.get("/api/reels", query_string={"limit": 1}).get_json()
    assert reels["success"] and len(served) == len(set(served))
    total = sum(1 for _ in _all_reel_ids(client))
    assert len(served) == total

    # A catalog write reaches the feed within the remembered state's second, without repeats.
    lines = tmp_path / "new.jsonl"
    lines.write_text("".join(json.dumps({"content_id": f"late-{n}", "shortcode": f"LATE{n:04d}",
                                         "content_type": "reel", "date_posted": "2026-05-01T00:00:00Z",
                                         "username": "latecomer"}) + "\n" for n in range(5)))
    assert runner.invoke(args=["content", "import", str(lines), "--no-progress"]).exit_code == 0
    late = []
    until(lambda: len(late) == 5, lambda: late.extend(random_page(client, "reader", len(served) + len(late))[0]))
    assert sorted(late) == [f"late-{n}" for n in range(5)]

    reset = client.post("/api/reset-session?session_id=reader").get_json()["data"]
    assert reset["session_reset"]["cleared_items_count"] == total + 5
    assert client.get("/api/sessions/reader", headers={"Authorization": "Bearer end-to-end-admin-token"}).status_code == 404
    assert client.get("/api/sessions/reader").status_code == 401  # production inspection needs the token
    app.extensions["viralspot.catalog"].dispose()


def _all_reel_ids(client):
    offset = 0
    while True:
        data = client.get("/api/reels", query_string={"limit": 100, "offset": offset}).get_json()["data"]
        yield from (item["id"] for item in data["reels"])
        if data["isLastPage"]:
            return
        offset += 100
