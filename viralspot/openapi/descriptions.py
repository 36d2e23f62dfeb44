"""Prose of the description: the API overview, the tags, and what each query argument means.

Types, ranges, defaults and allowed values come from the marshmallow schemas
themselves; only the sentences live here. An argument missing from
``ARGUMENTS`` is still documented, with no sentence.
"""
from __future__ import annotations

TITLE = "ViralSpot content API"

OVERVIEW = """\
Catalog browsing and session-consistent random feeds for the ViralSpot frontend.

**Envelopes.** Every success body is `{success: true, data, message}`. Every error, on every
route, is `{success: false, detail, error_code, timestamp, troubleshooting}`; each operation
lists the `error_code` values it may answer under their HTTP status.

**Random feeds.** `random_order=true` with a `session_id` serves the session's own random order
of the endpoint's filtered catalog: pages never repeat an item within a session until
`POST /api/reset-session`, which starts a fresh order.

**Browsers.** The API answers cross-origin requests (CORS) from the origins of
`VIRALSPOT_CORS_ORIGINS` (default: any), without credentials: session ids travel in the query.
"""

TAGS = {
    "content": "Catalog pages (plain or session-random order) and the filter options.",
    "session": "A session's random-feed state: inspect it, reset it.",
    "health": "Liveness and readiness.",
    "docs": "This description and its interactive page.",
    "metrics": "Prometheus metrics of the service.",
}

_COMMA = "Comma-separated list."

ARGUMENTS = {
    "search": "Case-insensitive substring of the description or the username.",
    "primary_categories": f"{_COMMA} Exact match on the item's primary category.",
    "secondary_categories": f"{_COMMA} Exact match on the item's secondary category.",
    "tertiary_categories": f"{_COMMA} Exact match on the item's tertiary category.",
    "keywords": f"{_COMMA} Substring of any of keyword_1..keyword_4 or of the description.",
    "min_outlier_score": "Lowest outlier score.",
    "max_outlier_score": "Highest outlier score.",
    "min_views": "Fewest views (ignored for posts, which have no views).",
    "max_views": "Most views (ignored for posts).",
    "min_likes": "Fewest likes.",
    "max_likes": "Most likes.",
    "min_comments": "Fewest comments.",
    "max_comments": "Most comments.",
    "min_followers": "Fewest followers of the author.",
    "max_followers": "Most followers of the author.",
    "is_verified": "Only items whose author is (true) or is not (false) verified.",
    "date_range": "Posted within the last day, week, month (30 days) or year (365 days); all: no limit.",
    "account_types": f"{_COMMA} The author's account type (case-insensitive).",
    "content_types": (f"{_COMMA} Replaces the endpoint's own type (reel for /api/reels, post for /api/posts); "
                      "aliases: video -> reel, image/photo/carousel -> post."),
    "languages": f"{_COMMA} The item's language.",
    "content_styles": f"{_COMMA} The item's content style.",
    "excluded_usernames": f"{_COMMA} Authors to leave out.",
    "min_account_engagement_rate": "Lowest (likes + comments) / author's followers x 100.",
    "max_account_engagement_rate": "Highest (likes + comments) / author's followers x 100.",
    "sort_by": ("Order of a plain page; default: outlier score, then views (likes for posts), descending. "
                "Ignored with random_order=true: the session's order is the order."),
    "random_order": "Serve the session's own random order (requires session_id).",
    "session_id": ("The session: 1 to 255 letters, digits, dots, underscores or hyphens "
                   "(surrounding spaces are stripped)."),
    "limit": "Items per page.",
    "offset": ("Items to skip. With random_order=true a page may reach at most RANDOM_MAX_AHEAD (1000) items "
               "past what the session has been served in this feed."),
}
