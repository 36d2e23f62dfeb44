"""Query arguments of ``GET /api/reels`` and ``GET /api/posts``.

``ContentQueryArgsSchema`` validates every argument (a bad value is a 400 naming it);
``PostQueryArgsSchema`` narrows ``sort_by`` to the post sorts. An empty value (``?min_views=``)
counts as absent, except for ``session_id``. Each field's ``description`` is its API documentation.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from config import DecimalInteger, DecimalNumber

from ..catalog.filters import ACCOUNT_TYPES, CONTENT_TYPE_ALIASES, CONTENT_TYPES, DATE_RANGES, RANGE_ARGS
from ..catalog.queries import SORTS_POSTS, SORTS_REELS
from .session_id import CodedMessage, SessionIdField

MAX_LIST_VALUES = 100
MAX_VALUE_LENGTH = 255
MAX_COUNT = 2 ** 62
MAX_OFFSET = 10 ** 9
#: The MISSING_PARAMETER detail of a random page without a session, by its ``random_order``.
RANDOM_NEEDS_SESSION = "session_id is required when random_order={}"
WEIGHTED_SPELLINGS = frozenset({"weighted", "Weighted", "WEIGHTED"})
_ACCOUNT_TYPES_BY_KEY = {name.lower(): name for name in ACCOUNT_TYPES}
#: (min_x, max_x) argument pairs, where min_x must not exceed max_x.
_RANGE_BOUNDS = tuple((f"min_{name}", f"max_{name}") for name in RANGE_ARGS)


class CommaList(fields.Field):
    """``a,b , c`` -> ``["a", "b", "c"]``: items stripped, blanks dropped, at most 100 of 255 characters."""

    default_error_messages = {
        "invalid": "Not a valid comma-separated list.",
        "too_many": f"At most {MAX_LIST_VALUES} values are allowed.",
        "too_long": f"Each value must be at most {MAX_VALUE_LENGTH} characters.",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        items = [item.strip() for item in value.split(",") if item.strip()]
        if len(items) > MAX_LIST_VALUES:
            raise self.make_error("too_many")
        if any(len(item) > MAX_VALUE_LENGTH for item in items):
            raise self.make_error("too_long")
        return items


def _content_types(values: list[str]) -> None:
    allowed = set(CONTENT_TYPES) | set(CONTENT_TYPE_ALIASES)
    unknown = [value for value in values if value.lower() not in allowed]
    if unknown:
        raise ValidationError(f"Unknown content type {unknown[0]!r}; use {', '.join(CONTENT_TYPES)} "
                              f"or the aliases {', '.join(CONTENT_TYPE_ALIASES)}.")


class AccountTypeList(CommaList):
    """Account types, matched case-insensitively and returned in their canonical spelling."""

    def _deserialize(self, value, attr, data, **kwargs) -> list[str]:
        items = super()._deserialize(value, attr, data, **kwargs)
        unknown = [item for item in items if item.lower() not in _ACCOUNT_TYPES_BY_KEY]
        if unknown:
            raise ValidationError(f"Unknown account type {unknown[0]!r}; use {', '.join(ACCOUNT_TYPES)}.")
        return [_ACCOUNT_TYPES_BY_KEY[item.lower()] for item in items]


class RandomOrder(fields.Boolean):
    """``random_order``: a boolean, or ``weighted`` in the cases a boolean's words take (loaded as
    the string ``"weighted"``)."""

    default_error_messages = {"invalid": "Must be true, false or weighted."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value in WEIGHTED_SPELLINGS:
            return "weighted"
        return super()._deserialize(value, attr, data, **kwargs)


def _count(description: str):
    return DecimalInteger(validate=validate.Range(min=0, max=MAX_COUNT),
                          metadata={"description": description})


def _score(description: str, low=None, high=None):
    return DecimalNumber(allow_nan=False, validate=validate.Range(min=low, max=high),
                        metadata={"description": description})


class ContentQueryArgsSchema(Schema):
    """Arguments of ``GET /api/reels``."""

    SORTS = SORTS_REELS

    search = fields.String(validate=validate.Length(max=500), metadata={"description": (
        'Case-insensitive substring of the description or the username.')})
    primary_categories = CommaList(metadata={"description": (
        "Comma-separated list. Exact match on the item's primary category.")})
    secondary_categories = CommaList(metadata={"description": (
        "Comma-separated list. Exact match on the item's secondary category.")})
    tertiary_categories = CommaList(metadata={"description": (
        "Comma-separated list. Exact match on the item's tertiary category.")})
    keywords = CommaList(metadata={"description": (
        'Comma-separated list. Substring of any of keyword_1..keyword_4 or of the description.')})
    min_outlier_score = _score('Lowest outlier score.', low=0)
    max_outlier_score = _score('Highest outlier score.', low=0)
    min_views = _count('Fewest views (ignored for posts, which have no views).')
    max_views = _count('Most views (ignored for posts).')
    min_likes = _count('Fewest likes.')
    max_likes = _count('Most likes.')
    min_comments = _count('Fewest comments.')
    max_comments = _count('Most comments.')
    min_followers = _count('Fewest followers of the author.')
    max_followers = _count('Most followers of the author.')
    is_verified = fields.Boolean(metadata={"description": (
        'Only items whose author is (true) or is not (false) verified.')})
    date_range = fields.String(validate=validate.OneOf([*DATE_RANGES, "all"]), metadata={"description": (
        'Posted within the last day, week, month (30 days) or year (365 days); all: no limit.')})
    account_types = AccountTypeList(metadata={"item_choices": ACCOUNT_TYPES, "description": (
        "Comma-separated list. The author's account type (case-insensitive).")})
    content_types = CommaList(validate=_content_types, metadata={
        "item_choices": (*CONTENT_TYPES, *CONTENT_TYPE_ALIASES),
        "description": ("Comma-separated list. Replaces the endpoint's own type (reel for /api/reels, post for "
                        "/api/posts); aliases: video -> reel, image/photo/carousel -> post.")})
    languages = CommaList(metadata={"description": "Comma-separated list. The item's language."})
    content_styles = CommaList(metadata={"description": "Comma-separated list. The item's content style."})
    excluded_usernames = CommaList(metadata={"description": 'Comma-separated list. Authors to leave out.'})
    min_account_engagement_rate = _score("Lowest (likes + comments) / author's followers x 100.", 0, 100)
    max_account_engagement_rate = _score("Highest (likes + comments) / author's followers x 100.", 0, 100)
    sort_by = fields.String(metadata={"enum": list(SORTS), "description": (
        "Order of a plain page; default: outlier score, then views (likes for posts), descending. "
        "Ignored with random_order=true: the session's order is the order.")})
    random_order = RandomOrder(load_default=False, metadata={
        "type": "string", "enum": ["true", "false", "weighted"], "default": "false", "description": (
            "true: the session's own random order; weighted: the same, with items of higher outlier_score "
            "earlier (each next item drawn with probability proportional to its weight, "
            "min(8, max(1, round(outlier_score ** VIRALSPOT_WEIGHT_EXPONENT))), among those not yet served); "
            "both require session_id and serve every matching item once. The boolean's other spellings "
            "(1/0, yes/no, on/off, t/f, y/n) are read too.")})
    session_id = SessionIdField(required=False, metadata={"description": (
        "The session: 1 to 255 letters, digits, dots, underscores or hyphens (surrounding spaces are stripped).")})
    limit = DecimalInteger(load_default=24, validate=validate.Range(min=1, max=100), metadata={"description": (
        'Items per page.')})
    offset = DecimalInteger(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET), metadata={
        "description": ("Items to skip. With random_order=true or weighted a page may start at most "
                        "VIRALSPOT_RANDOM_MAX_AHEAD (by default 1000) items past what the session has been served in "
                        "this feed (past it: 400, or 404 SESSION_NOT_FOUND when no session is stored), and offset "
                        "is at most VIRALSPOT_RANDOM_MAX_OFFSET (by default 1,000,000).")})

    @pre_load
    def drop_blank_values(self, data, **kwargs):
        """Blank filters mean "no filter"; a blank session_id still reaches its own validation."""
        return {key: value for key, value in data.items()
                if key == "session_id" or not (isinstance(value, str) and not value.strip())}

    @validates_schema
    def check_combinations(self, data, **kwargs):
        sort_by = data.get("sort_by")
        if sort_by is not None and sort_by not in self.SORTS:
            raise ValidationError(f"Must be one of: {', '.join(self.SORTS)}.", field_name="sort_by")
        for low_name, high_name in _RANGE_BOUNDS:
            low, high = data.get(low_name), data.get(high_name)
            if low is not None and high is not None and low > high:
                raise ValidationError(f"{low_name} must not exceed {high_name}.", field_name=low_name)
        random_order = data.get("random_order")
        if random_order and not data.get("session_id"):
            needs = RANDOM_NEEDS_SESSION.format("weighted" if random_order == "weighted" else "true")
            raise ValidationError(CodedMessage(needs, "MISSING_PARAMETER"), field_name="session_id")


class PostQueryArgsSchema(ContentQueryArgsSchema):
    """Arguments of ``GET /api/posts``: ``sort_by`` limited to the post sorts; view filters accepted, ignored."""

    SORTS = SORTS_POSTS
    sort_by = fields.String(metadata={"enum": list(SORTS), "description": (
        "Order of a plain page; default: outlier score, then likes, descending. "
        "Ignored with random_order=true: the session's order is the order.")})
