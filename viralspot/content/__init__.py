"""The content blueprint: /api/reels, /api/posts and /api/filter-options."""
from flask import Blueprint

bp = Blueprint("content", __name__)

from . import routes  # noqa: E402,F401  (registers the routes on bp)
