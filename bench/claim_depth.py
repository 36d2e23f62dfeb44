"""Redis time of one claim (the ``page`` script) by a session's depth.

    python -m bench.claim_depth [--depths 1000,10000,60000,200000,1000000] [--limits 24,100]
                                [--sessions 5] [--claims 20]

Starts its own redis-server (no persistence) and calls ``RedisSessionStore.serve_page`` directly,
with candidates as a feed makes them: the next ``limit + 1`` matching positions from the feed's
cursor (the page and its look-ahead item), the store taking the unseen ones. Two feeds:

* unfiltered: every position of a 1,000,000-key space matches (a 1M catalog, every item);
* selective: 10% of the positions of a 10,000,000-key space match (drawn at random, as a filter's
  matching keys fall in a session's keyed order), so a session can be 1,000,000 items deep in it.

Per feed, claim size and depth, ``--sessions`` sessions are brought to the depth in claims of
20,000 (the session's hash then holds what claims of a page would have left), then each makes
``--claims`` claims of a page, every row taking turns claim by claim. The server's time of
each claim is read from ``SLOWLOG`` (threshold 0: every command, with its duration in µs, and
the session key to tell the rows apart); ``INFO commandstats`` is not used because rows
interleave. A depth at or past 1,000,000 (``SESSION_MAX_ITEMS``, the most a session is served)
is measured on the claims that end at it.

60,000 is in the default depths because a feed's served positions are kept in blocks of 65,536
positions (``store/redis_store.py``): 60,000 items into an unfiltered feed is near the end of
its first block, where a block's container is largest.
"""
from __future__ import annotations

import argparse
import os
import statistics

import numpy as np

from .common import percentile, redis_server, redis_version

#: Items per claim while a session is brought to its depth.
CHUNK = 20_000
#: The largest depth a session can reach (SESSION_MAX_ITEMS's default).
MAX_ITEMS = 1_000_000


class Feed:
    """A feed's matching positions over a key space: what candidates_from would find."""

    def __init__(self, name: str, key_space: int, share: float, seed: int = 7) -> None:
        self.name = name
        self.key_space = key_space
        if share >= 1:
            self.positions = np.arange(key_space, dtype=np.int64)
        else:
            rng = np.random.default_rng(seed)
            self.positions = np.nonzero(rng.random(key_space) < share)[0].astype(np.int64)

    def candidates(self, cursor: int, count: int) -> tuple[list[int], int]:
        """The first ``count`` matching positions from ``cursor``, and the position examined up to."""
        start = int(np.searchsorted(self.positions, cursor))
        found = self.positions[start:start + count]
        if len(found) == count:
            return found.tolist(), int(found[-1]) + 1
        return found.tolist(), self.key_space


FEEDS = (("unfiltered, 1M key space", 1_000_000, 1.0), ("10% of a 10M key space", 10_000_000, 0.1))


def claim(store, session_id: str, feed: Feed, view, limit: int, create: bool = False):
    from viralspot.store import PageStatus

    candidates, scanned_to = feed.candidates(view.cursor, limit + 1)
    result = store.serve_page(session_id, b"r" + bytes(8), view, offset=view.served, limit=limit, max_ahead=1000,
                              candidates=candidates, scanned_to=scanned_to, create=create)
    if result.status is not PageStatus.SERVED:
        raise RuntimeError(f"{session_id}: {result.status.name}")
    return result.view


def bring_to(store, session_id: str, feed: Feed, depth: int):
    from viralspot.store import FeedView

    view = FeedView(os.urandom(8), (feed.key_space,))
    create = True
    while view.served < depth:
        view = claim(store, session_id, feed, view, min(CHUNK, depth - view.served), create)
        create = False
    return view


