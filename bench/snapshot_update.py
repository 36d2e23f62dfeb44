"""Item snapshot upkeep: what a catalog write costs the snapshot (an append) against a whole write.

    python -m bench.snapshot_update [--size 1000000] [--edits 1000] [--new 1000]

On a copy of the cached catalog (``common.catalog``; the cache is
never written): the snapshot is written whole, then ``--edits`` existing items
get a new description and ``--new`` items are added through the importer (the
writer the service uses, in chunks of its own size), and the snapshot is brought
to the new state: it appends the changed items. Reported: seconds and bytes of
each, how long a process takes to map the grown file, and a check that every
changed item and a random sample read from the snapshot equal the database's.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from viralspot.catalog.database import create_schema, make_engine
from viralspot.catalog.importer import import_lines
from viralspot.catalog.item_snapshot import ItemSnapshot, update_snapshot
from viralspot.catalog.queries import catalog_state
from viralspot.catalog.rendering import joined_item_fragments
from viralspot.catalog.tables import content

from .common import catalog, catalog_path


def _records(engine, size: int, edits: int, new: int) -> tuple[list[str], list[int]]:
    """JSON lines editing ``edits`` random items and adding ``new`` ones; the edited keys."""
    keys = sorted(random.Random(7).sample(range(1, size + 1), edits))
    columns = (content.c.id, content.c.content_id, content.c.shortcode, content.c.content_type,
               content.c.date_posted, content.c.username)
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(content.c.id.in_(keys))).all()
    lines = []
    for row in rows:
        lines.append(json.dumps({"content_id": row.content_id, "shortcode": row.shortcode,
                                 "content_type": row.content_type, "username": row.username,
                                 "date_posted": row.date_posted.isoformat() + "Z",
                                 "description": f"edited by the benchmark {row.id}"}))
    template = rows[0]
    for i in range(new):
        lines.append(json.dumps({"content_id": f"bench-new-{i}", "shortcode": f"BENCHNEW{i}",
                                 "content_type": template.content_type, "username": template.username,
                                 "date_posted": template.date_posted.isoformat() + "Z",
                                 "description": f"added by the benchmark {i}"}))
    return lines, keys


def measure(size: int, edits: int, new: int) -> dict:
    catalog(size)
    with tempfile.TemporaryDirectory(prefix="viralspot-snapshot-bench-") as scratch:
        database = Path(scratch) / "catalog.db"
        shutil.copyfile(catalog_path(size), database)
        engine = make_engine(f"sqlite:///{database}")
        try:
            create_schema(engine)  # adds content.item_version and its index to a catalog cached before it
            directory = Path(scratch) / "snapshots"
            started = time.perf_counter()
            with engine.connect() as conn:
                whole = update_snapshot(conn, directory)
            whole_seconds = time.perf_counter() - started
            lines, edited = _records(engine, size, edits, new)
            started = time.perf_counter()
            report = import_lines(engine, lines)
            import_seconds = time.perf_counter() - started
            started = time.perf_counter()
            with engine.connect() as conn:
                appended = update_snapshot(conn, directory)
            append_seconds = time.perf_counter() - started
            started = time.perf_counter()
            snapshot = ItemSnapshot(appended.path)
            map_seconds = time.perf_counter() - started
            with engine.connect() as conn:
                state = catalog_state(conn)
                sample = random.Random(8).sample(range(1, state.largest_key + 1), 2_000)
                checked = edited + list(range(size + 1, state.largest_key + 1)) + sample
                for start in range(0, len(checked), 500):
                    keys = checked[start:start + 500]
                    expected, count = joined_item_fragments(conn, keys)
                    if snapshot.joined(keys) != (expected.encode(), count):
                        raise RuntimeError("the appended snapshot differs from the database")
            equal = snapshot.state == state and snapshot.items == size + new
            snapshot.close()
        finally:
            engine.dispose()
    if whole.action != "written" or appended.action != "appended" or not equal:
        raise RuntimeError(f"unexpected snapshot updates: {whole.action}, {appended.action}, equal={equal}")
    return {"size": size, "whole_seconds": whole_seconds, "whole_bytes": whole.bytes,
            "edits": report.updated, "new": report.inserted, "import_seconds": import_seconds,
            "append_items": appended.items, "append_seconds": append_seconds, "append_bytes": appended.bytes,
            "map_ms": map_seconds * 1000, "checked": len(checked)}


def markdown(row: dict) -> str:
    return "\n".join([
        "| catalog | whole write | import (edits + new) | append after it | map the grown file |",
        "|---:|---:|---:|---:|---:|",
        f"| {row['size']:,} | {row['whole_seconds']:.1f} s, {row['whole_bytes'] / 1e6:,.0f} MB "
        f"| {row['edits']:,} + {row['new']:,} in {row['import_seconds']:.1f} s "
        f"| {row['append_items']:,} items, {row['append_bytes'] / 1e6:.2f} MB in {row['append_seconds'] * 1000:,.0f} ms "
        f"| {row['map_ms']:.0f} ms |",
        "",
        f"Checked after the append: {row['checked']:,} items read from the snapshot equal the database's.",
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--edits", type=int, default=1_000)
    parser.add_argument("--new", type=int, default=1_000)
    args = parser.parse_args(argv)
    print("### Item snapshot after a catalog write (SQLite)\n")
    print(markdown(measure(args.size, args.edits, args.new)))


if __name__ == "__main__":
    main()
