"""The upstream ViralSpot random feed, rebuilt as the benchmark's baseline. Not used by the service.

What upstream does (see ../shared/reference/content-api.md, "Known flaws"):
fetch the page that limit/offset selects in the default order, drop what the
session's set of content-id strings already holds, seed Python's global
``random`` with MD5(session_id) and shuffle that page, then add the page's ids
to the set. The bytes-per-item figure is measured on that set of strings.
"""
from __future__ import annotations

import hashlib
import random
import sys
import threading

_sessions: dict[str, set[str]] = {}
_lock = threading.Lock()


def upstream_random_page(rows: list[dict], session_id: str) -> list[dict]:
    """Shuffle one fetched page the upstream way and record it in the session's set."""
    with _lock:
        seen = _sessions.setdefault(session_id, set())
        fresh = [row for row in rows if row["content_id"] not in seen]
        random.seed(int(hashlib.md5(session_id.encode()).hexdigest(), 16))
        random.shuffle(fresh)
        seen.update(row["content_id"] for row in fresh)
    return fresh


def set_of_strings_bytes(content_ids: list[str]) -> int:
    """Memory of upstream's seen record: the set plus its strings."""
    seen = set(content_ids)
    return sys.getsizeof(seen) + sum(sys.getsizeof(item) for item in seen)


def forget_sessions() -> None:
    with _lock:
        _sessions.clear()