def measure(depths: list[int], limits: list[int], sessions: int, claims: int) -> dict:
    from viralspot.store.redis_store import ClientOptions, RedisSessionStore

    feeds = [Feed(name, space, share) for name, space, share in FEEDS]
    with redis_server("--slowlog-max-len", "1000000") as server:
        # The index entry is touched on a session's first call only: the timed claims run the page
        # script alone. A long socket timeout for the 20,000-item claims that bring sessions deep.
        store = RedisSessionStore(server.url, ttl=86400, max_items=MAX_ITEMS,
                                  options=ClientOptions(index_touch_interval=1e9, socket_timeout=30))
        client = store.client
        rows: dict[str, tuple[Feed, int, str]] = {}  # session id -> (feed, limit, depth label)
        views = {}
        for number, feed in enumerate(feeds):
            for limit in limits:
                for depth in [0, *depths]:
                    start = depth if depth + claims * limit <= MAX_ITEMS else MAX_ITEMS - claims * limit
                    label = ("new" if depth == 0 else f"{depth:,}" if start == depth
                             else f"{MAX_ITEMS:,} (claims ending there)")
                    for n in range(sessions):
                        session_id = f"c{number}-{limit}-{depth}-{n}"
                        rows[session_id] = (feed, limit, label)
                        views[session_id] = bring_to(store, session_id, feed, start) if start else None
        from viralspot.store import FeedView

        client.config_set("slowlog-log-slower-than", 0)
        client.slowlog_reset()
        for _turn in range(claims):
            for session_id, (feed, limit, _label) in rows.items():
                view = views[session_id]
                create = view is None
                if create:
                    view = FeedView(os.urandom(8), (feed.key_space,))
                views[session_id] = claim(store, session_id, feed, view, limit, create)
        client.config_set("slowlog-log-slower-than", 10_000)
        entries = client.slowlog_get(2_000_000)
        version = redis_version(server.url)
        sha = store._conn().scripts["page"].sha
        store.close()
    durations: dict[tuple[str, int, str], list[int]] = {}
    for entry in entries:
        command = entry["command"]
        parts = command.split(b" ") if isinstance(command, bytes) else command.split(" ")
        if len(parts) < 4 or parts[0].upper() not in (b"EVALSHA", "EVALSHA") or _text(parts[1]) != sha:
            continue
        session_id = _text(parts[3]).removeprefix("vs2:{").removesuffix("}")
        feed, limit, label = rows[session_id]
        durations.setdefault((feed.name, limit, label), []).append(int(entry["duration"]))
    expected = sessions * claims
    table = []
    for (name, limit, label), values in durations.items():
        if len(values) != expected:
            raise RuntimeError(f"{name}, {limit}, {label}: {len(values)} claims in SLOWLOG, not {expected}")
        table.append({"feed": name, "limit": limit, "depth": label, "n": len(values),
                      "p50": statistics.median(values), "p90": percentile(values, 0.9),
                      "mean": statistics.mean(values)})
    order = {(feed.name, limit, label): index
             for index, (feed, limit, label) in enumerate(dict.fromkeys(rows.values()))}
    table.sort(key=lambda row: order[(row["feed"], row["limit"], row["depth"])])
    return {"redis": version, "sessions": sessions, "claims": claims, "rows": table}


#: (the line of page.lua a stage ends before, the stage's name), in the script's order.
STAGES = (
    ("local containers = {}", "session and feed state read (HMGET of the meta and feed states)"),
    ("-- Whether a (canonical) position was served by another feed", "checks"),
    ("if total + #taken > max_items", "candidates taken (seen in other feeds)"),
    ("cursor = new_cursor", "containers read and appended to"),
    ("local positions = page(offset, math.min(need, served))", "the feed's state packed"),
    ("return reply(SERVED, positions, has_more or served > need)",
     "the page's positions read back from the containers, and HSET"),
)
STAGE_HASH = "bench:page-stages"
_STAMP = """
local __stamped = redis.call('TIME')
local __stages = {}
local function __stamp(name)
  local now = redis.call('TIME')
  __stages[#__stages + 1] = name
  __stages[#__stages + 1] = (tonumber(now[1]) - tonumber(__stamped[1])) * 1000000
    + tonumber(now[2]) - tonumber(__stamped[2])
  __stamped = now
end
local function __record()
  redis.call('HINCRBY', '%s', 'claims', 1)
  for i = 1, #__stages, 2 do redis.call('HINCRBY', '%s', __stages[i], __stages[i + 1]) end
end
""" % (STAGE_HASH, STAGE_HASH)
REPLY_STAGE = "reply: PEXPIRE (and the index touch when due)"


def stamped_page_source() -> str:
    """``page.lua`` with a ``TIME`` stamp before each of ``STAGES``' lines; the last return also
    stamps the reply's making and adds the stage sums to ``STAGE_HASH``."""
    from viralspot.store.redis_store import _script_source

    shebang, *lines = _script_source("page").split("\n")  # the text the store runs
    out = []
    for anchor, name in STAGES:
        index = next((i for i, line in enumerate(lines) if line.startswith(anchor)), None)
        if index is None:
            raise LookupError(f"page.lua no longer has the line {anchor!r}: update STAGES in {__file__}")
        out.extend(lines[:index])
        out.append(f"__stamp({name!r})")
        lines = lines[index:]
    final = lines[0]
    expression = final.removeprefix("return ")
    out.append(f"local __reply = {expression}")
    out.append(f"__stamp({REPLY_STAGE!r})")
    out.append("__record()")
    out.append("return __reply")
    out.extend(lines[1:])
    # The stamp helpers go first, after the shebang (no goto in Lua 5.1).
    return shebang + _STAMP + "\n".join(out)


