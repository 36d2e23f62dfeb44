"""Fuzzing every operation of /api/openapi.json with schemathesis, in-process (WSGI, no server).

schemathesis reads the description the app serves and, for each operation, sends
the examples it declares, boundary cases of every argument (its coverage phase)
and ``MAX_EXAMPLES`` generated requests, valid and invalid (positive and negative
modes). Every response must be no 5xx and conform to the description: a
documented status code, the documented content type, a body matching the
documented schema (the error envelope with an ``error_code`` of that status, or
the success body).

The catalog is a seeded one (300 items, seed 7) on each backend (SQLite; PostgreSQL
as the other catalog tests: skipped without it, a failure under CI), so filters,
sorts and random pages reach real rows. ``derandomize`` makes a run the same
requests every time: 1,413 cases per backend when this was written
(``test_fuzzing_case_count`` prints the count and status codes per operation), in
about 10-15 s for both backends on two cores.

Findings, each fixed at the root with a regression test here:
* a NUL character in a text argument (``search``, a comma list) was a 500 on
  PostgreSQL ("text fields cannot contain NUL"); it is a 400 ``INVALID_PARAMETER``
  (``args._reject_nul``).
"""
from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from viralspot import create_app
from viralspot.api import EXAMPLE_SESSION_ID

MAX_EXAMPLES = 50
SEED_ITEMS = 300
#: The session the description's examples name (``session_id`` example): it exists in the fuzzed app,
#: so the examples phase also gets the 200 of ``GET /api/sessions/{session_id}``.
EXAMPLE_SESSION = EXAMPLE_SESSION_ID
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Fewest cases a run generates per backend (about 1,400 when this was written).
MIN_CASES = 1000

#: The description is loaded once, at collection, from an app with an empty in-memory catalog;
#: the requests go to ``fuzz_app`` (a seeded catalog), passed to each call.
_SPEC_APP = create_app({"CONFIG": "testing"})
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", _SPEC_APP)

#: (backend, operation) -> status code -> responses
_statuses: dict[tuple[str, str], collections.Counter[int]] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module")
def fuzz_app(module_database_backend, module_database_url):
    app = create_app({"CONFIG": "testing", "DATABASE_URL": module_database_url})
    result = app.test_cli_runner().invoke(args=["content", "seed", "--items", str(SEED_ITEMS), "--seed", "7"])
    assert result.exit_code == 0, result.output
    _serve_the_example_session_a_page(app)
    app.config["FUZZ_BACKEND"] = module_database_backend
    yield app
    app.extensions["viralspot.catalog"].dispose()
    app.extensions["viralspot.session_store"].close()


def _serve_the_example_session_a_page(app):
    """After a reset: the fuzzed random pages may have filled the session's feeds (``SESSION_MAX_FEEDS``)."""
    assert app.test_client().post("/api/reset-session", query_string={"session_id": EXAMPLE_SESSION}).status_code == 200
    response = app.test_client().get("/api/reels", query_string={"random_order": "true",
                                                                 "session_id": EXAMPLE_SESSION})
    assert response.status_code == 200, response.get_json()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_api(case, fuzz_app):
    if case.operation.path == "/api/sessions/{session_id}":
        # The example session exists whatever ran before (in any order): a fuzzed reset of it forgets it.
        _serve_the_example_session_a_page(fuzz_app)
    response = case.call_and_validate(app=fuzz_app, checks=CHECKS)
    _statuses[(fuzz_app.config["FUZZ_BACKEND"], case.operation.label)][response.status_code] += 1


@pytest.mark.after("test_api")
def test_fuzzing_case_count(module_database_backend):
    """The README's number: how many requests a run sends (``after``, conftest.py: it runs after
    ``test_api`` on its backend, in whatever order the tests come)."""
    statuses = {label: dict(counter) for (backend, label), counter in _statuses.items()
                if backend == module_database_backend}
    if not statuses:
        pytest.skip("test_api did not run in this session")
    total = sum(sum(counter.values()) for counter in statuses.values())
    assert total >= MIN_CASES, statuses
    # Every operation of the description was fuzzed (the description's own URL is what schemathesis reads),
    # and each answered a 200 at least once: its success body was checked against the description.
    expected = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items()
                for method in item if method in ("get", "post")} - {"GET /api/openapi.json"}
    assert expected <= set(statuses), expected - set(statuses)
    assert all(200 in statuses[label] for label in expected), {label: statuses[label] for label in expected
                                                               if 200 not in statuses[label]}
    print(f"{module_database_backend}: {total} fuzzing cases; status codes per operation: {statuses}")


# --- regressions: what the fuzzing found -----------------------------------------------------------

@pytest.mark.parametrize("query", [
    {"search": "a\x00b"},
    {"keywords": "sunset,\x00"},
    {"primary_categories": "\x00"},
    {"excluded_usernames": "x\x00y"},
    {"languages": "en\x00"},
])
@pytest.mark.parametrize("path", ["/api/reels", "/api/posts"])
def test_nul_character_in_a_text_argument_is_a_400(fuzz_app, path, query):
    """Found by fuzzing: PostgreSQL answered "text fields cannot contain NUL (0x00) bytes" -> 500."""
    response = fuzz_app.test_client().get(path, query_string=query)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error_code"] == "INVALID_PARAMETER"
    assert body["detail"].startswith(f"{next(iter(query))}: must not contain NUL")


def test_nul_character_in_a_session_id_keeps_its_own_error_code(fuzz_app):
    client = fuzz_app.test_client()
    response = client.post("/api/reset-session", query_string={"session_id": "a\x00b"})
    assert (response.status_code, response.get_json()["error_code"]) == (400, "INVALID_FORMAT")
    response = client.get("/api/reels", query_string={"random_order": "true", "session_id": "a\x00b"})
    assert (response.status_code, response.get_json()["error_code"]) == (400, "INVALID_FORMAT")


def test_schemathesis_against_a_real_gunicorn_server_finds_nothing(tmp_path):
    """The CLI run the README names, against gunicorn as `make run` starts it (its own 414/431/400
    answers included), with the project's schemathesis.toml."""
    import subprocess
    import sys
    from pathlib import Path

    from gunicorn_servers import GunicornServer, seed_catalog

    root = Path(__file__).resolve().parents[1]
    database_url = f"sqlite:///{tmp_path}/catalog.db"
    seed_catalog(database_url)
    with GunicornServer(tmp_path, database_url=database_url, store_url="memory://", workers=1, threads=4) as server:
        base = f"http://127.0.0.1:{server.port}"
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/api/openapi.json", "--url", base,
             "--max-examples", "20", "--seed", "7", "--no-color"],
            cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failure" not in run.stdout.lower().split("summary")[-1].replace(
        "no failures", ""), run.stdout[-2000:]
