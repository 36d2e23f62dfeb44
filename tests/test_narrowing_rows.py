"""A plain page on SQLite reads the rows of a condition that holds for few (``queries.narrowing_rows``:
the text index's, those of the authors the profile conditions keep) instead of walking its order's
index, which read every row when the condition held for none (min_followers above everyone's: 3.1 s
of CPU at 1M items). Whichever way it reads, the pages are those of the order (real SQLite)."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from conftest import dispose_catalog_app, make_catalog_app
from viralspot.catalog import answer_deadline, queries
from viralspot.catalog.database import make_engine
from viralspot.catalog.filters import build_content_filter
from viralspot.catalog.seed import seed_catalog
from viralspot.clock import parse_instant

KIND_SORTS = [("reels", None), ("reels", "followers"), ("reels", "likes"), ("posts", "recent")]
PROFILE_FILTERS = [{"min_followers": 10 ** 12}, {"min_followers": 1_000_000}, {"max_followers": 20_000},
                   {"is_verified": True}, {"account_types": ["Business Page"]},
                   {"account_types": ["Influencer"], "min_followers": 100_000, "search": "the"}]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    app = make_catalog_app(f"sqlite:///{tmp_path_factory.mktemp('narrowing')}/catalog.db")
    seed_catalog(app.extensions["viralspot.catalog"], 600, 11, reference=parse_instant("2026-12-01T00:00:00Z"))
    yield app
    dispose_catalog_app(app)


def every_page(conn, flt, sort_by, limit=7) -> list[int]:
    keys, offset = [], 0
    while True:
        page, last = queries.plain_page_keys(conn, flt, sort_by, limit, offset)
        keys += page
        if last:
            return keys
        offset += limit


@pytest.mark.parametrize("args", PROFILE_FILTERS)
@pytest.mark.parametrize("kind, sort_by", KIND_SORTS)
def test_pages_read_by_lookup_are_the_orders_pages(seeded, monkeypatch, kind, sort_by, args):
    """Every page with the rows looked up equals the page walking the order, and their keys are
    every matching row once."""
    flt = build_content_filter(kind, args)
    engine = seeded.extensions["viralspot.catalog"]
    with engine.connect() as conn:
        monkeypatch.setattr(queries, "LOOKUP_AT_MOST", -1)  # never looked up
        walked = every_page(conn, flt, sort_by)
        monkeypatch.setattr(queries, "LOOKUP_AT_MOST", 10 ** 9)  # always
        looked_up = every_page(conn, flt, sort_by)
        exact = conn.execute(queries.plain_order_statement(flt, sort_by)).scalars().all()
    assert walked == looked_up == exact and len(set(exact)) == len(exact)


def test_a_profile_condition_that_holds_for_few_rows_is_looked_up(seeded, monkeypatch):
    """min_followers above everyone's: the page reads the authors' rows (none); a condition every
    author meets (600 rows, more than the 50 allowed here): the page walks its order."""
    monkeypatch.setattr(queries, "LOOKUP_AT_MOST", 50)
    engine = seeded.extensions["viralspot.catalog"]
    client = seeded.test_client()
    for query, looked_up, found in (({"min_followers": 10 ** 12}, True, 0), ({"max_followers": 10 ** 12}, False, 24)):
        seen: list[str] = []

        def remember(_conn, _cursor, statement, *_args):
            seen.append(statement)

        event.listen(engine, "before_cursor_execute", remember)
        try:
            response = client.get("/api/reels", query_string=query)
        finally:
            event.remove(engine, "before_cursor_execute", remember)
        assert len(response.json["data"]["reels"]) == found
        (page,) = [statement for statement in seen if "ORDER BY" in statement]
        assert ("content.profile_id IN" in page) is looked_up, page


@pytest.fixture
def interrupted_at_once(tmp_path, monkeypatch):
    """An app whose SQLite statements run the progress handler at every step, a condition always
    "holding for many" and no CPU for the planner's way: every narrowed read falls back."""
    monkeypatch.setattr(answer_deadline, "SQLITE_STEPS", 1)
    app = make_catalog_app(f"sqlite:///{tmp_path}/catalog.db")
    seed_catalog(app.extensions["viralspot.catalog"], 300, 5, reference=parse_instant("2026-12-01T00:00:00Z"))
    monkeypatch.setattr(queries, "LOOKUP_AT_MOST", -1)
    monkeypatch.setattr(queries, "PLANNER_CPU_SECONDS", 0.0)
    yield app
    dispose_catalog_app(app)


@pytest.mark.parametrize("args", [{"min_followers": 1_000_000, "min_views": 10 ** 12}, {"search": "the"},
                                  {"keywords": ["dance", "tips"], "is_verified": False}])
def test_a_read_past_its_cpu_budget_reads_the_conditions_rows(interrupted_at_once, args):
    """The planner's way is interrupted by its CPU budget, then the condition's rows are read: a plain
    page's and a matching set's answers are those of the exact statement."""
    engine = interrupted_at_once.extensions["viralspot.catalog"]
    flt = build_content_filter("reels", args)
    seen: list[str] = []

    def remember(_conn, _cursor, statement, *_args):
        seen.append(statement)

    with engine.connect() as conn:
        with answer_deadline.deadline_lifted():
            exact_order = conn.execute(queries.plain_order_statement(flt, "likes")).scalars().all()
        event.listen(engine, "before_cursor_execute", remember)
        try:
            page, _last = queries.plain_page_keys(conn, flt, "likes", 10, 0)
            matching = queries.matching_keys(conn, flt).tolist()
        finally:
            event.remove(engine, "before_cursor_execute", remember)
    assert page == exact_order[:10]
    assert matching == sorted(exact_order)
    ordered = [statement for statement in seen if "ORDER BY" in statement]
    assert len(ordered) == 2 and " IN (SELECT" not in ordered[0] and " IN (SELECT" in ordered[1], ordered


def test_the_cpu_budget_interrupts_only_its_own_statements(tmp_path):
    """``cpu_budget`` ends a statement past its thread CPU (``budget_spent`` says so); without it the
    same statement runs to its end, and a deadline's interruption is not the budget's."""
    from sqlalchemy.exc import OperationalError

    engine = make_engine(f"sqlite:///{tmp_path}/budget.db", answer_timeout=0.05)
    costly = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n"
    with engine.connect() as conn:
        with answer_deadline.cpu_budget(0.001), pytest.raises(OperationalError):
            conn.exec_driver_sql(costly).scalar()
        assert answer_deadline.budget_spent(conn)
        with pytest.raises(OperationalError):  # the 0.05 s deadline
            conn.exec_driver_sql(costly).scalar()
        assert not answer_deadline.budget_spent(conn)
        with answer_deadline.deadline_lifted():
            assert conn.exec_driver_sql(costly).scalar() == 3_000_000
            assert not answer_deadline.budget_spent(conn)
    engine.dispose()
