"""Settings from the environment (``config.load_settings``): each ``VIRALSPOT_*`` value read as the
type of its default and checked, a bad one stopping the start-up with an error that names it."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config, config_class, load_settings
from viralspot import create_app

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("DEBUG", "PUBLIC_INSPECTION", "METRICS", "ITEM_SNAPSHOT_WRITE")


def loaded(**environ) -> dict:
    settings, _unknown = load_settings(config_class("default"), {f"VIRALSPOT_{k}": v for k, v in environ.items()})
    return settings


@pytest.mark.parametrize("flag", FLAGS)
@pytest.mark.parametrize("spelling, value", [
    ("false", False), ("False", False), ("FALSE", False), ("0", False), ("no", False), ("off", False), ("Off", False),
    ("true", True), ("True", True), ("1", True), ("yes", True), ("on", True), ("ON", True),
])
def test_flags_read_every_usual_spelling(flag, spelling, value):
    assert loaded(**{flag: spelling})[flag] is value


@pytest.mark.parametrize("flag", FLAGS)
def test_a_flag_that_is_neither_stops_start_up_naming_it(flag):
    with pytest.raises(RuntimeError, match=rf"invalid settings: VIRALSPOT_{flag} \('maybe'\): Not a valid boolean"):
        loaded(**{flag: "maybe"})


def test_production_without_a_token_is_refused_when_public_inspection_is_spelled_false(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "from-env")
    monkeypatch.delenv("VIRALSPOT_ADMIN_TOKEN", raising=False)
    for spelling in ("False", "no", "off", "0"):
        monkeypatch.setenv("VIRALSPOT_PUBLIC_INSPECTION", spelling)
        with pytest.raises(RuntimeError, match="VIRALSPOT_ADMIN_TOKEN is not set"):
            create_app({"CONFIG": "production", "DATABASE_URL": "sqlite://"})


def test_debug_spelled_false_leaves_debug_off(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_DEBUG", "False")
    app = create_app({"CONFIG": "testing"})
    assert app.config["DEBUG"] is False and not app.debug


@pytest.mark.parametrize("name, value, problem", [
    ("RANDOM_MAX_OFFSET", "-1", "Must be greater than or equal to 0."),
    ("RANDOM_MAX_AHEAD", "-1", "Must be greater than or equal to 0."),
    ("RANDOM_MAX_SCAN", "0", "Must be greater than or equal to 1."),
    ("SESSION_STORE_RETRIES", "-1", "Must be greater than or equal to 0."),
    ("SESSION_STORE_SOCKET_TIMEOUT", "-1", "Must be greater than 0 and less than or equal to 3600."),
    ("SESSION_STORE_CONNECT_TIMEOUT", "0", "Must be greater than 0 and less than or equal to 3600."),
    ("SESSION_TTL", "0", "Must be greater than or equal to 1 and less than or equal to 315360000."),
    ("SESSION_TTL", "a day", "Not a valid integer."),
    ("SESSION_TTL", "+7", "Not a valid integer."),
    ("SESSION_TTL", "1_000", "Not a valid integer."),
    ("READINESS_TIMEOUT", "+0.5", "Not a valid number."),
    ("DATABASE_BUSY_TIMEOUT", "soon", "Not a valid number."),
    ("GUNICORN_THREADS", "0", "Must be greater than or equal to 1."),
    ("GUNICORN_HEADER_TIMEOUT", "0", "Must be greater than 0 and less than or equal to 300."),
    ("GUNICORN_LIMIT_REQUEST_LINE", "9000", "Must be greater than or equal to 1 and less than or equal to 8190."),
    ("READINESS_TIMEOUT", "0", "Must be greater than 0 and less than or equal to 60."),
    ("TRUSTED_PROXIES", "-1", "Must be greater than or equal to 0."),
    ("CATALOG_STATE_TTL", "nan", "Not a valid number."),
    ("RATE_LIMIT", "5/minut", "Not a rate limit such as 1200/minute"),
    ("RATE_LIMIT", "banana", "Not a rate limit such as 1200/minute"),
    ("RESET_RATE_LIMIT", "60 per fortnight", "Not a rate limit such as 1200/minute"),
    ("RATE_LIMIT", "0/minute", "A rate limit allows at least 1 request"),
    ("CORS_ORIGINS", '["https://a.example"]', "Not an origin: '[\"https://a.example\"]'"),
    ("CORS_ORIGINS", "https://a.example, a.example", "Not an origin: 'a.example'"),
])
def test_a_bad_number_or_rate_limit_stops_start_up_naming_it(name, value, problem):
    with pytest.raises(RuntimeError) as raised:
        loaded(**{name: value})
    assert str(raised.value).startswith(f"invalid settings: VIRALSPOT_{name} ({value!r}): {problem}")


@pytest.mark.parametrize("value", ["*", "", "https://app.example.com", "http://localhost:3000, https://a.example/"])
def test_origins_are_star_empty_or_a_list_of_origins(value):
    assert loaded(CORS_ORIGINS=value)["CORS_ORIGINS"] == value


def test_an_admin_token_read_from_a_file_keeps_no_trailing_newline(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "from-a-file\n")
    client = create_app({"CONFIG": "testing"}).test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer from-a-file"}).status_code == 200
    assert client.get("/metrics").status_code == 401


def test_a_token_beyond_ascii_is_matched_by_its_utf8_bytes(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "clé-secrète")
    client = create_app({"CONFIG": "testing"}).test_client()
    utf8_as_sent = "Bearer clé-secrète".encode().decode("latin-1")  # what a client's UTF-8 bytes are in WSGI
    assert client.get("/metrics", headers={"Authorization": utf8_as_sent}).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer cle-secrete"}).status_code == 401


def test_production_refuses_a_token_of_spaces(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "from-env")
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "  ")
    monkeypatch.delenv("VIRALSPOT_PUBLIC_INSPECTION", raising=False)
    with pytest.raises(RuntimeError, match="VIRALSPOT_ADMIN_TOKEN is not set"):
        create_app({"CONFIG": "production", "DATABASE_URL": "sqlite://"})


@pytest.mark.parametrize("command", [["-c", "import wsgi"], ["-m", "flask", "--app", "wsgi", "content", "stats"]])
def test_the_app_and_its_commands_stop_on_a_bad_setting_in_one_line(command):
    env = {"PATH": "/usr/bin:/bin", "VIRALSPOT_SESSION_MAX": "0"}
    answer = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True)
    assert answer.returncode == 4  # gunicorn's "App failed to load": its master stops
    assert answer.stderr.strip() == ("viralspot: invalid settings: VIRALSPOT_SESSION_MAX ('0'): "
                                     "Must be greater than or equal to 1.")


@pytest.mark.parametrize("value, problem", [
    ("notaurl", "Not a database URL"),
    ("postgresql+psycopg://viralspot:hunter2@[::1/catalog", "Not a database URL"),
    ("mysql://viralspot:hunter2@db/catalog", "The scheme 'mysql' is not one of sqlite, sqlite+pysqlite, postgresql"),
    ("postgresql+psycopg2://viralspot:hunter2@db/catalog", "The scheme 'postgresql+psycopg2' is not one of"),
])
def test_a_catalog_url_that_cannot_be_used_stops_start_up_without_repeating_it(value, problem):
    with pytest.raises(RuntimeError) as raised:
        loaded(DATABASE_URL=value)
    assert str(raised.value).startswith(f"invalid settings: VIRALSPOT_DATABASE_URL: {problem}")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("value", ["", "sqlite://", "sqlite:////var/lib/viralspot/catalog.db",
                                   "postgresql://viralspot@db:5432/catalog", "postgresql+psycopg://db/catalog"])
def test_sqlite_and_postgresql_urls_are_taken(value):
    assert loaded(DATABASE_URL=value)["DATABASE_URL"] == value


@pytest.mark.parametrize("environ, refusal", [
    ({}, "viralspot: VIRALSPOT_SECRET_KEY must be set in this configuration"),
    ({"VIRALSPOT_SECRET_KEY": "short", "VIRALSPOT_PUBLIC_INSPECTION": "true"},
     "viralspot: refusing to start in production: VIRALSPOT_SECRET_KEY is shorter than 16 characters"),
])
def test_gunicorn_stops_on_a_setting_the_app_refuses_before_any_worker(tmp_path, environ, refusal):
    """A refusal the app makes as it loads (production without a secret, or a weak one) stops
    gunicorn's master with the one line, once, before it binds the port or starts a worker: the
    line came once a worker (9 times with 9), after gunicorn's own lines of each."""
    env = {"PATH": os.environ["PATH"], "VIRALSPOT_CONFIG": "production", "PORT": "0", "WEB_CONCURRENCY": "3",
           "VIRALSPOT_SESSION_STORE_URL": "redis://127.0.0.1:1/0",
           "VIRALSPOT_DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
           **environ}
    answer = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode != 0, answer.stderr[-2000:]
    assert answer.stderr.strip() == refusal, answer.stderr[-2000:]


