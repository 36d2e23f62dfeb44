"""The app the benchmarks serve: the real service plus one route that exists only here.

``GET /bench/fixed-page``: a fixed 24-item page of the content endpoints' shape (the catalog's
items 1 to 24, read once at start-up), in the same envelope, from the same server: the
serialization ceiling a random page of 24 is compared with (``bench/cpu_per_page.py``). Each
request serializes the page's dict as a plain page's answer does; no database, no session store.

The per-client rate limits are off (``RATE_LIMIT``, ``RESET_RATE_LIMIT``): every benchmark's load
comes from one client address, far past a client's budget.

Served by gunicorn as ``bench.bench_app:app`` with ``VIRALSPOT_DATABASE_URL`` set.
"""
from __future__ import annotations

import os

from viralspot import create_app
from viralspot.catalog.queries import items_by_keys
from viralspot.content.listing import listing_message
from viralspot.extensions import catalog
from viralspot.schemas.envelope import api_response
from viralspot.catalog.items import serialize_item

from .common import BENCH_NOW, SECRET, SNAPSHOT_ROOT

#: Items of the ceiling page (the random pages it is compared with have as many).
CEILING_ITEMS = 24


def create_bench_app(config: dict | None = None):
    app = create_app({"CONFIG": "default", "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING", "FIXED_NOW": BENCH_NOW,
                      "RATE_LIMIT": "", "RESET_RATE_LIMIT": "",
                      "ITEM_SNAPSHOT_DIR": os.environ.get("VIRALSPOT_ITEM_SNAPSHOT_DIR", str(SNAPSHOT_ROOT)),
                      **(config or {})})
    with app.app_context(), catalog.connect() as conn:
        rows = items_by_keys(conn, range(1, CEILING_ITEMS + 1))
    fixed_page = {"reels": [serialize_item(row) for row in rows], "isLastPage": False}

    @app.get("/bench/fixed-page")
    def fixed():
        return api_response(fixed_page, listing_message("reels", len(rows), 0))

    return app


def __getattr__(name: str):
    # gunicorn imports ``bench.bench_app:app``; build it only then, from the environment.
    if name == "app":
        return create_bench_app()
    raise AttributeError(name)
