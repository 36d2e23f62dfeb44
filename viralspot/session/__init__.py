"""The session blueprint: resetting and inspecting a session's random-feed state."""
from werkzeug.routing import PathConverter

from ..api import Blueprint

bp = Blueprint("session", __name__, description="A session's random-feed state: inspect it, reset it.")


class AnyTextConverter(PathConverter):
    """werkzeug's ``path`` with line breaks too: its ``.`` stops at one, so ``/api/sessions/a%0Ab``
    was a 404 ``NOT_FOUND``, not the 400 of the session id's rules (found by fuzzing)."""

    regex = r"[^/][\s\S]*?"


@bp.record_once
def register_converter(state) -> None:
    """Recorded before the routes, so the map knows the converter when their rules are added."""
    state.app.url_map.converters["any_text"] = AnyTextConverter


from . import routes  # noqa: E402,F401  (registers the routes on bp)
