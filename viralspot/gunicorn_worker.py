"""gunicorn's worker with the API's error envelope: a request that gunicorn itself refuses (a
request line over ``limit_request_line``, headers over their limits, a malformed request)
answers the JSON envelope with 414, 431 or 400, not gunicorn's HTML page. When any origin may call
the API (``VIRALSPOT_CORS_ORIGINS=*``, the default) the refusal carries the CORS headers, so a
browser's script can read it; with a list of origins it cannot, as the request's ``Origin`` was not
read.

It also gives a request's line and headers a deadline (``VIRALSPOT_GUNICORN_HEADER_TIMEOUT``, from
when the connection was accepted or became readable again): gthread reads them on one of the
worker's threads with none, so a few clients that send half a request, or a byte now and then,
held every thread. Such a connection is answered 408 and shut down. (A connection that sends
nothing holds a thread for gthread's own 5 s, then waits without one; facing the internet, a
buffering proxy such as nginx is the answer.)

A body the app did not read (no route reads one) is drained after the response within one
deadline, ``BODY_DRAIN_SECONDS``, then the connection closes: gthread bounds each read of the drain,
not the drain, so a client sending a body a byte every few seconds held a thread for an hour."""
from __future__ import annotations

import contextlib
import functools
import json
import re
import socket
import time
import uuid

from gunicorn import util
from gunicorn.http.errors import (InvalidHeader, InvalidHeaderName, InvalidHTTPVersion, InvalidRequestLine,
                                  InvalidRequestMethod, InvalidResponseHeader, InvalidResponseHeaderName,
                                  LimitRequestHeaders, LimitRequestLine, ObsoleteFolding, ParseException)
from gunicorn.workers.gthread import DEFAULT_WORKER_DATA_TIMEOUT, ThreadWorker

from config import Config

from .clock import utc_timestamp
from .error_codes import ERROR_CODES

_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            500: "Internal Server Error"}
#: Errors in the application's response, not in the request: answered 500.
_RESPONSE_ERRORS = (InvalidResponseHeader, InvalidResponseHeaderName)
#: What a request gunicorn could not parse got wrong, by the exception its parser raised (whose own
#: message repeats the client's bytes); a header that is malformed is named when its name is a plain token.
_PARSE_DETAILS = (
    (InvalidRequestLine, "The request line is malformed: send METHOD /path HTTP/1.1"),
    (InvalidRequestMethod, "The request method is not a valid HTTP method"),
    (InvalidHTTPVersion, "The HTTP version is not supported: send HTTP/1.0 or HTTP/1.1"),
    (InvalidHeaderName, "A header name is malformed"),
    (InvalidHeader, "A header is malformed, repeated or in conflict with another"),
    (ObsoleteFolding, "A header is folded over several lines (obsolete line folding)"),
)
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")


def parse_error_detail(error: BaseException) -> str:
    """The 400's detail for a request gunicorn's parser refused."""
    for kinds, detail in _PARSE_DETAILS:
        if isinstance(error, kinds):
            header = str(getattr(error, "hdr", ""))
            if isinstance(error, InvalidHeader) and _TOKEN.fullmatch(header):
                return detail.replace("A header", f"The {header.title()} header", 1)
            return detail
    return "The server could not parse the request"


#: The CORS headers of a refusal when any origin may call the API (those flask-cors gives an answer).
ANY_ORIGIN_HEADERS = "Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: X-Request-ID\r\n"


def error_bytes(error_code: str, detail: str, request_id: str, extra_headers: str = "") -> bytes:
    """A whole HTTP/1.1 response carrying the error envelope and a request id (the request was not
    read far enough to keep the client's); the connection closes after it."""
    status, troubleshooting = ERROR_CODES[error_code]
    body = json.dumps({"success": False, "detail": detail, "error_code": error_code, "timestamp": utc_timestamp(),
                       "troubleshooting": troubleshooting}).encode()
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\n{extra_headers}"
            f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


#: Seconds after a response within which the rest of an unread request body must arrive for the
#: connection to be kept: gthread's own bound for one read of it.
BODY_DRAIN_SECONDS = DEFAULT_WORKER_DATA_TIMEOUT


