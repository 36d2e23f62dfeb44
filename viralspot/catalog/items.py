"""The frontend's ITEM shape: ``serialize_item(row)`` from a catalog row (content + profile columns),
which the catalog renders at write time (``rendering.py``)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

#: The fields an item shows as stored (None when missing).
_AS_STORED = ("primary_category", "secondary_category", "tertiary_category", "keyword_1", "keyword_2", "keyword_3",
              "keyword_4", "categorization_confidence", "content_style", "language", "account_type")


def display_count(value: int | None) -> str:
    """``1234567`` -> ``"1.2M"``, ``45200`` -> ``"45.2K"``, ``45000`` -> ``"45K"``, ``321`` -> ``"321"``;
    a count that rounds to a thousand of a unit takes the next unit (``999999`` -> ``"1M"``)."""
    number = int(value or 0)
    if abs(number) < 1_000:
        return str(number)
    for power, suffix in enumerate(("K", "M", "B"), start=1):
        text = f"{number / 1_000 ** power:.1f}"
        if abs(float(text)) < 1_000 or suffix == "B":
            break
    return text.rstrip("0").rstrip(".") + suffix


def iso_datetime(value: datetime | str | None) -> str | None:
    """ISO 8601 in UTC; a naive value (SQLite returns those) is UTC already."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def serialize_item(row: Mapping[str, Any]) -> dict:
    """One item as the frontend reads it (every id field is the content id)."""
    content_id = row["content_id"]
    username = row["username"]
    thumbnail = (row.get("thumbnail_url") or row.get("thumbnail_path") or row.get("video_thumbnail_path")
                 or row.get("display_url_path"))
    description = row.get("description") or ""
    outlier = float(row.get("outlier_score") or 0.0)
    followers = int(row.get("followers") or 0)
    profile_image = row.get("profile_image_url")
    return {
        "id": content_id,
        "reel_id": content_id,
        "content_id": content_id,
        "content_type": row["content_type"],
        "shortcode": row["shortcode"],
        "url": row.get("url"),
        "description": description,
        "title": description,
        "thumbnail_url": thumbnail,
        "thumbnail_local": thumbnail,
        "thumbnail": thumbnail,
        "view_count": int(row.get("view_count") or 0),
        "like_count": int(row.get("like_count") or 0),
        "comment_count": int(row.get("comment_count") or 0),
        "outlier_score": outlier,
        "outlierScore": f"{outlier:.1f}x",
        "date_posted": iso_datetime(row.get("date_posted")),
        "username": username,
        "profile": f"@{username}",
        "profile_name": row.get("profile_name") or username,
        "bio": row.get("bio") or "",
        "profile_followers": followers,
        "followers": followers,
        "profile_image_url": profile_image,
        "profileImage": profile_image,
        "is_verified": bool(row.get("is_verified")),
        **{name: row.get(name) for name in _AS_STORED},
        "views": display_count(row.get("view_count")),
        "likes": display_count(row.get("like_count")),
        "comments": display_count(row.get("comment_count")),
    }
