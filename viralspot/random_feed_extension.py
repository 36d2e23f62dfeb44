"""The ``RandomFeeds`` Flask extension: builds the app's ``RandomFeedService`` (``feed/service.py``)
from its configuration, its session store, its catalog and its metrics, and keeps it in
``app.extensions``. The Flask side of the feed lives here, so ``feed/`` knows nothing of Flask.
"""
from __future__ import annotations

from flask import Flask, current_app

from . import metrics
from .clock import app_clock
from .feed.plans import FeedPlanner
from .feed.random_feed import RandomFeeds
from .feed.service import RandomFeedService
from .store import SessionStore

EXTENSION_NAME = "viralspot.random_feeds"


class RandomFeedExtension:
    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        from .extensions import catalog  # the catalog extension is initialised first

        secret = str(app.config["SECRET_KEY"]).encode()
        clock = app_clock(app)
        observer = metrics.feed_observer(app)
        planner = FeedPlanner(
            secret,
            list_max_keys=int(app.config["RANDOM_LIST_MAX_KEYS"]),
            cache_size=int(app.config["RANDOM_LIST_CACHE_SIZE"]),
            list_cache_keys=int(app.config["RANDOM_LIST_CACHE_KEYS"]),
            clock=clock,
            observer=observer,
        )
        feeds = RandomFeeds(secret, planner, max_scan=int(app.config["RANDOM_MAX_SCAN"]), observer=observer)
        app.extensions[EXTENSION_NAME] = RandomFeedService(
            lambda: SessionStore.backend_for(app), catalog.feed_catalog(app, clock), feeds,
            max_ahead=int(app.config["RANDOM_MAX_AHEAD"]))

    @property
    def service(self) -> RandomFeedService:
        return current_app.extensions[EXTENSION_NAME]