def stages(depths: list[int], limit: int, sessions: int, claims: int) -> dict:
    """Server µs per claim in each stage of ``page.lua``, unfiltered feed, claims of ``limit``, by depth."""
    from viralspot.store.redis_store import ClientOptions, RedisSessionStore

    with redis_server() as server:
        store = RedisSessionStore(server.url, ttl=86400, max_items=MAX_ITEMS,
                                  options=ClientOptions(index_touch_interval=1e9, socket_timeout=30))
        try:
            return stages_on(store, depths, limit, sessions, claims)
        finally:
            store.close()


def stages_on(store, depths: list[int], limit: int, sessions: int, claims: int) -> dict:
    """``stages`` on ``store`` (a ``RedisSessionStore``), whose page script is the stamped copy meanwhile."""
    feed = Feed(*FEEDS[0])
    client = store.client
    table = {}
    for depth in depths:
        start = depth if depth + claims * limit <= MAX_ITEMS else MAX_ITEMS - claims * limit
        views = {f"s-{depth}-{n}": bring_to(store, f"s-{depth}-{n}", feed, start) for n in range(sessions)}
        connection = store._conn()
        original = connection.scripts["page"]
        connection.scripts["page"] = client.register_script(stamped_page_source())
        client.delete(STAGE_HASH)
        try:
            for _turn in range(claims):
                for session_id, view in views.items():
                    views[session_id] = claim(store, session_id, feed, view, limit)
        finally:
            connection.scripts["page"] = original
        sums = {_text(key): int(value) for key, value in client.hgetall(STAGE_HASH).items()}
        count = sums.pop("claims")
        table[f"{depth:,}"] = {name: sums.get(name, 0) / count for name in [*(s for _a, s in STAGES), REPLY_STAGE]}
    return table


def stages_markdown(table: dict, limit: int) -> str:
    depths = list(table)
    lines = [f"Inside one claim of {limit} (unfiltered feed; `TIME` stamps, about 1 µs each, counted in the stage "
             "they end), µs per claim by items served before it:\n",
             "| stage | " + " | ".join(depths) + " |", "|---|" + "---:|" * len(depths)]
    for name in next(iter(table.values())):
        lines.append(f"| {name} | " + " | ".join(f"{table[d][name]:.0f}" for d in depths) + " |")
    lines.append("| total | " + " | ".join(f"{sum(table[d].values()):.0f}" for d in depths) + " |")
    return "\n".join(lines)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def markdown(result: dict) -> str:
    lines = [f"redis-server {result['redis']}; per row {result['sessions']} sessions x {result['claims']} claims "
             "(rows taking turns); µs of the `page` script from SLOWLOG.\n",
             "| feed | items per claim | items served before the claim | claims | p50 µs | p90 µs | mean µs | "
             "p50 / p50 at 1,000 |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    base = {(row["feed"], row["limit"]): row["p50"] for row in result["rows"] if row["depth"] == "1,000"}
    for row in result["rows"]:
        lines.append(f"| {row['feed']} | {row['limit']} | {row['depth']} | {row['n']} | {row['p50']:.0f} | "
                     f"{row['p90']:.0f} | {row['mean']:.1f} | {row['p50'] / base[(row['feed'], row['limit'])]:.2f} |")
    lines.append("")
    for (feed, limit), p50 in base.items():
        deepest = [row for row in result["rows"] if row["feed"] == feed and row["limit"] == limit
                   and row["depth"].startswith(f"{MAX_ITEMS:,}")]
        if deepest:
            lines.append(f"- {feed}, claims of {limit}: p50 at 1M / p50 at 1k = **{deepest[0]['p50'] / p50:.2f}** "
                         f"(target <= 1.5)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1000,10000,60000,200000,1000000")
    parser.add_argument("--limits", default="24,100", help="items per claim")
    parser.add_argument("--sessions", type=int, default=5, help="sessions per row")
    parser.add_argument("--claims", type=int, default=20, help="timed claims per session")
    parser.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the stages inside the script (a stamped copy of page.lua)")
    args = parser.parse_args(argv)
    result = measure([int(d) for d in args.depths.split(",")], [int(n) for n in args.limits.split(",")],
                     args.sessions, args.claims)
    print(markdown(result))
    if args.stages:
        limit = max(int(n) for n in args.limits.split(","))
        print()
        try:
            table = stages([int(d) for d in args.depths.split(",")], limit, args.sessions, args.claims)
        except LookupError as error:
            print(f"(No stage timings: {error}.)")
        else:
            print(stages_markdown(table, limit))
    return result


if __name__ == "__main__":
    main()
