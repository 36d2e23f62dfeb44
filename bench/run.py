"""`make bench`: every benchmark, with the date, the code and the machine, as markdown tables.

    python -m bench.run [--quick] [--only page_depth,claim_depth,...]

``--quick`` runs small sizes and short loads (a smoke run of a few minutes, not the README
figures, about 2 minutes): a 100,000-item catalog where the full run uses 1,000,000. The full run
takes about 6 minutes once the catalogs exist (seeding the 1,000,000-item one adds about a minute,
once).
bench/README.md says what each benchmark measures.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import time

from . import (claim_depth, cpu_per_page, load, page_depth, page_profile, plain_page, redis_memory,
               snapshot_update, weighted_page)
from .common import ROOT, load_average

#: name -> (title, quick arguments, full arguments)
BENCHMARKS = {
    "page_depth": ("Random page latency by depth (pages of 100)",
                   ["--size", "100000", "--depths", "1000,10000,50000,100000", "--sessions", "3", "--pages", "10"], []),
    "claim_depth": ("Redis time of one claim by depth", ["--sessions", "2", "--claims", "10"], []),
    "cpu_per_page": ("CPU per random page against the serialization ceiling (3 gunicorn workers, Redis)",
                     ["--size", "100000", "--rounds", "2", "--seconds", "3"], []),
    "page_profile": ("Where a random page's CPU goes in a worker", ["--size", "100000", "--pages", "1000"], []),
    "redis_memory": ("Redis memory per session and per served item",
                     ["--one-page-sessions", "1000", "--items-per-row", "96000"], []),
    "plain_page": ("Plain (non-random) page latency (24 items, Flask test client, SQLite)", ["10000"],
                   ["10000", "1000000"]),
    "weighted_page": ("Weighted against uniform random pages (Flask test client, Redis)",
                      ["--sizes", "10000,100000", "--sessions", "3", "--pages", "10", "--fresh-apps", "1"], []),
    "snapshot_update": ("Item snapshot after a catalog write", ["--size", "10000", "--edits", "200", "--new", "200"],
                        []),
    "load": ("Load: random feeds from many sessions, 3 gunicorn workers over Redis",
             ["--seconds", "5", "--size", "10000"], ["--seconds", "30"]),
}


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


def code_version() -> str:
    """The commit the benchmarks run on, and whether the work tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "viralspot"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return f"commit {commit}" + (" with uncommitted changes under viralspot/" if dirty else "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help=f"comma list of: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    chosen = [name for name in BENCHMARKS if not args.only or name in args.only.split(",")]
    modules = {"page_depth": page_depth, "claim_depth": claim_depth, "cpu_per_page": cpu_per_page,
               "page_profile": page_profile, "redis_memory": redis_memory, "plain_page": plain_page,
               "weighted_page": weighted_page, "snapshot_update": snapshot_update,
               "load": load}
    print(f"# viralspot benchmarks{' (--quick)' if args.quick else ''}, {datetime.date.today().isoformat()}, "
          f"{code_version()}\n\n{machine()}; load average at the start {load_average()}\n", flush=True)
    failed = []
    for name in chosen:
        title, quick, full = BENCHMARKS[name]
        started = time.perf_counter()
        print(f"## {title}\n\n`python -m bench.{name} {' '.join(quick if args.quick else full)}`\n", flush=True)
        if name == "plain_page":
            sizes = tuple(int(size) for size in (quick if args.quick else full))
            print(plain_page.markdown(plain_page.measure(sizes)))
        elif name == "load":
            if load.main(quick if args.quick else full):
                failed.append(name)
        else:
            modules[name].main(quick if args.quick else full)
        print(f"\n({time.perf_counter() - started:.0f} s)\n", flush=True)
    if failed:
        raise SystemExit(f"failed checks: {', '.join(failed)}")


if __name__ == "__main__":
    main()
