"""Success bodies of every endpoint, as marshmallow schemas: what ``/api/openapi.json`` documents, and
what tests/test_fuzz.py checks every response against. Every field a body always carries is
``required``; ``allow_none`` marks the ones that may be null.
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..catalog.filters import CONTENT_TYPES

_HEALTH_STATES = ("ok", "unavailable")


class SuccessEnvelopeSchema(Schema):
    """``{success: true, data, message}``; each endpoint's subclass declares its ``data``."""

    success = fields.Boolean(required=True, validate=validate.Equal(True))
    data = fields.Raw(required=True)
    message = fields.String(required=True)


def success_envelope(name: str, data: type[Schema]) -> type[SuccessEnvelopeSchema]:
    """The success envelope class ``name`` (its OpenAPI name, less "Schema") whose ``data`` is ``data``."""
    return type(name, (SuccessEnvelopeSchema,), {"data": fields.Nested(data, required=True)})


class ItemSchema(Schema):
    """One content item, as the ViralSpot frontend reads it (``catalog/items.py``)."""

    id = fields.String(required=True, metadata={"description": "The content id (as are reel_id and content_id)."})
    reel_id = fields.String(required=True)
    content_id = fields.String(required=True)
    content_type = fields.String(required=True, validate=validate.OneOf(CONTENT_TYPES))
    shortcode = fields.String(required=True)
    url = fields.String(required=True, allow_none=True)
    description = fields.String(required=True)
    title = fields.String(required=True, metadata={"description": "Same as description."})
    thumbnail_url = fields.String(required=True, allow_none=True)
    thumbnail_local = fields.String(required=True, allow_none=True)
    thumbnail = fields.String(required=True, allow_none=True)
    view_count = fields.Integer(required=True)
    like_count = fields.Integer(required=True)
    comment_count = fields.Integer(required=True)
    outlier_score = fields.Float(required=True)
    outlierScore = fields.String(required=True, metadata={"description": 'outlier_score formatted, like "4.2x".',
                                                          "example": "4.2x"})
    date_posted = fields.String(required=True, allow_none=True,
                                metadata={"description": "ISO 8601, UTC.", "format": "date-time"})
    username = fields.String(required=True)
    profile = fields.String(required=True, metadata={"description": '"@" + username.'})
    profile_name = fields.String(required=True, metadata={"description": "Falls back to username."})
    bio = fields.String(required=True)
    profile_followers = fields.Integer(required=True)
    followers = fields.Integer(required=True)
    profile_image_url = fields.String(required=True, allow_none=True)
    profileImage = fields.String(required=True, allow_none=True)
    is_verified = fields.Boolean(required=True)
    primary_category = fields.String(required=True, allow_none=True)
    secondary_category = fields.String(required=True, allow_none=True)
    tertiary_category = fields.String(required=True, allow_none=True)
    keyword_1 = fields.String(required=True, allow_none=True)
    keyword_2 = fields.String(required=True, allow_none=True)
    keyword_3 = fields.String(required=True, allow_none=True)
    keyword_4 = fields.String(required=True, allow_none=True)
    categorization_confidence = fields.Float(required=True, allow_none=True)
    content_style = fields.String(required=True, allow_none=True)
    language = fields.String(required=True, allow_none=True)
    account_type = fields.String(required=True, allow_none=True)
    views = fields.String(required=True, metadata={"description": 'Display count: "1.2M", "45K", "321".'})
    likes = fields.String(required=True)
    comments = fields.String(required=True)


class ContentPageDataSchema(Schema):
    reels = fields.List(fields.Nested(ItemSchema), required=True,
                        metadata={"description": "The page's items (the key is reels for posts too)."})
    isLastPage = fields.Boolean(required=True, metadata={"description": "True when no item follows this page."})


#: A page of ``GET /api/reels`` or ``GET /api/posts``; message like "Found 24 reels (offset 0)".
ContentPageResponseSchema = success_envelope("ContentPageResponseSchema", ContentPageDataSchema)

#: A random page's header: the session's order (``feed.service.order_id``).
SESSION_ORDER_HEADER = "X-Session-Order"
#: The headers of a content page, as OpenAPI documents them.
CONTENT_PAGE_HEADERS = {SESSION_ORDER_HEADER: {"schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                                               "description": (
    "Random pages only (and their 400 for an offset too far ahead): an opaque id of the session's order, the "
    "same on every page of the session, in every feed, until it starts anew. Each feed (grid, tab) keeps the "
    "value of its own pages: a different one means the session was reset or lost (it expired, was evicted or "
    "was lost in a failover) and this answer is of a new session: discard it and page that feed again from "
    "offset 0 (items the lost session showed may come again).")}}


