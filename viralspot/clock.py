"""The service's one clock: what "now" means for ``date_range`` filters and a seeded catalog's dates;
and ``utc_timestamp``, the one format of the timestamps of responses and log lines.

Each app has one ``Clock``: the system clock or, with ``VIRALSPOT_FIXED_NOW`` (an ISO 8601 instant),
one pinned at that instant (tests pin it; production refuses a pinned clock).
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from flask import Flask, current_app

EXTENSION_NAME = "viralspot.clock"


def utc_timestamp(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as the API and the logs write it: ISO 8601, UTC, milliseconds, ``Z``."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_instant(value: str | datetime) -> datetime:
    """An aware UTC datetime from an ISO 8601 string or a datetime (naive means UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 instant (e.g. 2026-12-02T12:00:00Z)") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not an ISO 8601 instant")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise ValueError(f"{value.isoformat()!r} is out of range in UTC") from None


class Clock:
    """Epoch seconds when called; ``now()`` as a UTC datetime. ``fixed`` pins it (None: system time)."""

    def __init__(self, fixed: str | datetime | None = None) -> None:
        self._fixed_seconds = None if fixed is None else parse_instant(fixed).timestamp()

    def __call__(self) -> float:
        return time.time() if self._fixed_seconds is None else self._fixed_seconds

    def now(self) -> datetime:
        return datetime.fromtimestamp(self(), timezone.utc)


def init_clock(app: Flask) -> None:
    """The app's clock from ``FIXED_NOW``; a value that is not an instant stops start-up."""
    try:
        app.extensions[EXTENSION_NAME] = Clock(app.config.get("FIXED_NOW") or None)
    except ValueError as error:
        raise RuntimeError(f"VIRALSPOT_FIXED_NOW: {error}") from None


def app_clock(app: Flask | None = None) -> Clock:
    """The clock of ``app`` (the current app by default)."""
    return (app or current_app).extensions[EXTENSION_NAME]
