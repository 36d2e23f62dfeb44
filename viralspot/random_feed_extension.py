"""The ``RandomFeeds`` Flask extension: builds the app's ``RandomFeedService`` (``feed/service.py``)
from its configuration, its session store and its catalog, and keeps it in ``app.extensions``.
The Flask side of the feed lives here, so ``feed/`` knows nothing of Flask.
"""
from __future__ import annotations

from flask import Flask, current_app

from .catalog.database import Catalog
from .feed.service import RandomFeedService
from .feed.weights import checked_exponent
from .store import SessionStore

EXTENSION_NAME = "viralspot.random_feeds"


class RandomFeedExtension:
    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """After the session store's and the catalog's (``create_app`` initialises them first)."""
        config = app.config
        try:
            exponent = checked_exponent(config["WEIGHT_EXPONENT"])
        except ValueError as error:
            raise RuntimeError(f"VIRALSPOT_WEIGHT_EXPONENT {error}") from None
        app.extensions[EXTENSION_NAME] = RandomFeedService(
            str(config["SECRET_KEY"]).encode(), SessionStore.backend_for(app),
            Catalog.reader_for(app),
            max_ahead=int(config["RANDOM_MAX_AHEAD"]), max_offset=int(config["RANDOM_MAX_OFFSET"]),
            max_scan=int(config["RANDOM_MAX_SCAN"]), weight_exponent=exponent)

    @property
    def service(self) -> RandomFeedService:
        return current_app.extensions[EXTENSION_NAME]