def test_an_empty_secret_outside_production_is_named_as_empty(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "")
    with pytest.raises(RuntimeError, match="^VIRALSPOT_SECRET_KEY is empty: set a secret, or unset it for the "
                                           "development one$"):
        create_app({"CONFIG": "default"})


def test_every_bad_value_is_named_at_once():
    with pytest.raises(RuntimeError) as raised:
        loaded(SESSION_TTL="0", RATE_LIMIT="banana", METRICS="perhaps")
    message = str(raised.value)
    assert all(f"VIRALSPOT_{name} " in message for name in ("SESSION_TTL", "RATE_LIMIT", "METRICS")), message


@pytest.mark.parametrize("value", ["5/minute", "10/second;100/hour", "100 per minute", ""])
def test_rate_limits_in_limits_notation_or_empty_are_taken(value):
    assert loaded(RATE_LIMIT=value)["RATE_LIMIT"] == value


@pytest.mark.parametrize("value", ["1e3", "12.50", '"quoted"', "0", "null", "true", "[1, 2]"])
def test_text_settings_are_kept_exactly_as_given(value):
    settings = loaded(ADMIN_TOKEN=value, SECRET_KEY=value, ITEM_SNAPSHOT_DIR=value)
    assert settings["ADMIN_TOKEN"] == settings["SECRET_KEY"] == settings["ITEM_SNAPSHOT_DIR"] == value


