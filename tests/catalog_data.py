"""A small fixture catalog (JSON-lines records) and a plain-Python oracle of the content API's rules.

The oracle restates the documented semantics independently of the SQL, so the
catalog tests compare what the service answers with what the reference says.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta

PROFILES = {
    "alice": {"followers": 1_000_000, "is_verified": True, "account_type": "Influencer", "profile_name": "Alice A"},
    "bob": {"followers": 50_000, "is_verified": False, "account_type": "Theme Page", "profile_name": None},
    "carla": {"followers": 5_000, "is_verified": True, "account_type": "Business Page", "profile_name": "Carla"},
    "dan": {"followers": 0, "is_verified": False, "account_type": "Personal", "profile_name": "Dan"},
    "o'neil_100%": {"followers": 200, "is_verified": False, "account_type": "Personal", "profile_name": "O'Neil"},
    "eve_x": {"followers": 12_000, "is_verified": False, "account_type": "Influencer", "profile_name": "Eve"},
}
USERNAMES = list(PROFILES)
TYPES = ["reel", "reel", "post", "reel", "story", "post"]
CATEGORIES = ["Food", "Travel", "Tech & Gadgets"]
AGES = [timedelta(hours=2), timedelta(days=3), timedelta(days=20), timedelta(days=200), timedelta(days=600)]
DESCRIPTIONS = {
    1: "100% real results",
    2: "snake_case naming explained",
    3: 'it\'s "quoted" text',
    4: "back\\slash path C:\\temp",
    5: "'; DROP TABLE content; --",
    6: "50%_off sale today",
    7: "Percent sign alone: %",
    8: "under_score and 100% together",
    9: "PASTA Night special",
}
COUNT = 60


def fixture_records(now: datetime) -> list[dict]:
    """60 items with repeated scores, views and dates (counted back from ``now``), so every order
    needs its tie-break."""
    records = []
    for i in range(COUNT):
        username = USERNAMES[(i // 2 + i) % len(USERNAMES)]
        profile = PROFILES[username]
        content_type = TYPES[i % len(TYPES)]
        category = CATEGORIES[i % 3]
        records.append({
            "content_id": f"c{i:03d}",
            "shortcode": f"SC{i:03d}",
            "content_type": content_type,
            "url": f"https://example.test/{i}",
            "description": DESCRIPTIONS.get(i, f"Item {i} about {category.lower()}"),
            "thumbnail_url": f"https://img.example.test/{i}.jpg",
            "view_count": 0 if content_type == "post" else [0, 1000, 1000, 45_000, 1_234_567, 999][(i * 3) % 6],
            "like_count": ((i * 37) % 50) * 10,
            "comment_count": (i * 11) % 9,
            "outlier_score": [0.5, 1.0, 2.5, 4.2, 10.0][(i * 7) % 5],
            "date_posted": (now - AGES[i % 5]).isoformat(),
            "username": username,
            "language": ["en", "es", "pt"][(i // 2) % 3],
            "content_style": ["tutorial", "vlog"][(i // 4) % 2],
            "primary_category": category,
            "secondary_category": ["Recipes", "Tips"][i % 2],
            "tertiary_category": ["Quick", "Deep"][(i // 3) % 2],
            "categorization_confidence": 0.9,
            "keyword_1": ["pasta", "beach", "ai"][i % 3],
            "keyword_2": "100%" if i % 7 == 0 else None,
            "keyword_3": "long_tail" if i % 11 == 0 else None,
            "keyword_4": None,
            **{key: value for key, value in profile.items()},
        })
    return records


def all_ids(client, path: str, query: dict, limit: int = 7) -> list[str]:
    """Walk every page; each page's isLastPage must be honest."""
    ids: list[str] = []
    offset = 0
    while True:
        response = client.get(path, query_string={**query, "limit": limit, "offset": offset})
        assert response.status_code == 200, response.json
        data = response.json["data"]
        ids += [item["content_id"] for item in data["reels"]]
        if data["isLastPage"]:
            return ids
        assert len(data["reels"]) == limit
        offset += limit


