"""The trigram index behind ``search`` and ``keywords`` (viralspot/catalog/text_index.py): it holds every
row's text as the filters fold it, whichever writer wrote the row; the rows it finds are never fewer
than the exact condition's; a rare text is looked up in it, a common one walks its order as before
(real SQLite and PostgreSQL)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, select, text

from conftest import dispose_catalog_app, make_catalog_app
from viralspot.catalog import queries, seed, text_index
from viralspot.catalog.database import create_schema, make_engine
from viralspot.catalog.filters import build_content_filter
from viralspot.catalog.importer import import_lines
from viralspot.catalog.tables import content
from viralspot.catalog.text_case import fold_case
from viralspot.clock import parse_instant

#: Characters that test the folding and the FTS5 query's quoting: quotes, LIKE's wildcards and escape,
#: the Kelvin sign and "İ" (folded to ASCII), final and other sigmas, a line break (joins keywords), a
#: combining accent and a character beyond the BMP (a trigram is of code points).
ALPHABET = 'ab"%_\\kKİıΣσς\u212a \n\u0301\U0001F525'
KEYWORDS = ("keyword_1", "keyword_2", "keyword_3", "keyword_4")


def line(content_id: str, **fields) -> str:
    record = {"content_id": content_id, "shortcode": content_id, "content_type": "reel",
              "date_posted": "2026-11-01T00:00:00Z", "username": f"user_{content_id}", **fields}
    return json.dumps(record)


def indexed_rows(engine) -> dict[int, tuple]:
    with engine.connect() as conn:
        return {row[0]: tuple(row[1:]) for row in conn.execute(
            text("SELECT rowid, description, username, keywords FROM content_text"))}


def expected_rows(engine) -> dict[int, tuple]:
    """What the index must hold: each row's columns folded as the filters fold them."""
    columns = [content.c.id, content.c.description, content.c.username, *(content.c[name] for name in KEYWORDS)]
    with engine.connect() as conn:
        return {row[0]: (fold_case(row[1] or ""), fold_case(row[2]),
                         fold_case("\n".join(value or "" for value in row[3:])))
                for row in conn.execute(select(*columns))}


@pytest.fixture
def sqlite_app(tmp_path):
    """An app on a fresh SQLite catalog (the FTS5 table is SQLite's; PostgreSQL's indexes are below)."""
    application = make_catalog_app(f"sqlite:///{tmp_path}/catalog.db")
    yield application
    dispose_catalog_app(application)


@pytest.fixture
def postgresql_app(postgres_server):
    application = make_catalog_app(postgres_server.create_database())
    yield application
    dispose_catalog_app(application)


def test_every_writer_keeps_the_index(sqlite_app, monkeypatch):
    """Import (inserts, then updates of the text columns), a small seed replacing the catalog (row by
    row), a large one (the index dropped and built again): the index holds each row, folded."""
    engine = sqlite_app.extensions["viralspot.catalog"]
    report = import_lines(engine, [line("a1", description="ΣΟΦΟΣ \u212aelvin", keyword_1="İSTANBUL"),
                                   line("a2", description="plain", keyword_2="Two", keyword_4='quo"te')])
    assert report.rejected == 0, report.errors
    assert indexed_rows(engine) == expected_rows(engine) and len(expected_rows(engine)) == 2
    report = import_lines(engine, [line("a1", description="changed", keyword_1="other"),
                                   line("a3", description="third")])
    assert (report.inserted, report.updated, report.rejected) == (1, 1, 0)
    assert indexed_rows(engine) == expected_rows(engine) and len(expected_rows(engine)) == 3
    reference = parse_instant("2026-12-01T00:00:00Z")
    seed.seed_catalog(engine, 40, 3, reference=reference, replace=True)
    assert indexed_rows(engine) == expected_rows(engine) and len(expected_rows(engine)) == 40
    monkeypatch.setattr(seed, "REBUILD_INDEXES_ITEMS", 30)
    seed.seed_catalog(engine, 50, 4, reference=reference, replace=True)
    assert indexed_rows(engine) == expected_rows(engine) and len(expected_rows(engine)) == 50


