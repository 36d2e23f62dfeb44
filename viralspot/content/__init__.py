"""The content blueprint: /api/reels, /api/posts and /api/filter-options."""
from ..api import Blueprint

bp = Blueprint("content", __name__, description="Catalog pages (plain or session-random order) and the filter options.")

from . import routes  # noqa: E402,F401  (registers the routes on bp)
