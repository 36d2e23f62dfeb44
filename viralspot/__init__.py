"""viralspot: ViralSpot's content-delivery service.

``create_app`` reads as the table of contents of the service.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from flask import Flask

from config import INSECURE_DEFAULT_SECRET, TestingConfig, config_class, load_settings

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | str | None = None) -> Flask:
    """Build the app. ``config`` is a configuration name or a dict of overrides, applied over the
    configuration class (``VIRALSPOT_CONFIG`` or ``config["CONFIG"]``) and ``VIRALSPOT_*`` variables."""
    from .cli import content_cli, sessions_cli
    from .errors import register_errorhandlers
    from .logs import configure_logger

    overrides = {"CONFIG": config} if isinstance(config, str) else dict(config or {})
    app = Flask(__name__, instance_relative_config=True)
    # ``/api//reels`` is a 404 envelope: merged slashes answered Werkzeug's HTML 308, whose Location
    # was built from the client's Host header (and a permanent redirect may be cached).
    app.url_map.merge_slashes = False
    settings, unknown = load_settings(config_class(overrides.pop("CONFIG", None)), os.environ, overrides)
    app.config.update(settings)
    app.json.sort_keys = False
    configure_logger(app)
    for variable in unknown:
        log.warning("%s is not a setting of this service (README, Configuration); ignored", variable)
    check_settings(app.config)
    if app.config["SECRET_KEY"] == INSECURE_DEFAULT_SECRET:
        log.warning("using the built-in development secret; set VIRALSPOT_SECRET_KEY in production")
    register_observability(app)
    app.after_request(_not_sniffed)
    register_extensions(app)
    register_blueprints(app)
    register_api_docs(app)
    register_errorhandlers(app)
    register_shellcontext(app)
    app.cli.add_command(sessions_cli)
    app.cli.add_command(content_cli)
    return app


def _not_sniffed(response):
    """Browsers take every answer as its declared type (JSON, text), never sniff it into HTML."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def register_observability(app: Flask) -> None:
    """Request ids (``X-Request-ID``, on every log line) and Prometheus metrics (``GET /metrics``)."""
    from . import metrics, request_ids

    request_ids.init_app(app)
    metrics.init_app(app)


#: The secrets config.py publishes (development's, testing's), in lower case: no secret in
#: production, in any case.
PUBLISHED_SECRETS = frozenset({INSECURE_DEFAULT_SECRET.lower(), TestingConfig.SECRET_KEY.lower()})
#: The fewest characters production takes for a secret or the admin token (guessing one must not pay).
SECRET_MIN_LENGTH = 16


def _weak(secret: str) -> str | None:
    """Why production refuses ``secret`` (the secret key, the admin token), or None."""
    if secret.strip().lower() in PUBLISHED_SECRETS:
        return "is a value published in config.py"
    if len(secret.strip()) < SECRET_MIN_LENGTH:
        return f"is shorter than {SECRET_MIN_LENGTH} characters"
    if secret != secret.strip():  # the admin token is stripped; the secret key is used as given
        return "begins or ends with whitespace (a newline from a file?), which would be part of it"
    return None


def check_settings(config: Mapping) -> None:
    """Refuse to start with a missing secret, or with unsafe settings in production: the app's
    settings (``RuntimeError``), also read by ``gunicorn.conf.py`` before any worker starts."""
    from .admin_token import configured_token

    if not config.get("SECRET_KEY"):
        given_empty = config.get("SECRET_KEY") == "" and not config.get("PRODUCTION")
        raise RuntimeError("VIRALSPOT_SECRET_KEY is empty: set a secret, or unset it for the development one"
                           if given_empty else "VIRALSPOT_SECRET_KEY must be set in this configuration")
    if config.get("PRODUCTION"):
        secret, token = config["SECRET_KEY"], configured_token(config)
        unsafe = {
            "VIRALSPOT_DEBUG": "puts exception text in 500 bodies" if config.get("DEBUG") else None,
            "VIRALSPOT_FIXED_NOW": "pins the clock" if config.get("FIXED_NOW") else None,
            "VIRALSPOT_SECRET_KEY": _weak(secret),
            "VIRALSPOT_ADMIN_TOKEN": ("is not set: session inspection and /metrics would be public (set "
                                      "VIRALSPOT_PUBLIC_INSPECTION=true if that is meant)"
                                      if not token and not config["PUBLIC_INSPECTION"] else
                                      "is the secret key: a token sent to a metrics scraper would give it away"
                                      if token and token == secret.strip() else token and _weak(token)),
        }
        refused = [f"{name} {why}" for name, why in unsafe.items() if why]
        if refused:
            raise RuntimeError("refusing to start in production: " + "; ".join(refused))


def register_extensions(app: Flask) -> None:
    from . import admin_token, metrics
    from .clock import init_clock
    from .extensions import catalog, random_feeds, rate_limits, session_store

    init_clock(app)
    session_store.init_app(app)  # first: it checks the store URL the rate limits count in
    metrics.count_reset_notices(app, session_store.backend_for(app))
    rate_limits.init_app(app)
    admin_token.init_app(app)
    catalog.init_app(app)
    random_feeds.init_app(app)


def register_blueprints(app: Flask) -> None:
    """The API's blueprints, through flask-smorest's ``Api`` (which builds the description)."""
    from . import content, health, metrics, session
    from .extensions import api

    api.init_app(app)
    api.register_blueprint(content.bp, url_prefix="/api")
    api.register_blueprint(session.bp, url_prefix="/api")
    api.register_blueprint(health.bp)
    if metrics.EXTENSION_KEY in app.extensions:
        api.register_blueprint(metrics.bp)


def register_shellcontext(app: Flask) -> None:
    from .extensions import catalog, session_store

    app.shell_context_processor(lambda: {"app": app, "store": session_store.backend_for(app), "catalog": catalog,
                                         "engine": app.extensions["viralspot.catalog"]})


def register_api_docs(app: Flask) -> None:
    """CORS for browser clients; Swagger UI at /api/docs."""
    from .cors import init_cors
    from .openapi.docs import bp as docs

    init_cors(app)
    app.register_blueprint(docs, url_prefix="/api")
