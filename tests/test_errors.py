"""Every error answers the JSON error envelope with the right status; no HTML, no leaked internals."""
from __future__ import annotations

import time

import pytest

from viralspot import create_app
from viralspot.store import StoreUnavailable
from viralspot.store.memory import MemorySessionStore

ENVELOPE_KEYS = {"success", "detail", "error_code", "timestamp", "troubleshooting"}


def assert_envelope(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False and body["error_code"] == code
    return body


def test_unknown_route_is_404_envelope(client):
    assert_envelope(client.get("/api/nothing-here"), 404, "NOT_FOUND")


@pytest.mark.parametrize("method, path", [("get", "/api/reels?limit=2"), ("get", "/api/nothing-here"),
                                          ("get", "/api/reels?limit=0"), ("get", "/metrics"), ("get", "/livez"),
                                          ("post", "/api/reset-session?session_id=s"), ("options", "/api/reels")])
def test_no_answer_is_sniffed_into_another_type(client, method, path):
    assert getattr(client, method)(path).headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/api//reels?limit=1", "/api/sessions//abc", "//api/reels"])
def test_a_doubled_slash_is_a_404_envelope_not_a_redirect_to_the_clients_host(client, path):
    for method in ("GET", "HEAD"):
        response = client.open(path, method=method, headers={"Host": "evil.example.com"})
        assert response.status_code == 404 and "Location" not in response.headers
        assert response.mimetype == "application/json"
    assert_envelope(client.get(path), 404, "NOT_FOUND")


def test_wrong_method_is_405_envelope_with_allow_header(client):
    response = client.get("/api/reset-session?session_id=abc")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


def _app_with_failing_route(debug: bool):
    app = create_app({"CONFIG": "testing", "DEBUG": debug})

    @app.get("/boom")
    def boom():
        raise ValueError("secret internal detail")

    return app


def test_unexpected_error_is_500_without_internals(caplog):
    client = _app_with_failing_route(debug=False).test_client()
    with caplog.at_level("ERROR", logger="viralspot"):
        body = assert_envelope(client.get("/boom"), 500, "INTERNAL_ERROR")
    assert "secret internal detail" not in body["detail"]
    assert "Traceback" not in body["detail"]
    assert any(r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records)


def test_debug_mode_shows_the_exception_text():
    client = _app_with_failing_route(debug=True).test_client()
    body = assert_envelope(client.get("/boom"), 500, "INTERNAL_ERROR")
    assert "secret internal detail" in body["detail"]


class UnreachableStore(MemorySessionStore):
    """A backend whose server is down: every call fails the way a network client does."""

    storage_type = "unreachable"

    def _down(self, *args, **kwargs):
        raise StoreUnavailable("connection refused")

    read_feed = seen_among = claim_unseen = reset = session_count = summary = session_ids = _down

    def ping(self):
        self._down()


def test_unreachable_store_is_503_envelope():
    app = create_app({"CONFIG": "testing"})
    app.extensions["viralspot.session_store"] = UnreachableStore()
    body = assert_envelope(app.test_client().post("/api/reset-session?session_id=abc"), 503,
                           "SESSION_STORE_UNAVAILABLE")
    assert "connection refused" not in body["detail"]


def test_health_reports_unreachable_store_as_503():
    app = create_app({"CONFIG": "testing"})
    app.extensions["viralspot.session_store"] = UnreachableStore()
    assert_envelope(app.test_client().get("/health"), 503, "SESSION_STORE_UNAVAILABLE")


@pytest.mark.parametrize("path", ["/health", "/"])
def test_health_is_cheap_json(client, path):
    response = client.get(path)
    assert response.status_code == 200
    body = response.get_json()
    assert body["success"] is True
    assert body["data"]["status"] == "ok"
    assert body["data"]["checks"] == {"session_store": "ok", "database": "ok"}


def test_malformed_percent_encoding_is_json(client):
    response = client.post("/api/reset-session?session_id=%ZZ")
    assert response.mimetype == "application/json"
    assert response.status_code == 400


# --- gunicorn's own refusals (a request line or headers over its limits) ------------------------

def _raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is on a new connection; (status, headers, body) of the answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return _answer(sock)


def _answer(sock) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the answer read from ``sock`` until the server closes it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_gunicorn_refusals_answer_the_envelope(tmp_path):
    import json

    from gunicorn_servers import GunicornServer
    from viralspot.error_codes import ERROR_CODES

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2) as server:
        long_line = f"GET /api/reels?search={'x' * 9000} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        many_headers = b"GET /api/reels HTTP/1.1\r\nHost: t\r\n" + b"".join(
            f"X-H{number}: v\r\n".encode() for number in range(150)) + b"\r\n"
        huge_header = b"GET /api/reels HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n"
        garbage = b"NOT A REQUEST\r\n\r\n"
        for request, status, code in ((long_line, 414, "URI_TOO_LONG"), (many_headers, 431, "HEADERS_TOO_LARGE"),
                                      (huge_header, 431, "HEADERS_TOO_LARGE"), (garbage, 400, "BAD_REQUEST")):
            got, headers, body = _raw_request(server.port, request)
            assert (got, headers["content-type"]) == (status, "application/json"), body[:200]
            envelope = json.loads(body)
            assert set(envelope) == ENVELOPE_KEYS and envelope["success"] is False
            assert envelope["error_code"] == code and ERROR_CODES[code][0] == status
            assert len(headers["x-request-id"]) == 32 and int(headers["x-request-id"], 16) >= 0
            assert headers["x-content-type-options"] == "nosniff"
            # Any origin may call the API (the default): a browser's script can read the refusal.
            assert headers["access-control-allow-origin"] == "*"
            assert headers["access-control-expose-headers"] == "X-Request-ID"
            if code == "URI_TOO_LONG":
                assert envelope["detail"] == "The request line is longer than 8190 bytes"
        # A request line just under the limit reaches Flask (its argument rules answer).
        got, _headers, body = _raw_request(server.port, f"GET /api/reels?limit=2&x={'a' * 7000} HTTP/1.1\r\n"
                                                        f"Host: t\r\nConnection: close\r\n\r\n".encode())
        assert got == 200, body[:200]


