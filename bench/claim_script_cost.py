"""What the claim script costs Redis: by a session's depth, against a script that does nothing, and
by stage inside the script.

    python -m bench.claim_script_cost [--sessions 40] [--pages 20] [--repeats 3]

Starts its own ``redis-server`` (no persistence) on a free 127.0.0.1 port. ``sessions`` sessions
page through ``pages`` pages of 24 (random keys of a 1M key space, each page one claim as the random
feed makes it: ``bench.redis_memory.serve_page``), depth by depth; ``INFO commandstats`` around each
depth gives the server's microseconds per claim. A session's first page also creates the session
and touches the sessions index (a second script); the later depths run the claim alone.

Beside it, with 3 keys and arguments of the claim's sizes: a script that returns at once, and the
scripts' shared prelude (``_common.lua``) followed by a return.

Then the same claims run through a copy of ``claim.lua`` with a ``TIME`` stamp between its stages,
summed per stage in a side hash: where a claim's time goes. Each stamp costs about a microsecond,
counted in the stage it ends. A stage's anchor line missing from ``claim.lua`` stops the benchmark
(the script changed: update ``STAGES``).
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
from importlib import resources

from .redis_memory import KEY_SPACE, PAGE, _commands, redis_server, serve_page

#: (the line of claim.lua a stage ends before, the stage's name), in the script's order.
STAGES = (
    ("local values = redis.call('HMGET', meta, 'g', 'n', state_field, served_field)", "reading the arguments"),
    ("-- A resend of a claim already applied", "the session's HMGET and feed state"),
    ("local now = now_ms()", "the compare-and-set"),
    ("local before = #served / 4", "session and feed set-up"),
    ("local claimed, taken, buckets = {}, {}, nil", "the seen set's read"),
    ("if #claimed > 0 then", "the walk over the candidates"),
    ("local exhausted = 0", "the seen set's write"),
    ("redis.call('PEXPIRE', meta, ttl)", "the meta write"),
    ("return {1, #served / 4, exhausted, has_more", "the two PEXPIREs"),
)
STAGE_HASH = "bench:claim-stages"
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
"""
_RECORD = (f"redis.call('HINCRBY', '{STAGE_HASH}', 'claims', 1)\n"
           f"for i = 1, #__stages, 2 do redis.call('HINCRBY', '{STAGE_HASH}', __stages[i], __stages[i + 1]) end\n")


def _lua(name: str) -> str:
    return resources.files("viralspot.store").joinpath("lua", name).read_text(encoding="utf-8")


def stamped_claim_source() -> str:
    """``claim.lua`` (with its prelude) with a ``TIME`` stamp before each of ``STAGES``' lines and
    the stage sums added to ``STAGE_HASH`` before the successful claim's return."""
    lines = _lua("claim.lua").split("\n")
    out = []
    for anchor, name in STAGES:
        index = next((i for i, line in enumerate(lines) if line.startswith(anchor)), None)
        if index is None:
            raise SystemExit(f"claim.lua no longer has the line {anchor!r}: update STAGES in {__file__}")
        out.extend(lines[:index])
        out.append(f"__stamp({name!r})")
        if name == STAGES[-1][1]:
            out.append(_RECORD)
        lines = lines[index:]
    out.extend(lines)
    return _lua("_common.lua") + "\n" + _STAMP + "\n".join(out)


def _script_usec(client) -> tuple[int, int]:
    """(scripts run, microseconds the server spent in them), from ``redis_memory._commands``."""
    scripts, _commands_run, usec = _commands(client)
    return scripts, usec


def by_depth(store, sessions: int, pages: int, seed: int) -> list[float]:
    """Server µs per claim at each depth (page 1 .. ``pages``) of ``sessions`` sessions served depth by depth."""
    rng = random.Random(seed)
    keys = {f"cost-{seed}-{n}": rng.sample(range(1, KEY_SPACE + 1), pages * PAGE + 1) for n in range(sessions)}
    client = store.client
    costs = []
    for page in range(pages):
        calls, usec = _script_usec(client)
        for session, session_keys in keys.items():
            serve_page(store, session, session_keys, page * PAGE)
        after_calls, after_usec = _script_usec(client)
        costs.append((after_usec - usec) / max(1, after_calls - calls) if page else (after_usec - usec) / sessions)
    return costs


