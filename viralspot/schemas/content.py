"""Query arguments of ``GET /api/reels`` and ``GET /api/posts``.

``ContentQueryArgsSchema`` validates every argument of the content API reference
(a malformed or out-of-range value is a 400 naming the argument);
``PostQueryArgsSchema`` narrows ``sort_by`` to what posts support. An empty
value (``?min_views=``) counts as absent, as the frontend sends blank filters;
``session_id`` is the exception, its own rules apply. Views load these schemas
narrowed to the arguments present (``args.present_arguments``); ``fill_defaults``
gives the result every defaulted key either way.

``content_types`` replaces the endpoint's default type (reel for /api/reels,
post for /api/posts); the aliases video -> reel, image/photo/carousel -> post
are accepted.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, missing, post_load, pre_load, validate, validates_schema

from ..catalog.filters import ACCOUNT_TYPES, CONTENT_TYPE_ALIASES, CONTENT_TYPES, DATE_RANGES, RANGE_ARGS
from ..catalog.queries import SORTS_POSTS, SORTS_REELS
from .session_id import CodedMessage, SessionIdField

MAX_LIST_VALUES = 100
MAX_VALUE_LENGTH = 255
MAX_COUNT = 2 ** 62
MAX_OFFSET = 10 ** 9
RANDOM_NEEDS_SESSION = "session_id is required when random_order=true"
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


def _count(**kwargs):
    return fields.Integer(strict=False, validate=validate.Range(min=0, max=MAX_COUNT), **kwargs)


def _score(low=None, high=None):
    return fields.Float(allow_nan=False, validate=validate.Range(min=low, max=high))


class ContentQueryArgsSchema(Schema):
    """Arguments of ``GET /api/reels``."""

    SORTS = SORTS_REELS

    search = fields.String(validate=validate.Length(max=500))
    primary_categories = CommaList()
    secondary_categories = CommaList()
    tertiary_categories = CommaList()
    keywords = CommaList()
    min_outlier_score = _score(low=0)
    max_outlier_score = _score(low=0)
    min_views = _count()
    max_views = _count()
    min_likes = _count()
    max_likes = _count()
    min_comments = _count()
    max_comments = _count()
    min_followers = _count()
    max_followers = _count()
    is_verified = fields.Boolean()
    date_range = fields.String(validate=validate.OneOf([*DATE_RANGES, "all"]))
    account_types = AccountTypeList(metadata={"item_choices": ACCOUNT_TYPES})
    content_types = CommaList(validate=_content_types,
                              metadata={"item_choices": (*CONTENT_TYPES, *CONTENT_TYPE_ALIASES)})
    languages = CommaList()
    content_styles = CommaList()
    excluded_usernames = CommaList()
    min_account_engagement_rate = _score(0, 100)
    max_account_engagement_rate = _score(0, 100)
    sort_by = fields.String(metadata={"enum": list(SORTS)})
    random_order = fields.Boolean(load_default=False)
    session_id = SessionIdField(required=False)
    limit = fields.Integer(load_default=24, validate=validate.Range(min=1, max=100))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))

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
        if data.get("random_order") and not data.get("session_id"):
            raise ValidationError(CodedMessage(RANDOM_NEEDS_SESSION, "MISSING_PARAMETER"),
                                  field_name="session_id")

    @post_load
    def fill_defaults(self, data, **kwargs):
        """Defaults of the arguments a narrowed schema (``only=``, see ``args.present_arguments``) left out."""
        for name, default in _defaults(type(self)):
            if name not in data:
                data[name] = default
        return data


def _defaults(schema_class: type[Schema]) -> tuple[tuple[str, object], ...]:
    """(name, load_default) of every declared field of ``schema_class`` that has one, computed once."""
    found = schema_class.__dict__.get("_load_defaults")
    if found is None:
        found = tuple((name, field.load_default) for name, field in schema_class._declared_fields.items()
                      if field.load_default is not missing)
        schema_class._load_defaults = found
    return found


class PostQueryArgsSchema(ContentQueryArgsSchema):
    """Arguments of ``GET /api/posts``: ``sort_by`` limited to the post sorts; view filters accepted, ignored."""

    SORTS = SORTS_POSTS
    sort_by = fields.String(metadata={"enum": list(SORTS)})