def test_a_catalog_without_the_index_gets_it_at_start(database_url, database_backend):
    """A catalog written before the index (or whose seed was cut off before building it again) gets
    it at the next start, filled from every row; searches then read it."""
    app = make_catalog_app(database_url)
    engine = app.extensions["viralspot.catalog"]
    report = import_lines(engine, [line(f"r{number}", description=f"word{number} Rare") for number in range(20)])
    assert report.rejected == 0, report.errors
    with engine.begin() as conn:
        text_index.drop_text_index(conn)
    assert not text_index.TRIGRAM_INDEXES.keys() & index_names(engine)
    dispose_catalog_app(app)
    app = make_catalog_app(database_url)
    engine = app.extensions["viralspot.catalog"]
    if database_backend == "sqlite":
        assert indexed_rows(engine) == expected_rows(engine) and len(expected_rows(engine)) == 20
    else:
        assert set(text_index.TRIGRAM_INDEXES) <= index_names(engine)
    response = app.test_client().get("/api/reels", query_string={"search": "word7 rare"})
    assert [item["content_id"] for item in response.json["data"]["reels"]] == ["r7"]
    dispose_catalog_app(app)


def index_names(engine) -> set[str]:
    listing = {"sqlite": "SELECT name FROM sqlite_master WHERE tbl_name = 'content'",
               "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'content'"}[engine.dialect.name]
    with engine.connect() as conn:
        return set(conn.exec_driver_sql(listing).scalars())


def statements_of(engine, call) -> list[str]:
    seen: list[str] = []

    def remember(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", remember)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return seen


def test_a_rare_text_is_looked_up_a_common_one_walks_the_order(sqlite_app, monkeypatch):
    """SQLite: a page whose text the index finds in at most ``queries.LOOKUP_AT_MOST`` rows reads those
    rows; past it the page walks its order, and both give the pages a scan gives."""
    engine = sqlite_app.extensions["viralspot.catalog"]
    lines = [line(f"c{number}", description=f"common {number}", view_count=number) for number in range(12)]
    assert import_lines(engine, [*lines, line("r1", description="one Rare word")]).rejected == 0
    monkeypatch.setattr(queries, "LOOKUP_AT_MOST", 5)
    client = sqlite_app.test_client()
    for search, looked_up, expected in (("rare", True, ["r1"]), ("COMMON", False, [f"c{n}" for n in range(11, 6, -1)])):
        pages = []
        seen = statements_of(engine, lambda: pages.append(client.get(
            "/api/reels", query_string={"search": search, "limit": 5, "sort_by": "views"})))
        assert [item["content_id"] for item in pages[0].json["data"]["reels"]] == expected
        page_statement = [statement for statement in seen if "ORDER BY" in statement]
        assert len(page_statement) == 1 and ("content_text MATCH" in page_statement[0]) is looked_up
        with engine.connect() as conn:
            plan = " ".join(row[3] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(queries.plain_order_statement(
                    build_content_filter("reels", {"search": search}), "views",
                    among=text_index.text_rows(search)).compile(compile_kwargs={"literal_binds": True}))))
        assert "VIRTUAL TABLE" in plan


@pytest.mark.postgres
def test_postgresql_reads_its_trigram_index(postgresql_app):
    """PostgreSQL: the condition ``contains`` writes for every text is one its trigram indexes serve."""
    engine = postgresql_app.extensions["viralspot.catalog"]
    assert import_lines(engine, [line(f"p{n}", description=f"text {n}") for n in range(30)]).rejected == 0
    for search, index in (("xt 1", "ix_content_trgm_description"), ("Kelvin", "ix_content_trgm_description"),
                          ("user_p1", "ix_content_trgm_username")):
        condition = build_content_filter("reels", {"search": search}).conditions()[1]
        statement = select(content.c.id).where(condition).compile(engine, compile_kwargs={"literal_binds": True})
        with engine.connect() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(conn.exec_driver_sql(f"EXPLAIN {statement}").scalars())
        assert index in plan, plan
    keywords = build_content_filter("reels", {"keywords": ["abc"]}).conditions()[1]
    statement = select(content.c.id).where(keywords).compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        plan = " ".join(conn.exec_driver_sql(f"EXPLAIN {statement}").scalars())
    assert all(f"ix_content_trgm_{name}" in plan for name in KEYWORDS), plan


