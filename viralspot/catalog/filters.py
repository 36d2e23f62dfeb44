"""The filter part of a content request, normalized: ``ContentFilter`` and its SQL conditions.

``content_filter(kind, args)`` keeps only the arguments that select items, in a canonical form
(lists deduplicated and sorted, empty values dropped, view filters dropped for posts), so requests
selecting the same items give equal filters and the same ``signature()``. ``ContentFilter.where``
applies the conditions with Core expressions: every user value is bound, and ``search``/``keywords``
match literally (``%``, ``_`` and ``\\`` escaped).
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Mapping

from cachetools import LRUCache
from sqlalchemy import Select, and_, func, not_, or_
from sqlalchemy.sql.elements import ColumnElement

from .tables import content, primary_profiles
from .text_case import fold_case, unicode_lower
from .text_index import match_query

#: Endpoint kind -> the content_type it serves when ``content_types`` is not given.
DEFAULT_CONTENT_TYPE = {"reels": "reel", "posts": "post"}
CONTENT_TYPES = ("reel", "post", "story")
CONTENT_TYPE_ALIASES = {"video": "reel", "image": "post", "photo": "post", "carousel": "post"}
ACCOUNT_TYPES = ("Influencer", "Theme Page", "Business Page", "Personal")
DATE_RANGES = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30),
               "year": timedelta(days=365)}

_LIST_ARGS = ("content_types", "primary_categories", "secondary_categories", "tertiary_categories",
              "keywords", "account_types", "languages", "content_styles", "excluded_usernames")
#: Filters with a min_<name> and a max_<name> argument.
RANGE_ARGS = ("outlier_score", "views", "likes", "comments", "followers", "account_engagement_rate")


def normalize_content_type(value: str) -> str:
    """``video`` -> ``reel``, ``image``/``photo``/``carousel`` -> ``post``; lower-cased."""
    value = value.strip().lower()
    return CONTENT_TYPE_ALIASES.get(value, value)


#: The letters a character beyond ASCII folds to (the Kelvin sign to k, "İ" to i), which SQLite's ``lower()`` does not
#: fold: an ASCII text without them is matched through ``lower()`` exactly, at less CPU than folding every row (1M rows
#: on SQLite, best of 3: search 2.0-2.1 s -> 1.3-1.6 s, two keywords 4.4-4.7 s -> 2.3-2.6 s). On PostgreSQL both are
#: its ``lower()``, the expression its trigram indexes hold (text_index.py).
_FOLDED_FROM_BEYOND_ASCII = frozenset("ikIK")


def contains(column, text: str) -> ColumnElement[bool]:
    """Case-insensitive literal substring match (``\\``, ``%`` and ``_`` escaped), the pattern a bound parameter;
    both sides lowered by one rule (text_case.py)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    plain = text.isascii() and not _FOLDED_FROM_BEYOND_ASCII & set(text)
    lowered = func.lower(column) if plain else unicode_lower(column)
    return lowered.like(f"%{fold_case(escaped)}%", escape="\\")


def join_profiles(stmt: Select) -> Select:
    """``stmt`` joined with the author's profile (every content row has one)."""
    return stmt.join(primary_profiles, primary_profiles.c.id == content.c.profile_id)