class HeadTimeout(Exception):
    """A request whose line and headers had not all arrived ``seconds`` after its connection was
    handed to the worker's threads."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"request head not complete within {seconds} s")
        self.seconds = seconds


class HeadSocket:
    """The socket a parser reads a request's head through: each read waits at most what is left
    until ``deadline`` (one timeout for the whole head, however the client spreads its bytes);
    past it, a read still takes the bytes that have arrived (a request that waited in the threads'
    queue is served), but waits for none."""

    def __init__(self, sock, deadline: float) -> None:
        self._sock, self._deadline = sock, deadline

    def recv(self, size: int) -> bytes:
        self._sock.settimeout(max(0.0, self._deadline - time.monotonic()))
        try:
            return self._sock.recv(size)
        except BlockingIOError as error:  # a timeout of 0 and nothing there
            raise TimeoutError("request head deadline") from error

    def __getattr__(self, name):
        return getattr(self._sock, name)


@contextlib.contextmanager
def reads_until(unreader, deadline: float):
    """Inside, every read of ``unreader``'s socket waits at most until ``deadline`` (``HeadSocket``);
    after, the socket is back as gthread left it (blocking), for what it reads and writes next."""
    sock = unreader.sock
    unreader.sock = HeadSocket(sock, deadline)
    try:
        yield
    finally:
        unreader.sock = sock
        sock.settimeout(None)


class HeadDeadline:
    """A connection's request parser whose every request's line and headers must arrive within
    ``seconds`` of the connection being handed to the worker's threads (``EnvelopeWorker``: when it
    was accepted, or became readable again), time in their queue included, or within a grace of a
    quarter of that (1 s at most) from when a thread asks for them: ``HeadTimeout`` past both, which
    the worker answers 408 before it shuts the connection. The queue time keeps slow clients queued
    behind others from holding a thread each a whole timeout more; the grace lets a client whose
    connection waited idle (a browser's preconnect) send a head of several pieces."""

    def __init__(self, parser, conn, seconds: float) -> None:
        self._parser, self._conn, self._seconds = parser, conn, seconds
        self._grace = min(1.0, seconds / 4)

    def __iter__(self):
        return self

    def __next__(self):
        deadline = max(self._conn.handed_at + self._seconds, time.monotonic() + self._grace)
        try:
            with reads_until(self._parser.unreader, deadline):
                return next(self._parser)
        except TimeoutError as error:
            raise HeadTimeout(self._seconds) from error

    def __getattr__(self, name):  # finish_body, the unreader and the rest: the parser's own
        return getattr(self._parser, name)


class EnvelopeWorker(ThreadWorker):
    """``gthread`` with JSON errors and a deadline on request heads (``gunicorn.conf.py`` sets it as
    ``worker_class``)."""

    def enqueue_req(self, conn):
        if "init" not in vars(conn):  # a new connection: its parser, once made, gets the deadline
            conn.init = functools.partial(self._init_connection, conn, conn.init)
        conn.handed_at = time.monotonic()  # where the head's deadline starts
        super().enqueue_req(conn)

    @functools.cached_property
    def head_timeout(self) -> float:
        """``VIRALSPOT_GUNICORN_HEADER_TIMEOUT`` as the app loaded it (read once a worker)."""
        config = getattr(getattr(self, "wsgi", None), "config", {})
        return config.get("GUNICORN_HEADER_TIMEOUT", Config.GUNICORN_HEADER_TIMEOUT)

    def _init_connection(self, conn, init) -> None:
        made = conn.parser is None
        init()
        if made and conn.parser is not None and not conn.is_http2:
            conn.parser = HeadDeadline(conn.parser, conn, self.head_timeout)

    def _keepalive_after(self, conn, keepalive):
        if not keepalive or conn.is_http2:
            return super()._keepalive_after(conn, keepalive)
        with reads_until(conn.parser.unreader, time.monotonic() + BODY_DRAIN_SECONDS):  # one deadline for all
            return super()._keepalive_after(conn, keepalive)

    def _cors_headers(self) -> str:
        app = getattr(self, "wsgi", None)
        any_origin = getattr(app, "extensions", {}).get("viralspot.cors_origins") == ["*"]
        return ANY_ORIGIN_HEADERS if any_origin else ""

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, HeadTimeout):
            code, detail = "REQUEST_TIMEOUT", f"The request line and headers did not all arrive within {exc.seconds} s"
        elif isinstance(exc, LimitRequestLine):
            code, detail = "URI_TOO_LONG", f"The request line is longer than {self.cfg.limit_request_line} bytes"
        elif isinstance(exc, LimitRequestHeaders):
            code, detail = "HEADERS_TOO_LARGE", f"Request headers over the server's limits: {exc}"
        elif isinstance(exc, (ParseException, ValueError)) and not isinstance(exc, _RESPONSE_ERRORS):
            code, detail = "BAD_REQUEST", parse_error_detail(exc)
        else:
            self.log.exception("Error handling request")
            code, detail = "INTERNAL_ERROR", "Internal server error"
        request_id = uuid.uuid4().hex
        if code != "INTERNAL_ERROR":
            self.log.warning("Invalid request from ip=%s: %s [%s]", (addr or ("",))[0], type(exc).__name__, request_id)
        try:
            util.write_nonblock(client, error_bytes(code, detail, request_id, self._cors_headers()))
            if code == "REQUEST_TIMEOUT":  # a client still there: its close must not linger 2 s on the loop
                client.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - the client may be gone
            self.log.debug("Failed to send error message.")
