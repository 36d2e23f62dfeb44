"""The application factory: configurations, environment overrides, extensions, blueprints."""
from __future__ import annotations

import pytest

from viralspot import create_app
from viralspot.store import SessionStoreConfigError
from viralspot.store.memory import MemorySessionStore


def test_testing_config():
    app = create_app({"CONFIG": "testing"})
    assert app.testing
    assert app.config["DATABASE_URL"] == "sqlite://"


def test_default_config_is_not_testing(monkeypatch, tmp_path):
    monkeypatch.delenv("VIRALSPOT_CONFIG", raising=False)
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/c.db"})
    assert not app.testing and not app.debug
    assert app.config["SESSION_STORE_URL"] == "memory://"
    assert app.config["SESSION_TTL"] == 86400


def test_config_name_from_environment(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_CONFIG", "testing")
    assert create_app().testing


def test_environment_overrides_settings(monkeypatch):
    monkeypatch.setenv("VIRALSPOT_SESSION_TTL", "120")
    monkeypatch.setenv("VIRALSPOT_SESSION_MAX", "7")
    app = create_app({"CONFIG": "testing"})
    store = app.extensions["viralspot.session_store"]
    assert isinstance(store, MemorySessionStore)
    assert (store.ttl, store.max_sessions) == (120, 7)


def test_session_store_extension_lives_in_app_extensions():
    first, second = create_app({"CONFIG": "testing"}), create_app({"CONFIG": "testing"})
    assert first.extensions["viralspot.session_store"] is not second.extensions["viralspot.session_store"]


def test_unknown_store_scheme_stops_start_up():
    with pytest.raises(SessionStoreConfigError, match="unknown scheme 'mongodb'"):
        create_app({"CONFIG": "testing", "SESSION_STORE_URL": "mongodb://localhost"})


def test_a_store_url_that_is_not_a_url_stops_start_up_in_one_message():
    with pytest.raises(SessionStoreConfigError) as raised:
        create_app({"CONFIG": "testing", "SESSION_STORE_URL": "redis://user:hunter2@[::1/0"})
    assert str(raised.value) == "VIRALSPOT_SESSION_STORE_URL is not a URL (Invalid IPv6 URL)"


def test_unknown_config_name_stops_start_up():
    with pytest.raises(RuntimeError, match="unknown configuration"):
        create_app("staging")


def test_production_requires_a_secret_from_the_environment(monkeypatch):
    monkeypatch.delenv("VIRALSPOT_SECRET_KEY", raising=False)
    monkeypatch.setenv("VIRALSPOT_ADMIN_TOKEN", "an-admin-token-of-some-length")
    with pytest.raises(RuntimeError, match="VIRALSPOT_SECRET_KEY"):
        create_app({"CONFIG": "production", "DATABASE_URL": "sqlite://"})
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "a-secret-from-the-environment")
    assert create_app({"CONFIG": "production", "DATABASE_URL": "sqlite://"}).config["SECRET_KEY"] == \
        "a-secret-from-the-environment"


def test_bad_log_level_stops_start_up():
    with pytest.raises(RuntimeError, match="LOG_LEVEL"):
        create_app({"CONFIG": "testing", "LOG_LEVEL": "LOUD"})


def test_blueprints_are_registered():
    app = create_app({"CONFIG": "testing"})
    assert {"content", "session", "health"} <= set(app.blueprints)


def test_shell_context_exposes_the_store():
    app = create_app({"CONFIG": "testing"})
    context = app.make_shell_context()
    assert context["store"] is app.extensions["viralspot.session_store"]


@pytest.mark.parametrize("setting, value, named", [
    ("VIRALSPOT_DEBUG", "true", "VIRALSPOT_DEBUG puts exception text in 500 bodies"),
    ("VIRALSPOT_FIXED_NOW", "2030-01-01T00:00:00Z", "VIRALSPOT_FIXED_NOW pins the clock"),
    ("VIRALSPOT_SECRET_KEY", "viralspot-insecure-development-secret", "VIRALSPOT_SECRET_KEY is a value published"),
    ("VIRALSPOT_SECRET_KEY", "viralspot-testing-secret", "VIRALSPOT_SECRET_KEY is a value published"),
    ("VIRALSPOT_SECRET_KEY", "viralspot-insecure-development-secret\n", "VIRALSPOT_SECRET_KEY is a value published"),
    ("VIRALSPOT_SECRET_KEY", "VIRALSPOT-TESTING-SECRET", "VIRALSPOT_SECRET_KEY is a value published"),
    ("VIRALSPOT_SECRET_KEY", "a-long-enough-secret-from-a-file\n", "VIRALSPOT_SECRET_KEY begins or ends with whitespace"),
    ("VIRALSPOT_SECRET_KEY", " ", "VIRALSPOT_SECRET_KEY is shorter than 16 characters"),
    ("VIRALSPOT_SECRET_KEY", "fifteen-chars!!", "VIRALSPOT_SECRET_KEY is shorter than 16 characters"),
    ("VIRALSPOT_ADMIN_TOKEN", "t", "VIRALSPOT_ADMIN_TOKEN is shorter than 16 characters"),
    ("VIRALSPOT_ADMIN_TOKEN", "viralspot-testing-secret", "VIRALSPOT_ADMIN_TOKEN is a value published"),
    ("VIRALSPOT_ADMIN_TOKEN", "  fifteen-chars!! \n", "VIRALSPOT_ADMIN_TOKEN is shorter than 16 characters"),
    ("VIRALSPOT_ADMIN_TOKEN", "a-secret-from-the-environment", "VIRALSPOT_ADMIN_TOKEN is the secret key"),
])
def test_production_refuses_unsafe_settings(monkeypatch, setting, value, named):
    monkeypatch.setenv("VIRALSPOT_SECRET_KEY", "a-secret-from-the-environment")
    monkeypatch.setenv(setting, value)
    with pytest.raises(RuntimeError, match=f"refusing to start in production: {named}"):
        create_app({"CONFIG": "production", "DATABASE_URL": "sqlite://"})
    monkeypatch.setenv("VIRALSPOT_CONFIG", "default")  # the same setting outside production starts
    assert create_app({"DATABASE_URL": "sqlite://"}).config["SECRET_KEY"]


def test_a_clock_that_is_not_an_instant_stops_start_up():
    with pytest.raises(RuntimeError, match="VIRALSPOT_FIXED_NOW: 'tomorrow' is not an ISO 8601 instant"):
        create_app({"CONFIG": "testing", "FIXED_NOW": "tomorrow"})


def test_database_errors_never_carry_bound_values(caplog):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    app = create_app({"CONFIG": "testing"})
    engine = app.extensions["viralspot.catalog"]
    with engine.connect() as conn, pytest.raises(OperationalError) as raised:
        conn.execute(text("SELECT * FROM no_such_table WHERE description = :search"),
                     {"search": "private search text"})
    assert "private search text" not in str(raised.value)
    assert "hidden" in str(raised.value)
