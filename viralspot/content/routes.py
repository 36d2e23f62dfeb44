"""Content routes: thin views. A plain page comes from ``content/listing.py``; a random page
(``random_order=true``) from ``feed/service.py``, ``RandomFeedService.serve``."""
from flask import request
from werkzeug.exceptions import MethodNotAllowed

from .. import metrics
from ..api import ARGUMENT_ERRORS, DATABASE_ERRORS, LIMITED, RANDOM_FEED_ERRORS, SESSION_ID_ERRORS
from ..extensions import random_feeds
from ..schemas.content import ContentQueryArgsSchema, PostQueryArgsSchema
from ..schemas.envelope import api_response
from ..schemas.responses import (CONTENT_PAGE_HEADERS, SESSION_ORDER_HEADER, ContentPageResponseSchema,
                                 FilterOptionsResponseSchema)
from . import bp
from .listing import current_filter_options, listing_message, plain_listing
from .page_response import page_response

_PAGE_ERRORS = (*ARGUMENT_ERRORS, *SESSION_ID_ERRORS, *RANDOM_FEED_ERRORS, *DATABASE_ERRORS, *LIMITED)


def _listing(kind: str, args: dict):
    if args["random_order"]:
        if request.method == "HEAD":  # serving a page uses up its items: only a GET, which shows them
            raise MethodNotAllowed(["GET"], "A random page is served to GET only (a HEAD would use up its items)")
        page = random_feeds.service.serve(kind, args)
        metrics.random_page(page, args["offset"])
        response = page_response(page.items_json, page.is_last_page, listing_message(kind, page.count, args["offset"]))
        response.headers["Cache-Control"] = "no-store"  # one session's page, and serving it changed the session
        response.headers[SESSION_ORDER_HEADER] = page.order_id
        return response
    return plain_listing(kind, args)


@bp.get("/reels")
@bp.query(ContentQueryArgsSchema)
@bp.response(200, ContentPageResponseSchema, description="One page of reels", headers=CONTENT_PAGE_HEADERS)
@bp.errors(*_PAGE_ERRORS, headers={400: CONTENT_PAGE_HEADERS})
def reels(args):
    """One page of reels"""
    return _listing("reels", args)


@bp.get("/posts")
@bp.query(PostQueryArgsSchema)
@bp.response(200, ContentPageResponseSchema, description="One page of posts", headers=CONTENT_PAGE_HEADERS)
@bp.errors(*_PAGE_ERRORS, headers={400: CONTENT_PAGE_HEADERS})
def posts(args):
    """One page of posts"""
    return _listing("posts", args)


@bp.get("/filter-options")
@bp.response(200, FilterOptionsResponseSchema, description="The catalog's distinct values to filter on")
@bp.errors(*DATABASE_ERRORS, *LIMITED)
def filter_options():
    """The catalog's distinct values to filter on"""
    return api_response(current_filter_options(), "Filter options")
