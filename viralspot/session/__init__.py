"""The session blueprint: resetting and inspecting a session's random-feed state."""
from ..api import Blueprint

bp = Blueprint("session", __name__, description="A session's random-feed state: inspect it, reset it.")

from . import routes  # noqa: E402,F401  (registers the routes on bp)