@pytest.fixture(scope="module")
def tricky_catalog(tmp_path_factory):
    """A SQLite catalog of 300 rows whose texts are drawn from ``ALPHABET`` (a fixed seed)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('text')}/catalog.db")
    create_schema(engine)
    rng = np.random.default_rng(7)

    def words() -> str:
        return "".join(rng.choice(list(ALPHABET), size=int(rng.integers(0, 12))))

    lines = [line(f"t{number}", description=words(), **{name: words() for name in KEYWORDS[:int(rng.integers(0, 5))]})
             for number in range(300)]
    assert import_lines(engine, lines).rejected == 0
    yield engine
    engine.dispose()


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(search=st.one_of(st.none(), st.text(ALPHABET, min_size=1, max_size=5)),
       keywords=st.lists(st.text(ALPHABET, min_size=1, max_size=4), max_size=3))
def test_the_index_never_loses_a_match(tricky_catalog, search, keywords):
    """Whatever the texts: the rows read through the index are exactly those the scan finds, in the
    random feed's matching set and in a plain order."""
    flt = build_content_filter("reels", {"search": search, "keywords": keywords})
    with tricky_catalog.connect() as conn:
        scanned = sorted(conn.execute(flt.where(select(content.c.id))).scalars())
        assert queries.matching_keys(conn, flt).tolist() == scanned
        ordered = [conn.execute(queries.plain_order_statement(flt, "likes", among=among)).scalars().all()
                   for among in (None, *queries.narrowing_rows(flt))]
    assert all(found == ordered[0] for found in ordered) and sorted(ordered[0]) == scanned


@pytest.mark.postgres
def test_without_pg_trgm_text_filters_scan(postgres_server, caplog):
    """A role that may not create the extension (no CREATE on the database): the start-up says so, no
    trigram index is made, and search and keywords still find their rows (by a scan)."""
    import uuid

    import psycopg
    from psycopg import sql

    url = postgres_server.create_database()
    database, role = url.rsplit("/", 1)[1], f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres", dbname=database,
                         autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    app = make_catalog_app(url.replace("postgres@", f"{role}@"))
    engine = app.extensions["viralspot.catalog"]
    assert any("pg_trgm" in record.getMessage() for record in caplog.records if record.levelname == "WARNING")
    assert not text_index.TRIGRAM_INDEXES.keys() & index_names(engine)
    assert import_lines(engine, [line("n1", description="Needle here", keyword_1="Haystack")]).rejected == 0
    client = app.test_client()
    for query in ({"search": "NEEDLE"}, {"keywords": "hayst"}):
        reels = client.get("/api/reels", query_string=query).json["data"]["reels"]
        assert [item["content_id"] for item in reels] == ["n1"]
    dispose_catalog_app(app)


def searched(app, **query) -> list[str]:
    response = app.test_client().get("/api/reels", query_string=query)
    assert response.status_code == 200, response.json
    return [item["content_id"] for item in response.json["data"]["reels"]]


def test_without_the_table_text_filters_read_every_row(sqlite_app):
    """A large seed drops the index until its end (or was killed), or an older catalog file was put
    in place: searches answer from the rows, as before the index (they answered 503)."""
    engine = sqlite_app.extensions["viralspot.catalog"]
    assert import_lines(engine, [line("m1", description="Missing index", keyword_1="gone")]).rejected == 0
    with engine.begin() as conn:
        text_index.drop_text_index(conn)
    assert searched(sqlite_app, search="missing") == ["m1"] and searched(sqlite_app, keywords="gone") == ["m1"]
    response = sqlite_app.test_client().get("/api/reels", query_string={
        "search": "index", "random_order": "true", "session_id": "no-index"})
    assert [item["content_id"] for item in response.json["data"]["reels"]] == ["m1"]


