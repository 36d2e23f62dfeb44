"""Session routes: thin views over ``session.reset`` and ``session.inspection``."""
from ..api import ADMIN_ONLY, LIMITED, SESSION_ID_ERRORS, STORE_ERRORS
from ..error_codes import ApiError
from ..extensions import random_feeds, session_store
from ..schemas.envelope import api_response
from ..schemas.responses import ResetSessionResponseSchema, SessionInspectionResponseSchema
from ..schemas.session_id import SessionIdArgsSchema
from . import bp
from .inspection import session_document
from .reset import reset_examples, reset_session


@bp.post("/reset-session")
@bp.query(SessionIdArgsSchema)
@bp.response(200, ResetSessionResponseSchema, examples=reset_examples(),
             description="The session's feeds start a fresh order")
@bp.errors(*SESSION_ID_ERRORS, *STORE_ERRORS, *LIMITED)
def reset(args):
    """Reset a session: its random feeds start a fresh order"""
    data, message = reset_session(session_store.backend, args["session_id"])
    random_feeds.service.forget(args["session_id"])
    return api_response(data, message)


@bp.get("/sessions/<any_text:session_id>")  # an id holding a slash or a line break: its rule's 400
@bp.query(SessionIdArgsSchema, location="path")
@bp.response(200, SessionInspectionResponseSchema, description="The session's random-feed state")
@bp.errors("EMPTY_VALUE", "TOO_LONG", "INVALID_FORMAT", "SESSION_NOT_FOUND", *STORE_ERRORS, *LIMITED, *ADMIN_ONLY)
def inspect_session(args, session_id: str):  # noqa: ARG001 - the raw path value; args has it validated
    """Inspect a session's random-feed state"""
    summary = session_store.backend.summary(args["session_id"])
    if summary is None:
        raise ApiError(f"Session {args['session_id']} not found (unknown, expired or reset)", "SESSION_NOT_FOUND")
    return api_response({"session": session_document(summary)}, "Session found")


@bp.after_request
def not_stored(response):
    """Every answer about a session (its state, a 404, a 401, a reset) is of this moment: no cache keeps it."""
    response.headers["Cache-Control"] = "no-store"
    return response
