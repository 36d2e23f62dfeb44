"""Shared fixtures: an app built by the factory in testing mode, and its client (pytest-flask)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from backends_tested import summary_line
from moments import MOMENTS
from viralspot import create_app

#: A real redis-server and the memory/redis ``store_backend`` fixtures (tests/redis_fixtures.py).
pytest_plugins = ["redis_fixtures"]


@pytest.fixture
def app_config() -> dict:
    """Overrides for the app under test; a module can override this fixture."""
    return {}


@pytest.fixture
def app(app_config):
    """pytest-flask's ``client`` fixture uses this app."""
    application = create_app({"CONFIG": "testing", **app_config})
    yield application
    application.extensions["viralspot.session_store"].close()
    application.extensions["viralspot.catalog"].dispose()


@pytest.fixture
def store(app):
    """The app's session store backend."""
    return app.extensions["viralspot.session_store"]


# --- Database backends for the catalog tests ---------------------------------
#
# The catalog tests run on every backend through the ``database_backend`` /
# ``database_url`` fixtures: SQLite (a file per test) and PostgreSQL (a real
# server started once per session with initdb + pg_ctl on 127.0.0.1, a fresh
# database per test). Without PostgreSQL binaries the PostgreSQL variants skip
# with the reason, except under CI (env CI set), where that is a failure.

DATABASE_BACKENDS = ("sqlite", "postgresql")
#: backends that at least one test actually ran against (not skipped)
_backends_run: set[str] = set()
_backend_notes: dict[str, str] = {}