def as_json_lines(records: list[dict]) -> list[str]:
    return [json.dumps(record) + "\n" for record in records]


# --- the oracle ----------------------------------------------------------------

DEFAULT_TYPE = {"reels": "reel", "posts": "post"}
ALIASES = {"video": "reel", "image": "post", "photo": "post", "carousel": "post"}
WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30),
           "year": timedelta(days=365)}


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def account_rate(record: dict) -> float | None:
    followers = record["followers"]
    return None if not followers else (record["like_count"] + record["comment_count"]) * 100.0 / followers


def content_rate(record: dict) -> float | None:
    views = record["view_count"]
    return None if not views else (record["like_count"] + record["comment_count"]) * 100.0 / views


def matches(record: dict, kind: str, query: dict, now: datetime) -> bool:
    """Does ``record`` match the query (string arguments, as sent) on /api/<kind>?"""
    types = {ALIASES.get(t.lower(), t.lower()) for t in _csv(query.get("content_types", ""))} or {DEFAULT_TYPE[kind]}
    if record["content_type"] not in types:
        return False
    search = query.get("search", "").strip().lower()
    if search and search not in record["description"].lower() and search not in record["username"].lower():
        return False
    for arg, field in (("primary_categories", "primary_category"), ("secondary_categories", "secondary_category"),
                       ("tertiary_categories", "tertiary_category"), ("languages", "language"),
                       ("content_styles", "content_style"), ("account_types", "account_type")):
        if arg in query and record[field] not in _csv(query[arg]):
            return False
    if "keywords" in query:
        texts = [record[f"keyword_{n}"] or "" for n in range(1, 5)] + [record["description"]]
        if not any(word.lower() in text.lower() for word in _csv(query["keywords"]) for text in texts):
            return False
    if record["username"] in _csv(query.get("excluded_usernames", "")):
        return False
    ranges = {"outlier_score": record["outlier_score"], "likes": record["like_count"],
              "comments": record["comment_count"], "followers": record["followers"],
              "account_engagement_rate": account_rate(record)}
    if kind == "reels":
        ranges["views"] = record["view_count"]
    for name, value in ranges.items():
        low, high = query.get(f"min_{name}"), query.get(f"max_{name}")
        if (low is not None or high is not None) and value is None:
            return False
        if low is not None and value < float(low):
            return False
        if high is not None and value > float(high):
            return False
    if "is_verified" in query and record["is_verified"] != (query["is_verified"] == "true"):
        return False
    window = WINDOWS.get(query.get("date_range", "all"))
    if window and datetime.fromisoformat(record["date_posted"]) < now - window:
        return False
    return True


def expected_order(records: list[dict], kind: str, query: dict, now: datetime) -> list[str]:
    """content_ids matching ``query`` in the order of its ``sort_by`` (ties broken by insertion order = id)."""
    position = {record["content_id"]: index for index, record in enumerate(records)}
    found = [record for record in records if matches(record, kind, query, now)]
    sort_by = query.get("sort_by", "popular")

    def descending(value):
        return (value is None, -(value or 0))

    keys = {
        "popular": lambda r: (-r["outlier_score"], -(r["view_count"] if kind == "reels" else r["like_count"]),
                              -position[r["content_id"]]),
        "views": lambda r: (-r["view_count"], -position[r["content_id"]]),
        "likes": lambda r: (-r["like_count"], -position[r["content_id"]]),
        "comments": lambda r: (-r["comment_count"], -position[r["content_id"]]),
        "recent": lambda r: (-datetime.fromisoformat(r["date_posted"]).timestamp(), -position[r["content_id"]]),
        "oldest": lambda r: (datetime.fromisoformat(r["date_posted"]).timestamp(), position[r["content_id"]]),
        "followers": lambda r: (-r["followers"], -position[r["content_id"]]),
        "account_engagement": lambda r: (*descending(account_rate(r)), -position[r["content_id"]]),
        "content_engagement": lambda r: (*descending(content_rate(r)), -position[r["content_id"]]),
    }
    return [record["content_id"] for record in sorted(found, key=keys[sort_by])]