def test_a_request_gunicorn_cannot_parse_is_told_what_was_wrong(tmp_path):
    import json

    from gunicorn_servers import GunicornServer

    requests = {
        b"NOT A REQUEST\r\n\r\n": "The request line is malformed: send METHOD /path HTTP/1.1",
        b"GET /livez HTTP/9.9\r\nHost: t\r\n\r\n": "The HTTP version is not supported: send HTTP/1.0 or HTTP/1.1",
        b"G\x01T /livez HTTP/1.1\r\nHost: t\r\n\r\n": "The request method is not a valid HTTP method",
        b"GET /livez HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n": (
            "A header is malformed, repeated or in conflict with another"),
        b"POST /api/reset-session HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n": (
            "The Content-Length header is malformed, repeated or in conflict with another"),
        b"POST /api/reset-session HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n": (
            "The Transfer-Encoding header is malformed, repeated or in conflict with another"),
        b"POST /api/reset-session HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n": (
            "The Content-Length header is malformed, repeated or in conflict with another"),
        b"GET /livez HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n": (
            "A header is folded over several lines (obsolete line folding)"),
    }
    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2, name="parse-errors") as server:
        details = {}
        for request in requests:
            status, _headers, body = _raw_request(server.port, request)
            envelope = json.loads(body)
            details[request] = (status, envelope["error_code"], envelope["detail"])
    assert details == {request: (400, "BAD_REQUEST", detail) for request, detail in requests.items()}


def test_gunicorn_refusals_name_no_origin_when_only_some_origins_may_call(tmp_path):
    """The request's Origin is not read when gunicorn refuses it: no origin is allowed to read the answer."""
    from gunicorn_servers import GunicornServer

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2, name="origins",
                        extra_env={"VIRALSPOT_CORS_ORIGINS": "https://app.example.com"}) as server:
        status, headers, _body = _raw_request(server.port, b"NOT A REQUEST\r\nOrigin: https://app.example.com\r\n\r\n")
        assert status == 400
        assert "access-control-allow-origin" not in headers
        status, headers, _body = _raw_request(server.port, b"GET /health HTTP/1.1\r\nHost: t\r\n"
                                                           b"Origin: https://app.example.com\r\nConnection: close\r\n\r\n")
        assert (status, headers["access-control-allow-origin"]) == (200, "https://app.example.com")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_clients_control_characters_are_escaped_in_the_access_log(tmp_path, log_format):
    """gunicorn reads header bytes as latin-1: a User-Agent's 0x9b (a terminal's CSI) reached the
    access line as it came; a JSON line wrote it, and a percent-decoded path's, raw (JSON escapes
    only C0 controls)."""
    import json

    from gunicorn_servers import GunicornServer

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2, name=f"access-{log_format}",
                        extra_env={"GUNICORN_ACCESSLOG": "-", "VIRALSPOT_LOG_FORMAT": log_format}) as server:
        request = (b"GET /livez%C2%9B31m HTTP/1.1\r\nHost: t\r\nUser-Agent: agent\x9b31mRED\r\n"
                   b"Referer: back\x85line\r\nConnection: close\r\n\r\n")
        status, _headers, _body = _raw_request(server.port, request)
        assert status == 404
        deadline = time.monotonic() + 10
        while "31mRED" not in server.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)  # the access line is written after the answer
        log = server.log_tail()
    line = next(line for line in log.splitlines() if "31mRED" in line)
    if log_format == "text":
        assert '"agent\\x9b31mRED"' in line and '"back\\x85line"' in line, line
    else:
        assert '"agent\\u009b31mRED"' in line, line
        assert json.loads(line)["user_agent"] == "agent\x9b31mRED"  # the same text, written escaped
    assert "\x9b" not in log and "\x85" not in log


