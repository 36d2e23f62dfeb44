"""gunicorn's own log lines (``gunicorn.conf.py`` sets ``logger_class``): for ``VIRALSPOT_LOG_FORMAT=json``
``GunicornJsonLogger``, the access log as one JSON object per request, with the ``X-Request-ID`` the
app answered, and the error log through the app's ``JsonFormatter``; for ``text``,
``GunicornTextLogger``, whose access lines write a client's control characters as ``\\xNN``. Neither
writes a session id: one in a ``session_id`` argument, an inspection path or the ``Referer`` shows as
its fingerprint (``logs.session_fingerprint``).
"""
from __future__ import annotations

import json
import traceback

from gunicorn.glogging import Logger, SafeAtoms

from .clock import utc_timestamp
from .logs import JsonFormatter, escape_controls, without_session_ids
from .request_ids import HEADER


#: The access-line values that may hold a session id: the request line, the path, the query, the Referer.
_WITH_SESSION_IDS = ("r", "U", "q", "f")


class _EscapedAtoms(SafeAtoms):
    """gunicorn's access-line values (quotes escaped) with control characters written as ``\\xNN``,
    and session ids as their fingerprints (``logs.without_session_ids``)."""

    def __init__(self, atoms) -> None:
        super().__init__({key: _escaped(key, value) for key, value in atoms.items()})


def _escaped(key: str, value):
    if not isinstance(value, str):
        return value
    if key in _WITH_SESSION_IDS:
        value = without_session_ids(value)
    return escape_controls(value)


class GunicornTextLogger(Logger):
    """gunicorn's logger for text lines: what a client sends cannot drive the terminal that reads them."""

    atoms_wrapper_class = _EscapedAtoms


class GunicornJsonLogger(Logger):
    """gunicorn's logger, writing JSON lines."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            atoms = self.atoms(resp, req, environ, request_time)
            status = atoms.get("s")
            entry = {
                "time": utc_timestamp(), "level": "INFO", "logger": "gunicorn.access",
                "message": f"{atoms.get('m')} {without_session_ids(atoms.get('U') or '')} {status}",
                "request_id": atoms.get("{%s}o" % HEADER.lower(), "-"),
                "method": atoms.get("m"), "path": without_session_ids(atoms.get("U") or ""),
                "query": without_session_ids(atoms.get("q") or ""),
                "status": int(status) if str(status).isdigit() else status, "bytes": atoms.get("B"),
                "duration_seconds": request_time.total_seconds(), "remote_addr": atoms.get("h"),
                "user_agent": atoms.get("a"),
            }
            self.access_log.info("%s", json.dumps(entry, default=str))  # ASCII: controls escaped
        except Exception:  # noqa: BLE001 - as gunicorn's own access(): report, never fail the request
            self.error(traceback.format_exc())
