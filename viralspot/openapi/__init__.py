"""The API description and its browser page.

* ``documented(...)`` (``declare.py``), next to each route, declares what the
  operation takes and answers: its query/path argument schemas (the marshmallow
  schemas the view already loads), its success body schema, its error codes.
* ``spec.build_spec(app)`` walks the app's url_map and turns every declared
  route into OpenAPI 3 (apispec and its marshmallow plugin; no hand-kept YAML);
  ``undocumented_routes(app)`` lists the routes that lack a declaration (a test
  keeps that list empty).
* ``docs.bp`` serves ``GET /api/openapi.json`` and ``GET /api/docs`` (Swagger UI,
  scripts and styles served from the ``flask-swagger-ui`` package, no CDN).
* ``flask openapi write FILE`` writes the description to a file.

Importing this package is cheap (route modules import ``documented``); apispec is
only imported when a description is built.
"""
from __future__ import annotations

from flask import Flask

from .declare import (ARGUMENT_ERRORS, DATABASE_ERRORS, RANDOM_FEED_ERRORS, SESSION_ID_ERRORS, STORE_ERRORS,
                      Operation, documented, not_documented)

__all__ = ["ARGUMENT_ERRORS", "DATABASE_ERRORS", "RANDOM_FEED_ERRORS", "SESSION_ID_ERRORS", "STORE_ERRORS",
           "Operation", "documented", "not_documented", "init_app"]


def init_app(app: Flask) -> None:
    """Register ``/api/openapi.json``, ``/api/docs`` and the ``flask openapi`` commands."""
    from .commands import openapi_cli
    from .docs import bp

    app.register_blueprint(bp, url_prefix="/api")
    app.cli.add_command(openapi_cli)
