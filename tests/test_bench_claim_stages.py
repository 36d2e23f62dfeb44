"""bench/claim_depth's stage timings: a copy of ``page.lua`` with ``TIME`` stamps before anchor lines.

The copy is made from today's ``page.lua``, so a change to the script that moves an anchor breaks
it; ``make bench`` then only prints a note, so the check is here: the copy is built, serves real
claims on a real redis-server, and records every stage of every claim.
"""
from __future__ import annotations

import pytest

from gunicorn_servers import ROOT  # noqa: F401  first: puts the repo root (bench/) on sys.path
from bench import claim_depth
from viralspot.store.redis_store import RedisSessionStore

pytestmark = pytest.mark.redis

SESSIONS, CLAIMS, LIMIT = 2, 3, 24


def test_the_stamped_page_script_serves_claims_and_times_every_stage(redis_clean):
    store = RedisSessionStore(redis_clean.url, ttl=3600, max_items=claim_depth.MAX_ITEMS)
    try:
        table = claim_depth.stages_on(store, [1000], LIMIT, SESSIONS, CLAIMS)
        recorded = {claim_depth._text(name): int(value)
                    for name, value in store.client.hgetall(claim_depth.STAGE_HASH).items()}
        served = [store.summary(f"s-1000-{n}").served_items_count for n in range(SESSIONS)]
    finally:
        store.close()
    stage_names = [name for _anchor, name in claim_depth.STAGES] + [claim_depth.REPLY_STAGE]
    assert set(recorded) == {"claims", *stage_names}
    assert recorded["claims"] == SESSIONS * CLAIMS
    assert served == [1000 + CLAIMS * LIMIT] * SESSIONS  # the stamped copy served the claims it timed
    assert list(table["1,000"]) == stage_names
    assert sum(table["1,000"].values()) > 0
