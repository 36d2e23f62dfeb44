"""``GET /api/docs``: Swagger UI served by this server alone, and rendered by a real browser.

The browser test starts the app on a loopback port (werkzeug's ``make_server`` in a thread)
and has headless Chromium (Debian's ``chromium``) load the page with its background
networking off, then checks that every operation of the description appears in the DOM.
Without Chromium it skips with the reason, except under CI (env CI set), where that is a
failure: ``.ci/run`` installs it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from html.parser import HTMLParser

import pytest
from werkzeug.serving import make_server

BROWSER_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Virtual milliseconds Chromium gives the page (scripts, the description's fetch, rendering) before the dump.
VIRTUAL_TIME_BUDGET_MS = 20_000
BROWSER_TIMEOUT_S = 120


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_binary() -> str | None:
    if os.environ.get("VIRALSPOT_CHROMIUM"):
        return os.environ["VIRALSPOT_CHROMIUM"]
    for name in BROWSER_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Assets(HTMLParser):
    """Every URL the page's markup loads or links to."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        for name in ("src", "href", "data-spec-url"):
            if values.get(name):
                self.urls.append(values[name])


def page_urls(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


# --- the page as served ------------------------------------------------------------------------------

def test_docs_page_references_only_same_origin_urls(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    urls = page_urls(html)
    assert "/api/openapi.json" in urls
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("swagger-ui.css") for url in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
    assert "<script>" not in html  # no inline script: the CSP allows scripts from this origin only


def test_docs_page_policy_allows_this_origin_only(client):
    policy = client.get("/api/docs").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert "http" not in policy


def test_swagger_ui_license_is_served(client):
    response = client.get("/api/docs/swagger-ui/LICENSE")
    assert response.status_code == 200
    assert "Apache License" in response.get_data(as_text=True)
    assert "/api/docs/swagger-ui/LICENSE" in client.get("/api/docs").get_data(as_text=True)


def test_only_swagger_ui_files_are_served_from_the_package(client):
    assert client.get("/api/docs/swagger-ui/../flask_swagger_ui.py").status_code == 404
    assert client.get("/api/docs/swagger-ui/oauth2-redirect.html").status_code == 404
    response = client.get("/api/docs/swagger-ui/nothing.js")
    assert response.status_code == 404 and response.get_json()["error_code"] == "NOT_FOUND"


# --- a real browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        reason = f"no headless browser found ({', '.join(BROWSER_CANDIDATES)}; or set VIRALSPOT_CHROMIUM)"
        if _in_ci():
            pytest.fail(f"{reason}; CI is set, so the browser test must run (apt-get install chromium)",
                        pytrace=False)
        pytest.skip(reason)
    return binary


class RecordingApp:
    """WSGI middleware remembering (path, status) of every request the browser made."""

    def __init__(self, app) -> None:
        self.app = app
        self.requests: list[tuple[str, int]] = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")

        def recording_start_response(status, headers, exc_info=None):
            self.requests.append((path, int(status.split(" ", 1)[0])))
            return start_response(status, headers, exc_info)

        return self.app(environ, recording_start_response)


@pytest.fixture
def docs_server(app):
    """The app on 127.0.0.1, an ephemeral port, in a thread; yields (base URL, recorder)."""
    recorder = RecordingApp(app)
    server = make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="docs-live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def render_dom(binary: str, url: str) -> str:
    """The DOM after the page ran, as headless Chromium dumps it (no network but what the page asks)."""
    profile = tempfile.mkdtemp(prefix="viralspot-chromium-")
    try:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--disable-default-apps", "--disable-extensions", "--mute-audio",
                   f"--user-data-dir={profile}", f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
                   "--dump-dom", url]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
        assert completed.returncode == 0, completed.stderr[-2000:]
        return completed.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_docs_page_renders_every_operation_in_a_headless_browser(chromium, docs_server, client):
    base_url, recorder = docs_server
    spec = client.get("/api/openapi.json").get_json()
    dom = render_dom(chromium, f"{base_url}/api/docs")

    assert 'id="swagger-ui"' in dom
    missing = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            block = f'id="operations-{operation["tags"][0]}-{operation["operationId"]}"'
            if block not in dom or f'data-path="{path}"' not in dom:
                missing.append(f"{method.upper()} {path}")
    assert not missing, f"operations missing from the rendered page: {missing}"
    assert spec["info"]["title"] in dom
    # Everything the page loaded came from this server, and loaded.
    requested = dict(recorder.requests)
    assert {"/api/docs", "/api/openapi.json", "/api/docs/swagger-ui/swagger-ui-bundle.js",
            "/api/docs/swagger-ui/swagger-ui.css", "/api/docs/static/swagger-initializer.js"} <= set(requested)
    assert all(status == 200 for status in requested.values()), recorder.requests
    external = [url for url in re.findall(r'(?:src|href)="(https?://[^"]*)"', dom) if not url.startswith(base_url)]
    assert not external, external
