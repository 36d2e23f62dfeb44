"""``flask content import``: idempotent upsert by content_id, bad lines reported and skipped."""
from __future__ import annotations

import json

from sqlalchemy import select

from catalog_data import as_json_lines, fixture_records
from moments import PINNED_NOW
from viralspot.catalog.importer import import_lines, parse_line
from viralspot.catalog.queries import catalog_state
from viralspot.catalog.tables import content, primary_profiles


def engine_of(app):
    return app.extensions["viralspot.catalog"]


def rows(app) -> dict[str, dict]:
    with engine_of(app).connect() as conn:
        return {row["content_id"]: dict(row) for row in conn.execute(select(content)).mappings()}


def test_import_inserts_then_reimport_updates_without_changing_anything(catalog_app):
    lines = as_json_lines(fixture_records(PINNED_NOW)[:12])
    first = import_lines(engine_of(catalog_app), lines)
    assert (first.inserted, first.updated, first.rejected) == (12, 0, 0)
    before = rows(catalog_app)
    second = import_lines(engine_of(catalog_app), lines)
    assert (second.inserted, second.updated, second.rejected) == (0, 12, 0)
    after = rows(catalog_app)
    assert before.keys() == after.keys()
    for key in before:
        assert {k: v for k, v in before[key].items() if k != "updated_at"} == \
               {k: v for k, v in after[key].items() if k != "updated_at"}


def test_upsert_changes_the_fields_a_line_gives_and_the_profile(catalog_app):
    record = fixture_records(PINNED_NOW)[0]
    import_lines(engine_of(catalog_app), as_json_lines([record]))
    changed = {"content_id": record["content_id"], "shortcode": record["shortcode"], "content_type": "video",
               "date_posted": "2026-01-02T03:04:05", "username": record["username"], "view_count": 777,
               "followers": 31337}
    report = import_lines(engine_of(catalog_app), [json.dumps(changed)])
    assert (report.inserted, report.updated) == (0, 1)
    row = rows(catalog_app)[record["content_id"]]
    assert row["view_count"] == 777
    assert row["description"] == record["description"]  # untouched: not in the line
    assert row["content_type"] == "reel"  # the alias, normalized
    with engine_of(catalog_app).connect() as conn:
        followers = conn.execute(select(primary_profiles.c.followers)
                                 .where(primary_profiles.c.username == record["username"])).scalar()
    assert followers == 31337


def test_a_line_repeating_its_authors_profile_as_it_is_re_renders_none_of_the_authors_items(catalog_app):
    """Only a change to a profile re-renders its author's items: a line giving the profile's fields
    as they are marked the author for a render of every item, at every chunk (10,000 lines of 5
    authors took 25.5 s against 13.8 without profile fields, and slowed as the catalog grew)."""
    from viralspot.catalog.importer import PROFILE_FIELDS, RenderPending, parse_line, write_record

    records = fixture_records(PINNED_NOW)
    import_lines(engine_of(catalog_app), as_json_lines(records))
    record = next(r for r in records if any(key in r for key in PROFILE_FIELDS))
    with engine_of(catalog_app).begin() as conn:
        unchanged = RenderPending(version=0)
        write_record(conn, parse_line(json.dumps(record)), unchanged)
        changed = RenderPending(version=0)
        write_record(conn, parse_line(json.dumps({**record, "followers": (record.get("followers") or 0) + 1})),
                     changed)
        author = conn.execute(select(primary_profiles.c.id)
                              .where(primary_profiles.c.username == record["username"])).scalar()
    assert unchanged.profile_ids == set()
    assert changed.profile_ids == {author}