def test_a_token_that_looks_like_a_number_is_the_token(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "0")
    client = create_app({"CONFIG": "testing"}).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer 0"}).status_code == 200


def test_an_empty_number_or_flag_keeps_its_default_and_empty_text_is_empty():
    settings = loaded(SESSION_TTL="", METRICS=" ", CATALOG_STATE_TTL="", RATE_LIMIT="", ITEM_SNAPSHOT_DIR="")
    assert (settings["SESSION_TTL"], settings["METRICS"], settings["CATALOG_STATE_TTL"]) == (86400, True, 1.0)
    assert settings["RATE_LIMIT"] == "" and settings["ITEM_SNAPSHOT_DIR"] == ""  # off, as documented


def test_numbers_are_read_as_their_type():
    settings = loaded(SESSION_TTL="120", DATABASE_BUSY_TIMEOUT="2", CATALOG_STATE_TTL="0.25")
    assert (settings["SESSION_TTL"], settings["DATABASE_BUSY_TIMEOUT"], settings["CATALOG_STATE_TTL"]) == (120, 2.0, 0.25)
    assert isinstance(settings["SESSION_TTL"], int) and isinstance(settings["DATABASE_BUSY_TIMEOUT"], float)


def test_overrides_are_checked_too_and_free_text_is_never_echoed():
    with pytest.raises(RuntimeError, match=r"VIRALSPOT_RANDOM_MAX_SCAN \(0\): Must be greater than or equal to 1"):
        create_app({"CONFIG": "testing", "RANDOM_MAX_SCAN": 0})
    with pytest.raises(RuntimeError) as raised:
        create_app({"CONFIG": "testing", "SECRET_KEY": 123456789})
    assert "VIRALSPOT_SECRET_KEY: Not a valid string." in str(raised.value)
    assert "123456789" not in str(raised.value)


