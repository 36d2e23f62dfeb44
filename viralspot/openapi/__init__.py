"""The API description's browser page: ``GET /api/docs`` (Swagger UI, served from this server); the
description itself is flask-smorest's (``viralspot/api.py``)."""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register ``/api/docs`` and its assets."""
    from .docs import bp

    app.register_blueprint(bp, url_prefix="/api")