def test_bad_lines_are_reported_with_their_number_and_do_not_stop_the_import(catalog_app):
    good = fixture_records(PINNED_NOW)[:4]
    lines = [
        json.dumps(good[0]),                                   # 1 ok
        "{not json",                                           # 2 invalid JSON
        json.dumps([1, 2]),                                    # 3 not an object
        json.dumps({**good[1], "view_count": -3}),             # 4 negative count
        "\n",                                                  # 5 blank: skipped silently
        json.dumps({k: v for k, v in good[1].items() if k != "shortcode"}),  # 6 missing shortcode
        json.dumps(good[1]),                                   # 7 ok
        json.dumps({**good[2], "shortcode": good[0]["shortcode"]}),  # 8 shortcode of another item
        json.dumps({**good[3], "date_posted": "yesterday"}),   # 9 bad date
        json.dumps({**good[3], "content_type": "gif"}),        # 10 unknown type
        json.dumps(good[3]),                                   # 11 ok
    ]
    report = import_lines(engine_of(catalog_app), lines, chunk_lines=3)
    assert (report.inserted, report.updated, report.rejected) == (3, 0, 7)
    assert [number for number, _reason in report.errors] == [2, 3, 4, 6, 8, 9, 10]
    reasons = dict(report.errors)
    assert "invalid JSON" in reasons[2]
    assert "view_count" in reasons[4]
    assert "shortcode" in reasons[6]
    assert good[0]["content_id"] in reasons[8]
    assert "date_posted" in reasons[9]
    stored = rows(catalog_app)
    assert sorted(stored) == sorted([good[0]["content_id"], good[1]["content_id"], good[3]["content_id"]])
    assert stored[good[1]["content_id"]]["view_count"] == good[1]["view_count"]


def test_parse_line_rejects_nan_and_blank_identifiers():
    record = fixture_records(PINNED_NOW)[0]
    for broken in ({**record, "outlier_score": float("nan")}, {**record, "username": "   "}):
        try:
            parse_line(json.dumps(broken))
        except Exception as error:  # noqa: BLE001 - the type is asserted below
            assert type(error).__name__ == "LineRejected"
        else:
            raise AssertionError(f"accepted {broken}")


def test_parse_line_rejects_counts_that_are_not_whole_numbers_and_oversized_text():
    """A fractional or quoted count was truncated or read (followers 1.9 stored as 1, "12" as 12), and
    a text field had no bound (a 200 MB description served as a 419 MB page)."""
    from viralspot.catalog.importer import MAX_IMAGE_URLS, MAX_TEXT

    record = fixture_records(PINNED_NOW)[0]
    assert parse_line(json.dumps(record))["view_count"] == record["view_count"]
    for broken in ({**record, "view_count": 2.7}, {**record, "like_count": "12"}, {**record, "followers": 1.9},
                   {**record, "description": "y" * (MAX_TEXT + 1)},
                   {**record, "all_image_urls": ["https://x.example/a.jpg"] * (MAX_IMAGE_URLS + 1)}):
        try:
            parse_line(json.dumps(broken))
        except Exception as error:  # noqa: BLE001 - the type is asserted below
            assert type(error).__name__ == "LineRejected", error
        else:
            raise AssertionError(f"accepted {[name for name in broken if broken[name] != record[name]]}")
    assert parse_line(json.dumps({**record, "description": "y" * MAX_TEXT}))["description"] == "y" * MAX_TEXT