def test_a_variable_that_names_no_setting_is_logged_and_ignored(monkeypatch, caplog):
    monkeypatch.setenv("VIRALSPOT_RATE_LIMTI", "5/minute")
    with caplog.at_level(logging.WARNING, logger="viralspot"):
        app = create_app({"CONFIG": "testing"})
    assert "RATE_LIMTI" not in app.config
    assert any("VIRALSPOT_RATE_LIMTI is not a setting of this service" in record.getMessage()
               for record in caplog.records)


def test_gunicorn_reads_the_same_settings():
    """``gunicorn.conf.py`` reads the settings as the app does: the same types, the same refusal."""
    def gunicorn_conf(**environ):
        code = "import runpy; conf = runpy.run_path('gunicorn.conf.py'); print(conf['_METRICS_ON'], conf['threads'])"
        env = {"PATH": "/usr/bin:/bin", **{f"VIRALSPOT_{k}": v for k, v in environ.items()}}
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)

    answer = gunicorn_conf(METRICS="Off", GUNICORN_THREADS="3")
    assert answer.returncode == 0 and answer.stdout.split() == ["False", "3"], answer.stderr
    answer = gunicorn_conf(GUNICORN_THREADS="0")
    assert answer.returncode != 0
    assert "VIRALSPOT_GUNICORN_THREADS ('0'): Must be greater than or equal to 1." in answer.stderr
    assert "Traceback" not in answer.stderr  # one line, as gunicorn's master prints it
    answer = gunicorn_conf(LOG_FORMAT="xml", LOG_LEVEL="LOUD")
    assert answer.returncode != 0
    assert "VIRALSPOT_LOG_FORMAT ('xml'): Must be one of text, json (any case)." in answer.stderr
    assert "VIRALSPOT_LOG_LEVEL ('LOUD'): Must be one of " in answer.stderr
    answer = gunicorn_conf(LOG_FORMAT=" JSON ", LOG_LEVEL="warning ")
    assert answer.returncode == 0, answer.stderr


@pytest.mark.parametrize("environ, refusal", [
    ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY ('0') must be a whole number of workers, at least 1."),
    # Values gunicorn's own int() takes (one it does not, "abc", stops gunicorn with its ValueError,
    # and a negative one with its "Value must be positive", before it reads gunicorn.conf.py).
    ({"WEB_CONCURRENCY": "3_0"}, "WEB_CONCURRENCY ('3_0') must be a whole number of workers, at least 1."),
    ({"WEB_CONCURRENCY": "\u0663"}, "WEB_CONCURRENCY ('\u0663') must be a whole number of workers, at least 1."),
    ({"VIRALSPOT_SESSION_STORE_URL": ""}, "VIRALSPOT_SESSION_STORE_URL is empty; use memory:// (one process)"),
    ({"VIRALSPOT_SESSION_STORE_URL": "http://cache:6379"}, "VIRALSPOT_SESSION_STORE_URL has unknown scheme 'http'"),
    ({"VIRALSPOT_SESSION_STORE_URL": "redis://:6379/x"}, "VIRALSPOT_SESSION_STORE_URL is not a usable Redis URL"),
])
def test_gunicorn_refuses_no_workers_and_a_bad_store_url_once_before_any_worker_starts(environ, refusal):
    """No worker (every request would hang) or a store URL no worker could use (each of cores x 2 + 1
    workers failed, one after the other): the master stops at once with the one line."""
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    answer = subprocess.run([gunicorn, "--check-config", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", **environ}, capture_output=True, text=True, timeout=60)
    assert answer.returncode != 0 and refusal in answer.stderr, answer.stderr
    assert "Traceback" not in answer.stderr


def test_gunicorn_takes_a_worker_count_and_defaults_by_the_store():
    code = "import runpy; print(runpy.run_path('gunicorn.conf.py')['workers'])"

    def workers(**environ) -> str:
        answer = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **environ},
                                capture_output=True, text=True)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout.strip()

    assert workers(WEB_CONCURRENCY=" 3 ", VIRALSPOT_SESSION_STORE_URL="redis://127.0.0.1:6379/0") == "3"
    assert workers() == "1"  # memory://: one process
    assert workers(VIRALSPOT_SESSION_STORE_URL="redis://127.0.0.1:6379/0") == str(os.cpu_count() * 2 + 1)


