"""The benchmarks' hooks into the code follow today's code.

``bench/claim_depth`` times the stages of a copy of ``page.lua`` with ``TIME`` stamps before anchor
lines, and ``bench/page_profile`` wraps the feed path's functions by name. A change to the code that
moves an anchor or renames a step breaks them, and ``make bench`` then only prints a note or leaves
the step out; the checks are here.
"""
from __future__ import annotations

import pytest

from gunicorn_servers import ROOT  # noqa: F401  first: puts the repo root (bench/) on sys.path
from bench import claim_depth, page_profile
from viralspot.store.redis_store import RedisSessionStore

SESSIONS, CLAIMS, LIMIT = 2, 3, 24


def test_every_page_profile_step_names_a_function_of_the_code():
    totals, counts, undo = {}, {}, []
    try:
        wrapped = [label for module, path, label, _depth in page_profile.STEPS
                   if page_profile._wrap(totals, counts, module, path, label, undo)]
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
    assert wrapped == [label for _module, _path, label, _depth in page_profile.STEPS]


@pytest.mark.redis
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
