"""The line a family of backends (the catalog's databases, the session stores) adds to pytest's
summary: which of them the run's tests used, and why each of the others was not."""
from __future__ import annotations

from typing import Iterable


def summary_line(family: str, backends: Iterable[str], used: set[str], notes: dict[str, str], tests: str) -> str:
    """``<family> backends tested: a, b; c not tested (<why>)``; ``tests`` names the tests that
    would have used them (for a run that used none)."""
    backends = list(backends)
    tested = [name for name in backends if name in used]
    line = f"{family} backends tested: {', '.join(tested) if tested else f'none (no {tests} test ran)'}"
    untested = [f"{name} not tested ({notes.get(name, 'not selected')})" for name in backends if name not in used]
    if untested and tested:
        line += "; " + "; ".join(untested)
    return line