@pytest.mark.parametrize("name, value, loaded", [("LOG_FORMAT", " JSON ", "json"), ("LOG_FORMAT", "", "text"),
                                                 ("LOG_LEVEL", "Warning", "warning"), ("LOG_LEVEL", "  ", "info")])
def test_a_choice_takes_any_case_and_empty_keeps_the_default(name, value, loaded):
    assert load_settings(Config, {f"VIRALSPOT_{name}": value})[0][name] == loaded


@pytest.mark.parametrize("name, value", [("PRODUCTION", "false"), ("PRODUCTION", "true"), ("TESTING", "1")])
def test_what_the_configuration_class_is_has_no_variable_of_its_own(name, value):
    """``VIRALSPOT_PRODUCTION=false`` under ``VIRALSPOT_CONFIG=production`` lifted every refusal."""
    with pytest.raises(RuntimeError, match=f"VIRALSPOT_{name}: set by VIRALSPOT_CONFIG"):
        load_settings(config_class("production"), {f"VIRALSPOT_{name}": value})


@pytest.mark.parametrize("name, value", [("LOG_LEVEL", "warn"), ("LOG_LEVEL", "notset"), ("DATABASE_TIMEOUT", "86401"),
                                         ("SESSION_TTL", "315360001"), ("SESSION_STORE_SOCKET_TIMEOUT", "1e10"),
                                         ("SESSION_STORE_CONNECT_TIMEOUT", "3601")])
def test_values_a_part_of_the_service_could_not_take_are_refused(name, value):
    """gunicorn knows five log levels (it took ``warn`` as INFO); PostgreSQL's statement_timeout ends
    at 2^31 ms (every worker then failed to boot). A TTL past Redis's range made every random page a
    500; a socket timeout of 1e10 s overflowed (500s)."""
    with pytest.raises(RuntimeError, match=f"VIRALSPOT_{name}"):
        load_settings(Config, {f"VIRALSPOT_{name}": value})


def test_a_pinned_clock_past_year_9999_in_utc_is_refused_by_name():
    """It was an OverflowError's traceback."""
    with pytest.raises(RuntimeError, match="VIRALSPOT_FIXED_NOW: '9999-12-31T23:59:59-01:00' is out of range"):
        create_app({"CONFIG": "testing", "FIXED_NOW": "9999-12-31T23:59:59-01:00"})


@pytest.mark.parametrize("name, value, used", [
    ("DATABASE_URL", "sqlite:///{tmp}/catalog.db\n", "sqlite:///{tmp}/catalog.db"),  # from a file: a new empty catalog
    ("DATABASE_URL", " sqlite:///{tmp}/catalog.db", "sqlite:///{tmp}/catalog.db"),   # a traceback
    ("RATE_LIMIT", " ", ""),                      # checked as off, then parsed as a limit: an error a request
    ("RATE_LIMIT", " 5/minute\n", "5/minute"),
    ("CORS_ORIGINS", " https://a.example ", "https://a.example"),
])
def test_checked_text_is_used_as_it_was_checked(tmp_path, name, value, used):
    settings, _unknown = load_settings(Config, {f"VIRALSPOT_{name}": value.format(tmp=tmp_path)})
    assert settings[name] == used.format(tmp=tmp_path)
    if name == "DATABASE_URL":
        app = create_app({"CONFIG": "testing", **settings})
        assert app.test_client().get("/api/reels").status_code == 200
        assert {name for name in os.listdir(tmp_path) if not name.endswith(("-wal", "-shm"))} == {"catalog.db"}
        app.extensions["viralspot.catalog"].dispose()


def test_numbers_are_ascii_decimals_as_the_api_reads_them_spaces_around_dropped():
    """``+7`` and ``1_000`` (which Python's int takes) are refused above; spaces around a number,
    as a value from a file may carry, are not part of it."""
    settings = loaded(SESSION_TTL=" 3600 ", READINESS_TIMEOUT="0.5\n", RANDOM_MAX_AHEAD="-0")
    assert (settings["SESSION_TTL"], settings["READINESS_TIMEOUT"], settings["RANDOM_MAX_AHEAD"]) == (3600, 0.5, 0)