def test_a_file_that_begins_with_a_byte_order_mark_loses_no_line(catalog_app, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(as_json_lines(fixture_records(PINNED_NOW)[:2])).encode())
    result = catalog_app.test_cli_runner().invoke(args=["content", "import", str(path), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "inserted 2, updated 0, rejected 0" in result.output


def test_every_import_that_writes_bumps_the_catalog_version(catalog_app):
    with engine_of(catalog_app).connect() as conn:
        assert catalog_state(conn) == (0, 0)
    import_lines(engine_of(catalog_app), as_json_lines(fixture_records(PINNED_NOW)[:3]))
    with engine_of(catalog_app).connect() as conn:
        version, largest = catalog_state(conn)
    assert version >= 1 and largest == 3
    import_lines(engine_of(catalog_app), ["garbage"])
    with engine_of(catalog_app).connect() as conn:
        assert catalog_state(conn)[0] == version  # nothing written, nothing bumped
    # Lines refused by the database's state (another item's shortcode), a whole chunk of them.
    taken = [{**record, "content_id": f"other-{n}"} for n, record in enumerate(fixture_records(PINNED_NOW)[:3])]
    report = import_lines(engine_of(catalog_app), as_json_lines(taken))
    assert (report.inserted, report.updated, report.rejected) == (0, 0, 3)
    with engine_of(catalog_app).connect() as conn:
        assert catalog_state(conn) == (version, largest)
    import_lines(engine_of(catalog_app), as_json_lines(fixture_records(PINNED_NOW)[:1]))
    with engine_of(catalog_app).connect() as conn:
        assert catalog_state(conn)[0] > version


def test_import_command_prints_counts_and_rejections(catalog_app, tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(as_json_lines(fixture_records(PINNED_NOW)[:2])) + "oops\n", encoding="utf-8")
    result = catalog_app.test_cli_runner().invoke(args=["content", "import", str(path), "--no-progress"])
    assert result.exit_code == 1, result.output  # the other lines imported; a script sees the rejection
    assert "inserted 2, updated 0, rejected 1" in result.output
    assert "line 3: rejected: invalid JSON" in result.output  # click's output holds stderr too


def test_a_line_with_a_lone_surrogate_is_rejected_and_the_others_imported(catalog_app, tmp_path):
    good = as_json_lines(fixture_records(PINNED_NOW)[:2])
    record = {**fixture_records(PINNED_NOW)[2], "description": "broken \ud800 text"}
    path = tmp_path / "surrogate.jsonl"
    path.write_text(good[0] + json.dumps(record) + "\n" + good[1], encoding="utf-8")  # the escape is ASCII
    result = catalog_app.test_cli_runner().invoke(args=["content", "import", str(path), "--no-progress"])
    assert result.exit_code == 1, result.output  # the other lines imported; a script sees the rejection
    assert "inserted 2, updated 0, rejected 1" in result.output
    assert "line 2: rejected: a string holds a lone surrogate" in result.output


def test_a_line_that_is_not_utf8_is_rejected_and_the_others_imported(catalog_app, tmp_path):
    good = [line.encode() for line in as_json_lines(fixture_records(PINNED_NOW)[:2])]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(good[0] + b'{"content_id": "caf\xe9"}\n' + good[1])
    result = catalog_app.test_cli_runner().invoke(args=["content", "import", str(path), "--no-progress"])
    assert result.exit_code == 1, result.output  # the other lines imported; a script sees the rejection
    assert "inserted 2, updated 0, rejected 1" in result.output
    assert "line 2: rejected: not UTF-8 text (byte 20 of the line)" in result.output
    assert "Traceback" not in result.output


def test_dates_with_an_offset_are_stored_in_utc(catalog_app):
    record = {**fixture_records(PINNED_NOW)[0], "date_posted": "2026-03-01T12:00:00+02:00"}
    import_lines(engine_of(catalog_app), [json.dumps(record)])
    item = catalog_app.test_client().get("/api/reels?date_range=all").json["data"]["reels"][0]
    assert item["date_posted"] == "2026-03-01T10:00:00Z"


def test_an_import_past_the_largest_32_bit_key_stops_clearly_and_writes_nothing(tmp_path):
    """SQLite's 64-bit rowids can pass 2**32 (PostgreSQL's integer ids stop at 2**31 - 1)."""
    from conftest import make_catalog_app

    catalog_app = make_catalog_app(f"sqlite:///{tmp_path}/c.db")
    records = fixture_records(PINNED_NOW)
    import_lines(engine_of(catalog_app), as_json_lines(records[:1]))
    with engine_of(catalog_app).begin() as conn:  # a row at the last key a feed can hold
        conn.execute(content.update().values(id=2**32 - 1))
    path = tmp_path / "more.jsonl"
    path.write_text("".join(as_json_lines(records[1:4])), encoding="utf-8")
    result = catalog_app.test_cli_runner().invoke(args=["content", "import", str(path), "--no-progress"])
    assert result.exit_code == 1
    assert f"would exceed {2**32 - 1}, the largest key random feeds hold" in result.output
    with engine_of(catalog_app).connect() as conn:
        assert conn.execute(select(content.c.id)).scalars().all() == [2**32 - 1]
