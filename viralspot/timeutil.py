"""Timestamps as the API writes them: ISO 8601, UTC, milliseconds, ``Z``."""
from datetime import datetime, timezone


def utc_timestamp(moment: datetime | None = None) -> str:
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
