"""Shared fixtures: an app built by the factory in testing mode, and its client (pytest-flask)."""
from __future__ import annotations

import pytest

from viralspot import create_app


@pytest.fixture
def app_config() -> dict:
    """Overrides for the app under test; a module can override this fixture."""
    return {}


@pytest.fixture
def app(app_config):
    """pytest-flask's ``client`` fixture uses this app."""
    application = create_app({"CONFIG": "testing", **app_config})
    yield application
    application.extensions["viralspot.session_store"].close()


@pytest.fixture
def store(app):
    """The app's session store backend."""
    return app.extensions["viralspot.session_store"]
