"""Content routes (filled in by the catalog issue)."""
from . import bp  # noqa: F401
