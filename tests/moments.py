"""The instants tests pin the service's clock at, so that no test depends on the day it runs.

``PINNED_NOW`` is ``TestingConfig.FIXED_NOW``: every test app's clock unless a test says
otherwise. Date-dependent tests also run at ``YEARS_AHEAD``, the same instant five years later,
with their catalog dated from it: a test that passes at one and fails at the other depends on
the calendar, not on the service.
"""
from datetime import datetime, timezone

import pytest

PINNED_NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
YEARS_AHEAD = datetime(2031, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
MOMENTS = [pytest.param(PINNED_NOW, id="pinned-now"), pytest.param(YEARS_AHEAD, id="5-years-ahead")]


def iso(moment: datetime) -> str:
    """``moment`` as the ISO 8601 text ``FIXED_NOW`` and ``--reference-date`` take."""
    return moment.isoformat().replace("+00:00", "Z")