@pytest.mark.parametrize("formatter_name", ["TextFormatter", "JsonFormatter"])
def test_the_apps_own_log_lines_escape_control_characters(formatter_name):
    import logging

    from viralspot import logs

    formatter = logs.TextFormatter(logs.FORMAT) if formatter_name == "TextFormatter" else logs.JsonFormatter()
    record = logging.LogRecord("viralspot.test", logging.WARNING, __file__, 1, "argument %s", ("a\x9b2Jb\nc",), None)
    record.request_id = "-"
    line = formatter.format(record)
    assert "\x9b" not in line and "\n" not in line and ("a\\x9b2Jb\\x0ac" in line or "a\\u009b2Jb\\nc" in line), line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_access_lines_name_a_session_by_its_fingerprint_never_by_its_id(tmp_path, log_format):
    """A session id is its session's only key: no access line holds one, valid or not; a valid one
    shows as the fingerprint the app's own lines use, so a session's lines still match."""
    from gunicorn_servers import GunicornServer
    from viralspot.logs import session_fingerprint

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2, name=f"fingerprints-{log_format}",
                        extra_env={"GUNICORN_ACCESSLOG": "-", "VIRALSPOT_LOG_FORMAT": log_format}) as server:
        # The app reads an argument named session%5Fid as session_id, and the id of an inspection path.
        for target in ("/api/posts?limit=1&session_id=%20secret-a7Qx%20&random_order=true",
                       "/api/reset-session?session_id=secret-a7Qx", "/api/reels?session_id=bad%21secret-Zq9",
                       "/api/reels?random_order=true&session%5Fid=secret-encoded&limit=1",
                       "/api/sessions/secret-path%21", "/api/session%73/secret-path%21", "/api/reels?limit=1"):
            method = "POST" if "reset" in target else "GET"
            referer = "https://app.example/feed?session_id=secret-referer" if target.endswith("limit=1") else "-"
            _raw_request(server.port, f"{method} {target} HTTP/1.1\r\nHost: t\r\nReferer: {referer}\r\n"
                                      "Connection: close\r\n\r\n".encode())
        deadline = time.monotonic() + 10
        while server.log_tail().count("GET /api/") < 6 and time.monotonic() < deadline:
            time.sleep(0.05)  # the access lines are written after the answers
        log = server.log_tail()
    assert "secret" not in log, log[-2000:]
    assert log.count(f"session_id={session_fingerprint('secret-a7Qx')}") == 2  # stripped, as the app reads it
    assert log.count(f"session_id={session_fingerprint('bad!secret-Zq9')}") == 1
    assert log.count(f"session%5Fid={session_fingerprint('secret-encoded')}") == 1
    # The path in the request line (and in a JSON line's message and path), decoded as the app reads it.
    assert log.count(f"/api/sessions/{session_fingerprint('secret-path!')}") == (2 if log_format == "text" else 4)
    if log_format == "text":  # JSON lines do not carry the Referer
        assert log.count(f"session_id={session_fingerprint('secret-referer')}") == 2


