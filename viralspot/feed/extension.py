"""The ``RandomFeedService`` Flask extension: one ``RandomFeeds`` per app, built from the config."""
from __future__ import annotations

from flask import Flask, current_app

from ..clock import app_clock
from .plans import FeedPlanner
from .random_feed import RandomFeeds

EXTENSION_NAME = "viralspot.random_feeds"


class RandomFeedService:
    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        secret = str(app.config["SECRET_KEY"]).encode()
        planner = FeedPlanner(
            secret,
            list_threshold=float(app.config["RANDOM_LIST_THRESHOLD"]),
            small_catalog=int(app.config["RANDOM_SMALL_CATALOG"]),
            cache_size=int(app.config["RANDOM_LIST_CACHE_SIZE"]),
            list_max_keys=int(app.config["RANDOM_LIST_MAX_KEYS"]),
            list_cache_keys=int(app.config["RANDOM_LIST_CACHE_KEYS"]),
            clock=app_clock(app),
        )
        app.extensions[EXTENSION_NAME] = RandomFeeds(secret, planner)

    @property
    def feeds(self) -> RandomFeeds:
        return current_app.extensions[EXTENSION_NAME]