class UsernameOptionSchema(Schema):
    username = fields.String(required=True)
    profile_name = fields.String(required=True)


class FilterOptionsDataSchema(Schema):
    """Sorted distinct values of the catalog, to offer as filters."""

    primary_categories = fields.List(fields.String(), required=True)
    secondary_categories = fields.List(fields.String(), required=True)
    tertiary_categories = fields.List(fields.String(), required=True)
    keywords = fields.List(fields.String(), required=True)
    usernames = fields.List(fields.Nested(UsernameOptionSchema), required=True)
    account_types = fields.List(fields.String(), required=True)
    content_types = fields.List(fields.String(), required=True)
    languages = fields.List(fields.String(), required=True)
    content_styles = fields.List(fields.String(), required=True)


FilterOptionsResponseSchema = success_envelope("FilterOptionsResponseSchema", FilterOptionsDataSchema)


class SessionResetSchema(Schema):
    session_id = fields.String(required=True)
    operation_status = fields.String(required=True, validate=validate.OneOf(["completed"]))
    session_found = fields.Boolean(required=True)
    cleared_items_count = fields.Integer(required=True, validate=validate.Range(min=0))
    memory_freed = fields.Boolean(required=True)


class ResetNextStepsSchema(Schema):
    randomization = fields.String(required=True)
    content_delivery = fields.String(required=True)
    integration = fields.String(required=True)


class ResetServerInfoSchema(Schema):
    total_active_sessions = fields.Integer(required=True, allow_none=True, validate=validate.Range(min=0), metadata={
        "description": "Sessions active within the TTL; null when a reset is done but they cannot be counted "
                       "(a Redis Cluster master down)."})
    session_storage_type = fields.String(required=True)


class ResetSessionDataSchema(Schema):
    session_reset = fields.Nested(SessionResetSchema, required=True)
    next_steps = fields.Nested(ResetNextStepsSchema, required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})
    server_info = fields.Nested(ResetServerInfoSchema, required=True)


#: Message "Session reset successfully" or "Session not found - no data to reset".
ResetSessionResponseSchema = success_envelope("ResetSessionResponseSchema", ResetSessionDataSchema)


class FeedInspectionSchema(Schema):
    feed_key = fields.String(required=True, metadata={"description": "<endpoint kind>:<64 bits of the filter's hash>."})
    endpoint = fields.String(required=True, allow_none=True, metadata={"example": "/api/reels"})
    served_items_count = fields.Integer(required=True, validate=validate.Range(min=0))
    positions_examined = fields.Integer(required=True, validate=validate.Range(min=0), metadata={
        "description": "How far into the session's order the feed has looked (its cursor)."})


class SessionInspectionSchema(Schema):
    """One session's random-feed state (``session/inspection.py``)."""

    session_id = fields.String(required=True)
    served_items_count = fields.Integer(required=True, validate=validate.Range(min=0))
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    last_seen_at = fields.String(required=True, metadata={"format": "date-time"})
    expires_in_seconds = fields.Integer(required=True, validate=validate.Range(min=0))
    feeds = fields.List(fields.Nested(FeedInspectionSchema), required=True)


class SessionInspectionDataSchema(Schema):
    session = fields.Nested(SessionInspectionSchema, required=True)


#: ``GET /api/sessions/<session_id>`` of an active session.
SessionInspectionResponseSchema = success_envelope("SessionInspectionResponseSchema", SessionInspectionDataSchema)


class HealthChecksSchema(Schema):
    session_store = fields.String(required=True, validate=validate.OneOf(_HEALTH_STATES))
    database = fields.String(required=True, validate=validate.OneOf(_HEALTH_STATES))


class HealthDataSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ok"]))
    service = fields.String(required=True)
    checks = fields.Nested(HealthChecksSchema, required=True)
    session_storage_type = fields.String(required=True)
    timestamp = fields.String(required=True, metadata={"format": "date-time"})


HealthResponseSchema = success_envelope("HealthResponseSchema", HealthDataSchema)