def test_a_query_string_loses_every_session_id_and_keeps_the_rest():
    from viralspot.logs import session_fingerprint, without_session_ids

    first, second = session_fingerprint("s1"), session_fingerprint("s 2")
    assert without_session_ids("random_order=true&session_id=s1&limit=2") == f"random_order=true&session_id={first}&limit=2"
    assert without_session_ids("GET /api/reels?session_id=s+2&session_id=s1 HTTP/1.1") == (
        f"GET /api/reels?session_id={second}&session_id={first} HTTP/1.1")
    assert without_session_ids("my_session_id=x&session_idx=y") == "my_session_id=x&session_idx=y"
    assert without_session_ids("session_id=") == f"session_id={session_fingerprint('')}"
    # A name the app decodes to session_id, an inspection path, a Referer's URL.
    assert without_session_ids("a=1&session%5fid=s1&%73ession_id=s1") == f"a=1&session%5fid={first}&%73ession_id={first}"
    assert without_session_ids("GET /api/sessions/s%202 HTTP/1.1") == f"GET /api/sessions/{second} HTTP/1.1"
    for encoded in ("/api/sessions%2Fs1", "/api/session%73/s1", "/api/%73essions/s1", "/API/Sessions/s1"):
        assert without_session_ids(f"GET {encoded}?limit=1 HTTP/1.1").split()[1].endswith(f"/{first}?limit=1")
    assert without_session_ids("https://app.example/feed?x=1&session_id=s1#top") == (
        f"https://app.example/feed?x=1&session_id={first}#top")
    assert len(first) == 13 and first.startswith("~") and first != second


def test_gunicorn_makes_no_control_socket_that_other_instances_share(tmp_path):
    """gunicorn's control socket is one path per user: each instance on a host took it over, and
    stopping one removed it from the others."""
    from gunicorn_servers import GunicornServer

    home = tmp_path / "home"
    home.mkdir()
    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=2, name="control",
                        extra_env={"HOME": str(home), "XDG_RUNTIME_DIR": ""}) as server:
        status, _headers, _body = _raw_request(server.port, b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status == 200
        assert not (home / ".gunicorn").exists()


def _timed_out(connection) -> None:
    """The connection got a 408 REQUEST_TIMEOUT envelope, then was closed."""
    import json

    status, _headers, body = _answer(connection)
    assert status == 408, body[:200]
    assert json.loads(body)["error_code"] == "REQUEST_TIMEOUT"


def test_a_client_that_stalls_mid_request_is_closed_and_holds_no_thread(tmp_path):
    """gthread read a request's line and headers with no deadline: a client that sent half a request
    and stalled held a thread for good (with one thread, every later request waited). With
    VIRALSPOT_GUNICORN_HEADER_TIMEOUT=1 the stalled connection is answered 408 and closed, and the
    thread serves the next request."""
    import socket

    from gunicorn_servers import GunicornServer, call, serving_connections
    from test_failover import wait_for

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=1, name="stall",
                        extra_env={"VIRALSPOT_GUNICORN_HEADER_TIMEOUT": "1"}) as server:
        (worker,) = server.worker_pids()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
            stalled.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n")  # no blank line: the head never ends
            wait_for(lambda: serving_connections(worker, server.port) == 1, 10, "the worker took the connection")
            assert call(server.port, "GET", "/livez", timeout=10).status == 200  # without it: a timeout
            _timed_out(stalled)
        assert "Traceback" not in server.log_tail()


def test_a_client_that_sends_its_head_a_line_at_a_time_is_closed_at_the_deadline(tmp_path):
    """The deadline is for the whole head, not for each read: a client sending a header line every
    0.3 s is closed about a second after its first bytes, and its close does not hold up the
    worker (a close that lingered for the client's FIN kept the worker's loop 2 s)."""
    import socket

    from gunicorn_servers import GunicornServer, call

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=1, name="trickle",
                        extra_env={"VIRALSPOT_GUNICORN_HEADER_TIMEOUT": "1"}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /livez HTTP/1.1\r\n")
            slow.settimeout(0.3)
            lines, closed, received = 0, False, b""
            while lines < 30 and not closed:  # 30 lines: 9 s
                try:
                    chunk = slow.recv(65536)
                    received += chunk
                    closed = chunk == b""
                except socket.timeout:
                    slow.sendall(f"X-Line-{lines}: v\r\n".encode())
                    lines += 1
                except OSError:
                    closed = True
            assert closed and lines < 30 and received.startswith(b"HTTP/1.1 408 "), (lines, received[:100])
            reply = call(server.port, "GET", "/livez", timeout=10)  # the slow client still connected
        assert reply.status == 200 and reply.seconds < 1.5, reply


