"""Session routes: thin views over ``session.reset``."""
from ..args import use_args
from ..extensions import session_store
from ..schemas.envelope import api_response
from ..schemas.session import ResetSessionArgsSchema
from . import bp
from .reset import reset_session


@bp.post("/reset-session")
@use_args(ResetSessionArgsSchema())
def reset(args):
    data, message = reset_session(session_store.backend, args["session_id"])
    return api_response(data, message)
