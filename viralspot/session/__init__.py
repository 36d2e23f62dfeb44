"""The session blueprint: resetting (and later inspecting) a session's random-feed state."""
from flask import Blueprint

bp = Blueprint("session", __name__)

from . import routes  # noqa: E402,F401  (registers the routes on bp)
