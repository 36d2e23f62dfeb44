"""Content routes: thin views over ``content.listing`` and ``content.random_listing``."""
from flask import current_app

from ..args import present_arguments, use_args
from ..openapi import ARGUMENT_ERRORS, DATABASE_ERRORS, RANDOM_FEED_ERRORS, SESSION_ID_ERRORS, documented
from ..schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema
from ..schemas.envelope import api_response
from ..schemas.responses import ContentPageResponseSchema, FilterOptionsResponseSchema
from . import bp
from .listing import current_filter_options, plain_listing
from .random_listing import random_listing


def _listing(kind: str, args: dict):
    if args["random_order"]:
        return random_listing(kind, args, max_ahead=current_app.config["RANDOM_MAX_AHEAD"])
    return plain_listing(kind, args)


_PAGE_ERRORS = ARGUMENT_ERRORS + SESSION_ID_ERRORS + RANDOM_FEED_ERRORS + DATABASE_ERRORS


@bp.get("/reels")
@documented("One page of reels", query=ContentQueryArgsSchema, response=ContentPageResponseSchema,
            errors=_PAGE_ERRORS)
@use_args(present_arguments(ContentQueryArgsSchema))
def reels(args):
    return _listing("reels", args)


@bp.get("/posts")
@documented("One page of posts", query=PostQueryArgsSchema, response=ContentPageResponseSchema,
            errors=_PAGE_ERRORS)
@use_args(present_arguments(PostQueryArgsSchema))
def posts(args):
    return _listing("posts", args)


@bp.get("/filter-options")
@documented("The catalog's distinct values to filter on", response=FilterOptionsResponseSchema,
            errors=DATABASE_ERRORS)
def filter_options():
    return api_response(current_filter_options(), "Filter options")
