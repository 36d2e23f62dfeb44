"""The app the benchmarks serve: the real service plus two routes that exist only here.

* ``GET /bench/fixed-page``: a fixed, already-built 24-item page of the content
  endpoints' shape, in the same envelope, from the same server: the
  serialization ceiling a random page is compared with.
* ``GET /bench/upstream-random``: the upstream ViralSpot random feed (shuffle
  the page limit/offset fetched, a set of strings per session), the baseline.

With ``BENCH_BARE_ROUND_TRIP_URL`` (a Redis URL) set, each random page first makes
one bare round trip to that Redis (``bench/round_trip_share.py``).

Served by gunicorn as ``bench.bench_app:app`` with ``VIRALSPOT_DATABASE_URL`` set.
"""
from __future__ import annotations

import os

from viralspot import create_app
from viralspot.args import present_arguments, use_args
from viralspot.catalog.filters import content_filter
from viralspot.catalog.queries import items_by_keys, plain_page_keys
from viralspot.clock import app_clock
from viralspot.content.listing import listing_message
from viralspot.extensions import catalog
from viralspot.schemas.content import ContentQueryArgsSchema
from viralspot.schemas.envelope import api_response
from viralspot.schemas.items import serialize_item

from .plain_page import BENCH_NOW
from .upstream import upstream_random_page


#: Where the benchmarks keep the catalogs' item snapshots (``VIRALSPOT_ITEM_SNAPSHOT_DIR`` overrides).
SNAPSHOT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".data", "snapshots")


def page_data(rows: list[dict], is_last_page: bool) -> dict:
    """The content endpoints' ``data`` built from rows per request (what the service avoids by
    splicing items rendered at write time): the ceiling's page and upstream's."""
    return {"reels": [serialize_item(row) for row in rows], "isLastPage": is_last_page}


def create_bench_app(config: dict | None = None):
    app = create_app({"CONFIG": "default", "SECRET_KEY": "bench-secret", "LOG_LEVEL": "WARNING",
                      "FIXED_NOW": BENCH_NOW,
                      "ITEM_SNAPSHOT_DIR": os.environ.get("VIRALSPOT_ITEM_SNAPSHOT_DIR", SNAPSHOT_ROOT),
                      **(config or {})})
    with app.app_context(), catalog.connect() as conn:
        fixed_page = page_data(items_by_keys(conn, range(1, 25)), False)

    bare_url = os.environ.get("BENCH_BARE_ROUND_TRIP_URL")
    if bare_url:
        _add_bare_round_trip(app, bare_url)

    @app.get("/bench/fixed-page")
    def fixed():
        return api_response(fixed_page, listing_message("reels", 24, 0))

    @app.get("/bench/upstream-random")
    @use_args(present_arguments(ContentQueryArgsSchema))
    def upstream(args):
        flt = content_filter("reels", args)
        with catalog.connect() as conn:
            keys, is_last = plain_page_keys(conn, flt, args.get("sort_by"), args["limit"], args["offset"],
                                            now=app_clock().now())
            rows = items_by_keys(conn, keys)
        rows = upstream_random_page(rows, args.get("session_id") or "anonymous")
        return api_response(page_data(rows, is_last), listing_message("reels", len(rows), args["offset"]))

    return app


def _add_bare_round_trip(app, url: str) -> None:
    """Before each random page, one bare round trip to the Redis at ``url``: the store's own client
    path (``RedisSessionStore.session_count``, one script that counts the sessions index), so a
    page pays a round trip's cost without the claim's work (``bench/round_trip_share.py``)."""
    from flask import request

    from viralspot.store.redis_store import RedisSessionStore

    store = RedisSessionStore(url)  # connects in each worker on first use

    @app.before_request
    def bare_round_trip():
        if request.endpoint == "content.reels" and request.args.get("random_order") == "true":
            store.session_count()


def __getattr__(name: str):
    # gunicorn imports ``bench.bench_app:app``; build it only then, from the environment.
    if name == "app":
        return create_bench_app()
    raise AttributeError(name)