def _postgres_bin_dir() -> str | None:
    candidates = []
    if os.environ.get("VIRALSPOT_PG_BIN"):
        candidates.append(os.environ["VIRALSPOT_PG_BIN"])
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(os.path.dirname(os.path.realpath(found)))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for directory in candidates:
        if all(os.access(os.path.join(directory, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster; ``create_database()`` gives a fresh database URL."""

    def __init__(self, bin_dir: str, root: str) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = os.path.join(root, "data")
        from redis_fixtures import free_port  # one definition for every server fixture

        self.port = free_port()
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        completed = subprocess.run([*self.run_as, *args], capture_output=True, text=True, timeout=120)
        if completed.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {completed.stdout}\n{completed.stderr}")

    def start(self) -> None:
        if self.run_as:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(os.path.join(self.bin_dir, "initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                  # Byte-order sorting (C); case folding by Unicode's rules, as lower() does
                  # under a UTF-8 ctype (the README asks one of the catalog's database).
                  "-E", "UTF8", "--locale=C", "--lc-ctype=C.UTF-8", "--no-sync")
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.root, "log"),
                  "-w", "-t", "60", "-o", options, "start")

    def stop(self) -> None:
        try:
            self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        from psycopg import sql

        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        from psycopg import sql

        name = url.rsplit("/", 1)[1]
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session; skips (fails under CI) when PostgreSQL is not installed."""
    from redis_fixtures import _in_ci

    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin"
        _backend_notes["postgresql"] = reason
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, so the PostgreSQL tests must run", pytrace=False)
        pytest.skip(reason)
    server = PostgresServer(bin_dir, tempfile.mkdtemp(prefix="viralspot-pg-"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=[pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_backend(request) -> str:
    """The backend name; tests using it (or ``database_url``) run once per backend."""
    return request.param


def _empty_database(backend: str, request, directory) -> tuple[str, object]:
    if backend == "sqlite":
        return "sqlite:///" + os.path.join(str(directory), f"catalog-{uuid.uuid4().hex[:8]}.db"), None
    server = request.getfixturevalue("postgres_server")
    return server.create_database(), server


@pytest.fixture
def database_url(database_backend, request, tmp_path):
    """A fresh, empty catalog database on the current backend."""
    url, server = _empty_database(database_backend, request, tmp_path)
    _backends_run.add(database_backend)
    yield url
    if server is not None:
        server.drop_database(url)


@pytest.fixture(scope="module", params=[pytest.param("sqlite"),
                                        pytest.param("postgresql", marks=pytest.mark.postgres)])
def module_database_backend(request) -> str:
    """Like ``database_backend``, for module-scoped (read-only) catalogs."""
    return request.param


@pytest.fixture(scope="module")
def module_database_url(module_database_backend, request, tmp_path_factory):
    """A fresh catalog database shared by the tests of one module on the current backend."""
    url, server = _empty_database(module_database_backend, request, tmp_path_factory.mktemp("catalog"))
    _backends_run.add(module_database_backend)
    yield url
    if server is not None:
        server.drop_database(url)


def pytest_configure(config):
    config.addinivalue_line("markers", "after(name): runs after every test called name of its module with "
                                       "the same parameters (it reads what they recorded)")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    """A test marked ``after("name")`` moves behind the last test called ``name`` (schemathesis's
    ``name[operation]`` included) of its module whose parameters include its own. Done after every
    other plugin has ordered the items (a wrapper: this conftest's, registered after installed
    plugins, is the outermost), so a shuffle (pytest-randomly) cannot undo it."""
    result = yield
    for item in [item for item in items if item.get_closest_marker("after")]:
        name = item.get_closest_marker("after").args[0]
        params = _params(item)
        targets = [index for index, other in enumerate(items)
                   if other.module is item.module and getattr(other, "originalname", "").partition("[")[0] == name
                   and all(key in _params(other) and _params(other)[key] == value for key, value in params.items())]
        if targets and items.index(item) < targets[-1]:
            items.remove(item)
            items.insert(targets[-1], item)  # the last target moved up by one: this lands just after it
    return result


def _params(item) -> dict:
    callspec = getattr(item, "callspec", None)
    return callspec.params if callspec is not None else {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    terminalreporter.write_line(summary_line("database", DATABASE_BACKENDS, _backends_run, _backend_notes, "catalog"))


def content_index_names(engine) -> set[str]:
    """The indexes of ``content``, read from the database's own catalog: SQLAlchemy does not reflect
    SQLite's expression indexes."""
    listing = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'content'",
               "postgresql": "SELECT indexname FROM pg_indexes WHERE tablename = 'content'"}[engine.dialect.name]
    with engine.connect() as conn:
        return set(conn.exec_driver_sql(listing).scalars())


def make_catalog_app(database_url: str, **overrides):
    """An app in testing mode on ``database_url``."""
    return create_app({"CONFIG": "testing", "DATABASE_URL": database_url, **overrides})


def dispose_catalog_app(application) -> None:
    application.extensions["viralspot.catalog"].dispose()
    application.extensions["viralspot.session_store"].close()


@pytest.fixture
def catalog_app(database_url):
    """An app on a fresh, empty catalog of the current backend."""
    application = make_catalog_app(database_url)
    yield application
    dispose_catalog_app(application)


def import_fixture_catalog(url: str, moment):
    """(app, records, moment): the small fixture catalog of tests/catalog_data.py dated back from
    ``moment``, imported into ``url``, in an app whose clock is pinned at ``moment``."""
    from catalog_data import as_json_lines, fixture_records
    from moments import iso
    from viralspot.catalog.importer import import_lines

    records = fixture_records(moment)
    application = make_catalog_app(url, FIXED_NOW=iso(moment))
    with application.app_context():
        report = import_lines(application.extensions["viralspot.catalog"], as_json_lines(records))
    assert (report.inserted, report.rejected) == (len(records), 0), report.errors
    return application, records, moment


@pytest.fixture(scope="module")
def fixture_catalog(module_database_url):
    """(app, records, now): the fixture catalog at the tests' pinned clock, imported once per module."""
    from moments import PINNED_NOW

    application, records, now = import_fixture_catalog(module_database_url, PINNED_NOW)
    yield application, records, now
    dispose_catalog_app(application)


@pytest.fixture(scope="module", params=MOMENTS)
def dated_catalog(request, module_database_backend, tmp_path_factory):
    """``fixture_catalog`` at each pinned moment (tests/moments.py), for date-dependent tests."""
    url, server = _empty_database(module_database_backend, request, tmp_path_factory.mktemp("dated"))
    _backends_run.add(module_database_backend)
    application, records, now = import_fixture_catalog(url, request.param)
    yield application, records, now
    dispose_catalog_app(application)
    if server is not None:
        server.drop_database(url)
