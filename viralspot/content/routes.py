"""Content routes: thin views. A plain page comes from ``content/listing.py``; a random page
(``random_order=true``) from ``feed/service.py``, ``RandomFeedService.serve``."""
from .. import metrics
from ..args import present_arguments, use_args
from ..extensions import random_feeds
from ..openapi import ARGUMENT_ERRORS, DATABASE_ERRORS, RANDOM_FEED_ERRORS, SESSION_ID_ERRORS, documented
from ..schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema
from ..schemas.envelope import api_response
from ..schemas.responses import ContentPageResponseSchema, FilterOptionsResponseSchema
from . import bp
from .listing import current_filter_options, listing_message, plain_listing
from .page_response import page_response


def _listing(kind: str, args: dict):
    if args["random_order"]:
        page = random_feeds.service.serve(kind, args)
        metrics.random_page(page)
        return page_response(page.items_json, page.is_last_page, listing_message(kind, page.count, args["offset"]))
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
