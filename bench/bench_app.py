"""The app the benchmarks serve: the real service plus one route that exists only here.

``GET /bench/fixed-page``: a fixed 24-item page of the content endpoints' shape (the catalog's
items 1 to 24, read once at start-up), in the same envelope, from the same server: the
serialization ceiling a random page of 24 is compared with (``bench/cpu_per_page.py``). Each
request serializes the page's dict to JSON through ``api_response`` (Flask's ``jsonify``), as every
non-page answer is made; no database, no session store. (Content pages themselves splice their
items' JSON rendered at write time, ``content/page_response.py``.)

``GET /bench/arguments-page`` (same query as a random page): the random page's arguments, schema
and decorators, and the ceiling page's items as the item snapshot keeps them (each item's JSON
rendered once, at start-up) joined into the body by ``page_response`` as a random page's are: what a
random page costs before it reads anything (``bench/page_profile.py``).

``GET /bench/floor-page`` (same query as a random page): what any design of shared session state
costs a random page of 24 at least, the feed's own work left out. It parses the arguments with the
random page's schema and decorators, makes one round trip to the session store's Redis through the
store's redis-py client (``RedisSessionStore.client``; a script that reads the session hash's six
header fields, writes its item count and restarts its TTL, sent the arguments of a real page and
answering a page-sized reply), reads 24 items scattered over the catalog from the item snapshot,
and answers through ``page_response`` as a random page does. What a random page costs above it is
the permutation, the candidates and the page script's own work.

The per-client rate limits are off (``RATE_LIMIT``, ``RESET_RATE_LIMIT``): every benchmark's load
comes from one client address, far past a client's budget.

Served by gunicorn as ``bench.bench_app:app`` with ``VIRALSPOT_DATABASE_URL`` set.
"""
from __future__ import annotations

import os
import struct
import zlib

from flask import current_app
from redis.commands.core import Script

from viralspot import create_app, metrics
from viralspot.api import (ARGUMENT_ERRORS, DATABASE_ERRORS, LIMITED, RANDOM_FEED_ERRORS, SESSION_ID_ERRORS,
                           Blueprint)
from viralspot.catalog.filters import content_filter
from viralspot.catalog.items import serialize_item
from viralspot.catalog.queries import items_by_keys
from viralspot.catalog.rendering import encode_item
from viralspot.content.listing import listing_message
from viralspot.content.page_response import page_response
from viralspot.extensions import api, catalog
from viralspot.feed.service import ServedPage
from viralspot.schemas.content import ContentQueryArgsSchema
from viralspot.schemas.envelope import api_response
from viralspot.schemas.responses import ContentPageResponseSchema
from viralspot.store import SessionStore
from viralspot.store.redis_store import INDEX_KEY, session_key

from .common import ARGUMENTS_PATH, BENCH_NOW, CEILING_PATH, FLOOR_PATH, SECRET, SNAPSHOT_ROOT

#: Items of the ceiling page (the random pages it is compared with have as many).
CEILING_ITEMS = 24
#: The floor page's script: one read and one write of the session's hash, its TTL restarted, and
#: an answer of the page script's shape (the page's 24 positions from the candidates sent).
FLOOR_SCRIPT = """
local meta = redis.call('HMGET', KEYS[1], 's', 'b', 'k', 'n', 'c', 'r')
redis.call('HSET', KEYS[1], 'n', (tonumber(meta[4]) or 0) + tonumber(ARGV[9]))
redis.call('PEXPIRE', KEYS[1], ARGV[11])
return {0, ARGV[2], ARGV[3], 0, 0, 1, string.sub(ARGV[7], 1, 4 * tonumber(ARGV[9])), 0}
"""


#: Knuth's multiplicative hash constant: consecutive positions to keys far apart.
_SCATTER = 2_654_435_761


def create_bench_app(config: dict | None = None):
    app = create_app({"CONFIG": "default", "SECRET_KEY": SECRET, "LOG_LEVEL": "WARNING", "FIXED_NOW": BENCH_NOW,
                      "RATE_LIMIT": "", "RESET_RATE_LIMIT": "",
                      "ITEM_SNAPSHOT_DIR": os.environ.get("VIRALSPOT_ITEM_SNAPSHOT_DIR", str(SNAPSHOT_ROOT)),
                      **(config or {})})
    with app.app_context(), catalog.connect() as conn:
        rows = items_by_keys(conn, range(1, CEILING_ITEMS + 1))
    fixed_page = {"reels": [serialize_item(row) for row in rows], "isLastPage": False}
    rendered_items = ",".join(encode_item(item) for item in fixed_page["reels"])

    @app.get(CEILING_PATH)
    def fixed():
        return api_response(fixed_page, listing_message("reels", len(rows), 0))

    floor = Blueprint("bench_floor", __name__)

    def like_a_random_page(view):
        """The decorators of GET /api/reels."""
        view = floor.errors(*ARGUMENT_ERRORS, *SESSION_ID_ERRORS, *RANDOM_FEED_ERRORS, *DATABASE_ERRORS, *LIMITED)(view)
        view = floor.response(200, ContentPageResponseSchema, description="One page of reels")(view)
        return floor.query(ContentQueryArgsSchema)(view)

    @floor.get(ARGUMENTS_PATH)
    @like_a_random_page
    def arguments_page(args):
        return page_response(rendered_items, False, listing_message("reels", len(rows), args["offset"]))

    @floor.get(FLOOR_PATH)
    @like_a_random_page
    def floor_page(args):
        page = _floor_page(args)
        metrics.random_page(page, args["offset"])
        return page_response(page.items_json, page.is_last_page, listing_message("reels", page.count, args["offset"]))

    api.register_blueprint(floor)
    return app


def _floor_script(app) -> Script:
    """The floor's script, registered once per app (per worker) on the store's own client."""
    script = app.extensions.get("bench_floor_script")
    if script is None:
        script = app.extensions["bench_floor_script"] = SessionStore.backend_for(app).client.register_script(
            FLOOR_SCRIPT)
    return script


def _floor_page(args) -> ServedPage:
    """One round trip of a real page's arguments to the session store's Redis, then ``limit`` items
    (keys scattered over the catalog by the session and the offset)."""
    session_id, offset, limit = args["session_id"], args["offset"], args["limit"]
    start = zlib.crc32(session_id.encode()) % 1_000_000 + offset
    candidates = struct.pack("<36I", *range(start, start + 36))
    call_args = [b"r" + bytes(8), bytes(8), struct.pack("<I", 1_000_000), "0", start, start + 36, candidates,
                 offset, limit, 1000, SessionStore.backend_for(current_app).ttl_ms, 64, 1_000_000, session_id, "0",
                 b""]
    reply = _floor_script(current_app)(keys=[session_key(session_id), INDEX_KEY], args=call_args)
    positions = struct.unpack(f"<{len(reply[6]) // 4}I", reply[6])
    with catalog.reader.source(content_filter("reels", args)) as source:
        largest = source.catalog_state().largest_key
        # Keys scattered over the catalog, as a random page's are (adjacent keys would share pages of
        # the snapshot's memory map, which a random page's items do not).
        items_json, count = source.page_items([position * _SCATTER % largest + 1 for position in positions])
        return ServedPage(items_json, count, False, 1, False, source.snapshot_hit)


def __getattr__(name: str):
    # gunicorn imports ``bench.bench_app:app``; build it only then, from the environment.
    if name == "app":
        return create_bench_app()
    raise AttributeError(name)