def baseline(client, source: str, calls: int = 2000) -> float:
    """Server µs per call of ``source`` run with 3 keys and 16 arguments of the claim's sizes."""
    sha = client.script_load(source)
    args = ["reels:0123456789abcdef0123456789abcdef", 0, 0, "1", "w:1:1000001", "w:1:1000001", 1_000_000,
            bytes(12 * (PAGE + 1)), 25, PAGE, 0, PAGE, 86_400_000, 64, "0123456789abcdef", ""]
    before = _script_usec(client)
    for number in range(calls):
        client.evalsha(sha, 3, f"vs:{{b{number}}}:m", f"vs:{{b{number}}}:k", f"vs:{{b{number}}}:r", *args)
    after = _script_usec(client)
    return (after[1] - before[1]) / (after[0] - before[0])


def stages(store, sessions: int, pages: int, seed: int) -> dict[str, float]:
    """Server µs per claim in each stage, the claims run through ``stamped_claim_source``."""
    connection = store._conn()
    original = connection.scripts["claim"]
    connection.scripts["claim"] = connection.client.register_script(stamped_claim_source())
    connection.client.script_load(connection.scripts["claim"].script)
    client = store.client
    client.delete(STAGE_HASH)
    try:
        by_depth(store, sessions, pages, seed)
    finally:
        connection.scripts["claim"] = original
    sums = {key.decode(): int(value) for key, value in client.hgetall(STAGE_HASH).items()}
    claims = sums.pop("claims")
    return {name: sums.get(name, 0) / claims for _anchor, name in STAGES}


def measure(sessions: int, pages: int, repeats: int, binary: str) -> dict:
    from viralspot.store.redis_store import ClientOptions, RedisSessionStore

    results: dict = {"depths": [], "nothing": [], "prelude": [], "stages": []}
    with redis_server(binary) as url:
        # Each session's index entry touched once (its first page), so later depths run the claim alone.
        store = RedisSessionStore(url, ttl=86400, options=ClientOptions(index_touch_interval=1e9))
        client = store.client
        results["version"] = client.info("server")["redis_version"]
        by_depth(store, 2, 2, seed=0)  # warm-up: scripts loaded, buffers grown
        for repeat in range(repeats):
            client.flushall()
            results["depths"].append(by_depth(store, sessions, pages, seed=repeat + 1))
            results["nothing"].append(baseline(client, "return 1"))
            results["prelude"].append(baseline(client, _lua("_common.lua") + "\nreturn 1"))
            client.flushall()
            results["stages"].append(stages(store, sessions, pages, seed=repeat + 1))
        store.close()
    return results


def markdown(results: dict, sessions: int, pages: int) -> str:
    depths = [statistics.median(run[page] for run in results["depths"]) for page in range(pages)]
    shown = sorted({1, 2, 5, 10, pages} & set(range(1, pages + 1)))
    lines = [f"#### The claim script's cost in Redis (redis-server {results['version']}; {sessions} sessions of "
             f"{pages} pages of 24, median of {len(results['depths'])} runs; `INFO commandstats`)\n",
             "| script | µs per call |", "|---|---:|"]
    lines.append(f"| claim, a session's page 1 (creates the session; with the index touch, per page) "
                 f"| {depths[0]:.1f} |")
    lines.extend(f"| claim, page {page} | {depths[page - 1]:.1f} |" for page in shown if page > 1)
    lines.append(f"| a script that returns at once | {statistics.median(results['nothing']):.1f} |")
    lines.append(f"| the shared prelude, then a return | {statistics.median(results['prelude']):.1f} |")
    lines += ["", f"Inside a claim (pages 1 to {pages}; `TIME` stamps, about 1 µs each counted in its stage):",
              "", "| stage | µs per claim |", "|---|---:|"]
    for _anchor, name in STAGES:
        lines.append(f"| {name} | {statistics.median(run[name] for run in results['stages']):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "/usr/bin/redis-server")
    args = parser.parse_args(argv)
    print(markdown(measure(args.sessions, args.pages, args.repeats, args.redis_server), args.sessions, args.pages))


if __name__ == "__main__":
    main()
