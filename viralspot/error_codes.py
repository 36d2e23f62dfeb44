"""The ``error_code`` values of the error envelope (status and troubleshooting text of each), and
``ApiError``, which views raise to answer one (``errors.py`` maps it to the response)."""
from __future__ import annotations

#: error_code -> (default HTTP status, troubleshooting text). The README lists these.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "MISSING_PARAMETER": (400, "Add the required query parameter to the request"),
    "EMPTY_VALUE": (400, "Provide a non-empty value for the parameter"),
    "TOO_LONG": (400, "Use a session ID of at most 255 characters"),
    "INVALID_FORMAT": (400, "Use only letters, numbers, dots, underscores, and hyphens in session IDs"),
    "INVALID_PARAMETER": (400, "Check the parameter's type and allowed range in the API documentation"),
    "BAD_REQUEST": (400, "Check the request's syntax and parameters"),
    "NOT_FOUND": (404, "Check the URL; the API lives under /api (see GET /health)"),
    "SESSION_LIMIT": (400, "Reset the session (POST /api/reset-session) to start a fresh one"),
    "SESSION_NOT_FOUND": (404, "A session exists from its first random page until it is reset or idle for the "
                               "session TTL; page a random feed from offset 0 to start one"),
    "METHOD_NOT_ALLOWED": (405, "Use the HTTP method the endpoint documents"),
    "UNAUTHORIZED": (401, "Send Authorization: Bearer <the admin token> (VIRALSPOT_ADMIN_TOKEN)"),
    "RATE_LIMITED": (429, "Slow down: wait the seconds of the Retry-After header, then retry"),
    "REQUEST_TIMEOUT": (408, "Send the request line and headers at once: the server waits "
                             "VIRALSPOT_GUNICORN_HEADER_TIMEOUT seconds for them"),
    "URI_TOO_LONG": (414, "Send a shorter request line (detail gives the limit): fewer or shorter arguments"),
    "HEADERS_TOO_LARGE": (431, "Send fewer or smaller headers (each line at most 8,190 bytes, 100 in all)"),
    "SESSION_CONFLICT": (503, "The session is busy with concurrent requests; retry shortly"),
    "SESSION_STORE_UNAVAILABLE": (503, "The session store cannot be reached; retry shortly"),
    "DATABASE_UNAVAILABLE": (503, "The content database cannot be reached; retry shortly"),
    "INTERNAL_ERROR": (500, "Please retry the request. If the problem persists, contact system administrator"),
}


class ApiError(Exception):
    """An error answered with the envelope. ``error_code`` is one of ``ERROR_CODES``."""

    def __init__(self, detail: str, error_code: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error_code = error_code
        default_status, self.troubleshooting = ERROR_CODES[error_code]
        self.status = status or default_status
