"""`make bench`: every benchmark, with the date and the machine, as markdown tables for the README.

    python -m bench.run [--quick]

``--quick`` runs the smallest sizes and short loads (a smoke run, not the README figures).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform

from . import claim_script_cost, load, plain_page, random_feed, redis_memory, round_trip_share, snapshot_update


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({model}){memory}, Python {platform.python_version()}, {platform.system()}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = (10_000,) if args.quick else (10_000, 100_000, 1_000_000)
    print(f"# viralspot benchmarks, {datetime.date.today().isoformat()}, {machine()}\n")
    print("### Plain (non-random) page latency (24 items, Flask test client, SQLite)\n")
    print(plain_page.markdown(plain_page.measure((sizes[0], sizes[-1]) if len(sizes) > 1 else sizes)))
    random_feed.main(["--sizes", ",".join(map(str, sizes)), "--seconds", "3" if args.quick else "10"])
    print()
    redis_memory.main(["--quick"] if args.quick else [])
    print()
    round_trip_share.main(["--rounds", "1", "--seconds", "3", "--size", "10000"] if args.quick else [])
    print()
    claim_script_cost.main(["--sessions", "5", "--pages", "5", "--repeats", "1"] if args.quick else [])
    print()
    # 1,000 edits and 1,000 new items are more than a snapshot appends (1,000 items, or 1/16 of a
    # larger base) to a 10k catalog's: the quick run changes 200 and adds 200, so it measures an append.
    snapshot_update.main(["--size", str(sizes[-1])] + (["--edits", "200", "--new", "200"] if args.quick else []))
    print()
    if load.main(["--seconds", "5", "--size", "10000"] if args.quick else ["--seconds", "30"]):
        raise SystemExit("the load benchmark found errors, repeats or wrong cleared counts")


if __name__ == "__main__":
    main()