def test_a_start_that_finds_the_write_lock_taken_does_not_wait(tmp_path, caplog):
    """Another process writing (or building the index) holds the lock: this start goes on without
    building it (it waited, then answered 503 on every route) and its searches read the rows; a
    later start builds it."""
    import sqlite3

    url = f"sqlite:///{tmp_path}/catalog.db"
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    assert import_lines(engine, [line("w1", description="Written while locked")]).rejected == 0
    with engine.begin() as conn:
        text_index.drop_text_index(conn)
    dispose_catalog_app(app)
    writer = sqlite3.connect(f"{tmp_path}/catalog.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        app = make_catalog_app(url, DATABASE_BUSY_TIMEOUT=5)
        assert any("not built" in record.getMessage() for record in caplog.records)
        assert searched(app, search="locked") == ["w1"]
        dispose_catalog_app(app)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    assert indexed_rows(engine) == expected_rows(engine) and len(indexed_rows(engine)) == 1
    dispose_catalog_app(app)


def test_without_the_trigram_tokenizer_the_service_starts(tmp_path, monkeypatch, caplog):
    """SQLite before 3.34 has no trigram tokenizer (emulated by naming one that does not exist): start-up
    says so and text filters read every row (every route answered 503)."""
    ddl = list(text_index._SQLITE_DDL)
    monkeypatch.setattr(text_index, "_SQLITE_DDL", (ddl[0].replace("trigram", "no_such_tokenizer"), *ddl[1:]))
    app = make_catalog_app(f"sqlite:///{tmp_path}/catalog.db")
    assert any("trigram tokenizer" in record.getMessage() for record in caplog.records if record.levelname == "WARNING")
    assert import_lines(app.extensions["viralspot.catalog"], [line("o1", description="Old sqlite")]).rejected == 0
    assert searched(app, search="old sq") == ["o1"]
    dispose_catalog_app(app)


def test_an_index_folded_by_other_rules_is_built_again(tmp_path, caplog):
    """Another Python's ``str.lower`` (its Unicode tables) or ``fold_case`` filled the index: the next
    start builds it again (the rows it folded differently were never found)."""
    url = f"sqlite:///{tmp_path}/catalog.db"
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    assert import_lines(engine, [line("f1", description="Folded")]).rejected == 0
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE content_text SET description = 'other rules'")
        conn.exec_driver_sql("UPDATE catalog_meta SET value = value + 1 WHERE name = ?", (text_index.FOLD_KEY,))
    assert searched(app, search="folded") == []  # what such an index answers
    dispose_catalog_app(app)
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    assert any("other rules" in record.getMessage() for record in caplog.records)
    assert indexed_rows(engine) == expected_rows(engine) and searched(app, search="folded") == ["f1"]
    dispose_catalog_app(app)


@pytest.mark.postgres
def test_pg_trgm_in_another_schema(postgres_server):
    """The extension installed in a schema off the search path: the indexes name its operator class
    there (start-up failed on an unknown ``gin_trgm_ops``)."""
    import psycopg

    url = postgres_server.create_database()
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres",
                         dbname=url.rsplit("/", 1)[1], autocommit=True) as conn:
        conn.execute("CREATE SCHEMA extensions")
        conn.execute("CREATE EXTENSION pg_trgm SCHEMA extensions")
    app = make_catalog_app(url)
    engine = app.extensions["viralspot.catalog"]
    assert set(text_index.TRIGRAM_INDEXES) <= index_names(engine)
    assert import_lines(engine, [line("s1", description="Schema apart")]).rejected == 0
    assert searched(app, search="APART") == ["s1"]
    dispose_catalog_app(app)
