"""Redis memory of sessions: per session of one page, and per served item as sessions grow.

    python -m bench.redis_memory [--sizes 240,2000,2400,24000] [--one-page-sessions 4000] [--items-per-row 960000]

Starts its own redis-server (no persistence) and serves pages of 24 through
``RedisSessionStore.serve_page``, with candidates as a feed makes them (the next 25 matching
positions from the feed's cursor: the page and its look-ahead item), over a 1,000,000-key space:

* unfiltered: every position matches, so a feed serves positions 0, 1, 2, ...;
* selective: 10% of the positions match, drawn at random (as a filter's matching keys fall in a
  session's keyed order), so a feed's positions are spread ten times wider. (Every session of a
  row draws the same positions: the layout of its hash, not which positions, sets its size.)

Reported: the change of ``INFO memory`` ``used_memory`` over all the sessions of a row (after
``FLUSHALL``), per session and per served item: it counts the session's hash, the key's TTL and
dictionary entries and its entry in the ``vs2:active`` index, which each session's first page
writes. Beside it, ``MEMORY USAGE <key> SAMPLES 0`` of one session's hash, per item.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from .common import redis_server, redis_version

KEY_SPACE = 1_000_000
PAGE = 24
SELECTIVITY = 0.10
#: Served items in all the sessions of a row (at least), so used_memory's noise is small beside it: with
#: 96,000, the 2,000-item row of an unfiltered feed (48 sessions, 22 KB in all) read 469 bytes a session in
#: two runs, less than its hash's own MEMORY USAGE (740); with 960,000 (480 sessions), 984.
ITEMS_PER_ROW = 960_000
FEED = b"r" + bytes.fromhex("0123456789abcdef")


def matching_positions(share: float, seed: int) -> np.ndarray:
    if share >= 1:
        return np.arange(KEY_SPACE, dtype=np.int64)
    return np.nonzero(np.random.default_rng(seed).random(KEY_SPACE) < share)[0].astype(np.int64)


def serve(store, session_id: str, positions: np.ndarray, items: int) -> int:
    """Serve ``items`` items of a new session in pages of 24 (the last one shorter); items served."""
    from viralspot.store import FeedView, PageStatus

    view = FeedView(os.urandom(8), (KEY_SPACE,))
    index = 0
    while view.served < items:
        limit = min(PAGE, items - view.served)
        index = int(np.searchsorted(positions, view.cursor))
        candidates = positions[index:index + limit + 1].tolist()
        scanned_to = candidates[-1] + 1 if len(candidates) == limit + 1 else KEY_SPACE
        result = store.serve_page(session_id, FEED, view, offset=view.served, limit=limit, max_ahead=1000,
                                  candidates=candidates, scanned_to=scanned_to, create=view.served == 0)
        if result.status is not PageStatus.SERVED:
            raise RuntimeError(f"{session_id}: {result.status.name}")
        view = result.view
    return view.served


def measure(sizes: list[int], one_page_sessions: int, items_per_row: int = ITEMS_PER_ROW) -> dict:
    from viralspot.store.redis_store import RedisSessionStore, session_key

    rows = []
    with redis_server() as server:
        store = RedisSessionStore(server.url, ttl=86400)
        client = store.client
        store.reset_notices.subscribed.wait(10)  # its connection made before any reading
        for feed, share in (("unfiltered", 1.0), (f"selective ({SELECTIVITY:.0%} of positions match)", SELECTIVITY)):
            for items in [PAGE, *sizes]:
                sessions = one_page_sessions if items == PAGE else max(2, items_per_row // items)
                if items > share * KEY_SPACE:
                    continue
                serve(store, "warm-up", np.arange(PAGE + 1), PAGE)  # scripts loaded, buffers grown
                client.flushall()
                before = int(client.info("memory")["used_memory"])
                ids = [f"m-{items}-{n}" for n in range(sessions)]
                positions = matching_positions(share, items)
                for session_id in ids:
                    served = serve(store, session_id, positions, items)
                    assert served == items, (session_id, served)
                after = int(client.info("memory")["used_memory"])
                usage = [client.memory_usage(session_key(session_id), samples=0) for session_id in ids[:50]]
                encoding = client.object("encoding", session_key(ids[0]))
                rows.append({"feed": feed, "items": items, "sessions": sessions,
                             "per_session": (after - before) / sessions,
                             "per_item": (after - before) / (sessions * items),
                             "usage_per_session": sum(usage) / len(usage),
                             "encoding": encoding.decode() if isinstance(encoding, bytes) else encoding,
                             "index_entries": client.zcard("vs2:active")})
        version = redis_version(server.url)
        store.close()
    return {"redis": version, "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"redis-server {result['redis']}, pages of {PAGE} over a {KEY_SPACE:,}-key space; used_memory change "
             "over all of a row's sessions (hash, TTL, key dictionary, index entry).\n",
             "| feed | items per session | sessions | used_memory per session, bytes | used_memory per served item, "
             "bytes | MEMORY USAGE of the hash, bytes per item | hash encoding |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in result["rows"]:
        lines.append(f"| {row['feed']} | {row['items']:,} | {row['sessions']:,} | {row['per_session']:,.0f} | "
                     f"{row['per_item']:.2f} | {row['usage_per_session'] / row['items']:.2f} | {row['encoding']} |")
    one_page = [row for row in result["rows"] if row["items"] == PAGE]
    at_2000 = [row for row in result["rows"] if row["items"] == 2000]
    lines.append("")
    for row in one_page:
        lines.append(f"- {row['feed']}: **{row['per_session']:.0f} bytes** per session of one {PAGE}-item page, "
                     "index entry included (target <= 600)")
    for row in at_2000:
        lines.append(f"- {row['feed']}: **{row['per_item']:.2f} bytes** per served item at 2,000 items per session "
                     "(target <= 4; stretch 2)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="240,2000,2400,24000", help="items per session, beside one page of 24")
    parser.add_argument("--one-page-sessions", type=int, default=4000)
    parser.add_argument("--items-per-row", type=int, default=ITEMS_PER_ROW,
                        help="served items in a row's sessions together (its sessions: this / items per session)")
    args = parser.parse_args(argv)
    result = measure([int(size) for size in args.sizes.split(",")], args.one_page_sessions, args.items_per_row)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
