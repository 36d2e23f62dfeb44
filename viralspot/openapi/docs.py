"""``GET /api/docs``: Swagger UI over the description flask-smorest serves at ``/api/openapi.json``.

Swagger UI's assets come from the ``flask-swagger-ui`` package (Apache-2.0, its LICENSE served
beside them) and are served by this server, so the page works with no internet; it has no inline
script and its Content-Security-Policy allows nothing but this origin.
"""
from __future__ import annotations

import os
from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, current_app, render_template, send_from_directory
from werkzeug.exceptions import NotFound

#: Swagger UI's dist build, as the flask-swagger-ui package ships it, and its version.
SWAGGER_UI_DIR = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")
SWAGGER_UI_VERSION = Path(SWAGGER_UI_DIR, "VERSION").read_text(encoding="utf-8").strip()
#: The assets the page loads (and the license), all from SWAGGER_UI_DIR.
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "index.css", "favicon-32x32.png",
                              "favicon-16x16.png", "LICENSE", "VERSION"})
#: Nothing but this origin; Swagger UI sets inline style attributes and uses data: images.
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'")

bp = Blueprint("docs", __name__, template_folder="templates", static_folder="static", static_url_path="/docs/static")


@bp.get("/docs")
def docs_page():
    """The Swagger UI page; needs no network beyond this server."""
    response = current_app.make_response(render_template(
        "viralspot_swagger_ui.html", title=current_app.config["API_TITLE"], swagger_ui_version=SWAGGER_UI_VERSION))
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/docs/swagger-ui/<path:filename>")
def swagger_ui_asset(filename: str):
    if filename not in SWAGGER_UI_FILES:
        raise NotFound()
    mimetype = "text/plain" if filename in ("LICENSE", "VERSION") else None
    return send_from_directory(SWAGGER_UI_DIR, filename, mimetype=mimetype, max_age=3600)