@dataclass(frozen=True)
class ContentFilter:
    """The normalized filter arguments of one content request, for one endpoint kind."""

    kind: str
    content_types: tuple[str, ...]
    search: str | None = None
    primary_categories: tuple[str, ...] = ()
    secondary_categories: tuple[str, ...] = ()
    tertiary_categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    min_outlier_score: float | None = None
    max_outlier_score: float | None = None
    min_views: int | None = None
    max_views: int | None = None
    min_likes: int | None = None
    max_likes: int | None = None
    min_comments: int | None = None
    max_comments: int | None = None
    min_followers: int | None = None
    max_followers: int | None = None
    is_verified: bool | None = None
    date_range: str | None = None
    account_types: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    content_styles: tuple[str, ...] = ()
    excluded_usernames: tuple[str, ...] = ()
    min_account_engagement_rate: float | None = None
    max_account_engagement_rate: float | None = None

    def canonical(self) -> str:
        """The filter as compact JSON with sorted keys: equal filters give equal strings."""
        values = {name: getattr(self, name) for name in _FIELD_NAMES}
        return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    def signature(self) -> str:
        """A stable hash of ``canonical()`` (SHA-256 hex), the same in every process; computed once.
        Existing sessions' feed keys are built from it: its value must never change."""
        cached = self.__dict__.get("_signature")
        if cached is None:
            cached = hashlib.sha256(self.canonical().encode("ascii")).hexdigest()
            # Frozen, but not a field: the memo is invisible to ==, hash() and repr().
            object.__setattr__(self, "_signature", cached)
        return cached

    @property
    def needs_profile(self) -> bool:
        """True when a condition reads the author's profile (followers, verified, account type)."""
        return bool(self.profile_conditions())

    def profile_conditions(self) -> list[ColumnElement[bool]]:
        """The conditions on the author's profile (``primary_profiles``)."""
        p = primary_profiles.c
        found = [_in(p.account_type, self.account_types)] if self.account_types else []
        if self.min_followers is not None:
            found.append(p.followers >= self.min_followers)
        if self.max_followers is not None:
            found.append(p.followers <= self.max_followers)
        if self.is_verified is not None:
            found.append(p.is_verified == self.is_verified)
        return found

    def conditions(self, now: datetime | None = None) -> list[ColumnElement[bool]]:
        """The SQL conditions (profile ones assume the join); a ``date_range`` counts back from ``now``."""
        c = content.c
        found: list[ColumnElement[bool]] = [_in(c.content_type, self.content_types)]
        if self.search:
            found.append(or_(contains(c.description, self.search), contains(c.username, self.search)))
        for values, column in ((self.primary_categories, c.primary_category),
                               (self.secondary_categories, c.secondary_category),
                               (self.tertiary_categories, c.tertiary_category),
                               (self.languages, c.language),
                               (self.content_styles, c.content_style)):
            if values:
                found.append(_in(column, values))
        if self.keywords:
            columns = (c.keyword_1, c.keyword_2, c.keyword_3, c.keyword_4, c.description)
            found.append(or_(*(contains(column, word) for word in self.keywords for column in columns)))
        if self.excluded_usernames:
            found.append(not_(c.username.in_(self.excluded_usernames)))
        for low, high, column in ((self.min_outlier_score, self.max_outlier_score, c.outlier_score),
                                  (self.min_views, self.max_views, c.view_count),
                                  (self.min_likes, self.max_likes, c.like_count),
                                  (self.min_comments, self.max_comments, c.comment_count),
                                  (self.min_account_engagement_rate, self.max_account_engagement_rate,
                                   c.account_engagement_rate)):
            if low is not None:
                found.append(column >= low)
            if high is not None:
                found.append(column <= high)
        found += self.profile_conditions()
        if self.date_range is not None:
            if now is None:  # the service's clock decides (viralspot/clock.py), never the system's here
                raise ValueError("a date_range filter needs the moment it counts back from")
            # From the whole second: a random feed keeps each item to the second (queries.matching_keys_until).
            found.append(c.date_posted >= now.replace(microsecond=0) - DATE_RANGES[self.date_range])
        return found

    @property
    def text_query(self) -> str | None:
        """The query of the text index (text_index.py) narrowing ``search`` and ``keywords``, if any."""
        return match_query(self.search, self.keywords)

    def where(self, stmt: Select, *, profile_joined: bool = False, now: datetime | None = None) -> Select:
        """``stmt`` (a select over ``content``) restricted to matching items, joining profiles if needed."""
        if self.needs_profile and not profile_joined:
            stmt = join_profiles(stmt)
        return stmt.where(and_(*self.conditions(now)))


_FIELD_NAMES = tuple(f.name for f in fields(ContentFilter))


def _in(column, values: tuple) -> ColumnElement[bool]:
    # A single value as equality: the planner then uses the (content_type, ...) indexes for order.
    return column == values[0] if len(values) == 1 else column.in_(values)


def _clean_list(values: Any) -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(sorted({str(value).strip() for value in values if str(value).strip()}))


#: The arguments ``content_filter`` reads.
_FILTER_ARGS = (*_LIST_ARGS, "search", *(f"{bound}_{name}" for name in RANGE_ARGS for bound in ("min", "max")),
                "is_verified", "date_range")
#: Filters by (kind, arguments): a feed's pages repeat one filter, and its signature is memoized on it.
_FILTERS: LRUCache = LRUCache(1024)
_FILTERS_LOCK = threading.Lock()


def content_filter(kind: str, args: Mapping[str, Any]) -> ContentFilter:
    """The ``ContentFilter`` of a request to ``/api/<kind>`` from its validated arguments; equal ones share one."""
    key = (kind, *((name, tuple(value) if isinstance(value, (list, set)) else value)
                   for name in _FILTER_ARGS if (value := args.get(name)) is not None))
    try:
        with _FILTERS_LOCK:
            found = _FILTERS.get(key)
    except TypeError:  # an unhashable argument value: nothing to remember it by
        return build_content_filter(kind, args)
    if found is None:
        found = build_content_filter(kind, args)
        with _FILTERS_LOCK:
            _FILTERS[key] = found
    return found


def build_content_filter(kind: str, args: Mapping[str, Any]) -> ContentFilter:
    """``content_filter``'s work, uncached."""
    if kind not in DEFAULT_CONTENT_TYPE:
        raise ValueError(f"unknown content kind {kind!r}")
    values: dict[str, Any] = {"kind": kind, **{name: _clean_list(args.get(name)) for name in _LIST_ARGS}}
    values["content_types"] = (tuple(sorted({normalize_content_type(v) for v in values["content_types"]}))
                               or (DEFAULT_CONTENT_TYPE[kind],))
    values["keywords"] = _clean_list(fold_case(word) for word in values["keywords"])
    values["search"] = (args.get("search") or "").strip() or None
    for name in RANGE_ARGS:
        for key in (f"min_{name}", f"max_{name}"):
            if (value := args.get(key)) is not None:
                values[key] = float(value) if name in ("outlier_score", "account_engagement_rate") else int(value)
    if kind == "posts":  # posts have no views: the view filters are ignored
        values.pop("min_views", None)
        values.pop("max_views", None)
    if args.get("is_verified") is not None:
        values["is_verified"] = bool(args["is_verified"])
    date_range = args.get("date_range")
    if date_range and date_range != "all":
        values["date_range"] = date_range
    return ContentFilter(**{key: value for key, value in values.items() if key in _FIELD_NAMES})