def test_a_body_sent_a_byte_at_a_time_after_its_answer_is_drained_within_one_deadline(tmp_path):
    """No route reads a body: gthread drains it after the response, bounding each read of the drain
    (5 s) but not the drain, so a client sending one byte every 0.3 s of a 100 MB body held its
    thread for good. The drain has one deadline (``BODY_DRAIN_SECONDS``): the connection is closed
    about 5 s after the answer, and the one thread serves the next request."""
    import socket

    from gunicorn_servers import GunicornServer, call
    from viralspot.gunicorn_worker import BODY_DRAIN_SECONDS

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=1, name="drip") as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as dripping:
            dripping.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
            dripping.settimeout(0.3)
            received, closed, sent = b"", False, 0
            while not closed and sent < 100:  # 100 bytes: 30 s
                try:
                    chunk = dripping.recv(65536)
                    received += chunk
                    closed = chunk == b""
                except socket.timeout:
                    dripping.sendall(b"a")
                    sent += 1
                except OSError:
                    closed = True
            assert received.startswith(b"HTTP/1.1 200 "), received[:100]
            assert closed and sent * 0.3 < BODY_DRAIN_SECONDS * 2, sent  # closed at the deadline, not held
        assert call(server.port, "GET", "/livez", timeout=10).status == 200


def test_stalled_clients_queued_for_the_one_thread_are_closed_at_their_own_deadline(tmp_path):
    """The deadline counts from when a connection is handed to the worker's threads, time in their
    queue included, with a grace of a quarter of it once a thread asks for the head: three stalled
    clients and one thread with 2 s are closed at 2, 2.5 and 3 s (timed from each thread's pick-up,
    at 2, 4 and 6 s)."""
    import socket

    from gunicorn_servers import GunicornServer, serving_connections
    from test_failover import wait_for

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=1, name="queued",
                        extra_env={"VIRALSPOT_GUNICORN_HEADER_TIMEOUT": "2"}) as server:
        (worker,) = server.worker_pids()
        stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(3)]
        try:
            started = time.monotonic()
            for connection in stalled:
                connection.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n")  # the head never ends
            wait_for(lambda: serving_connections(worker, server.port) == 3, 10, "the worker took the connections")
            for connection in stalled:
                _timed_out(connection)
            assert time.monotonic() - started < 4.5
        finally:
            for connection in stalled:
                connection.close()


def test_past_its_deadline_a_request_head_is_still_read_from_the_bytes_that_have_arrived():
    """A request that waited in the worker's queue past the deadline is served if its head is there
    (only a client still sending it is timed out); before the deadline a read waits for bytes."""
    import socket

    from viralspot.gunicorn_worker import HeadSocket

    server_side, client_side = socket.socketpair()
    with server_side, client_side:
        client_side.sendall(b"GET /livez HTTP/1.1\r\n\r\n")
        late = HeadSocket(server_side, deadline=time.monotonic() - 5)
        assert late.recv(100) == b"GET /livez HTTP/1.1\r\n\r\n"
        with pytest.raises(TimeoutError):
            late.recv(100)  # nothing more there, and no time left to wait for it
        waiting = HeadSocket(server_side, deadline=time.monotonic() + 5)
        client_side.sendall(b"X")
        assert waiting.recv(100) == b"X"


def test_a_client_whose_connection_waited_idle_in_the_queue_may_send_its_head_in_pieces(tmp_path):
    """A connection that sat idle in the threads' queue past the deadline (a browser's preconnect)
    and then sends its head in two pieces is served: once a thread asks for the head it has a grace
    of a quarter of the timeout (without it: 408 as the second piece came)."""
    import socket

    from gunicorn_servers import GunicornServer, serving_connections
    from test_failover import wait_for

    with GunicornServer(tmp_path, database_url=f"sqlite:///{tmp_path}/catalog.db", store_url="memory://",
                        workers=1, threads=1, name="preconnect",
                        extra_env={"VIRALSPOT_GUNICORN_HEADER_TIMEOUT": "4"}) as server:
        (worker,) = server.worker_pids()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled, \
                socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            stalled.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n")  # holds the one thread 4 s
            wait_for(lambda: serving_connections(worker, server.port) == 2, 10, "the worker took both")
            _timed_out(stalled)  # the thread is free: the idle connection, 4 s old, is the next it takes
            idle.sendall(b"GET /livez HTTP/1.1\r\n")
            time.sleep(0.05)  # the second piece of a head, a moment later
            idle.sendall(b"Host: t\r\nConnection: close\r\n\r\n")
            status, _headers, body = _answer(idle)
        assert status == 200, body[:200]
