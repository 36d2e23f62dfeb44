"""Resetting a session: the store call and the documented response body."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from ..store import SessionStoreBackend
from ..clock import utc_timestamp

log = logging.getLogger(__name__)

FOUND_MESSAGE = "Session reset successfully"
NOT_FOUND_MESSAGE = "Session not found - no data to reset"

_NEXT_STEPS_FOUND = {
    "randomization": "Fresh randomization will be applied",
    "content_delivery": "Previously seen content may now reappear in random feeds",
    "integration": "Compatible with /api/reels and /api/posts random_order=true",
}
_NEXT_STEPS_NOT_FOUND = {
    "randomization": "New session will be created on first content request",
    "content_delivery": "Fresh content delivery experience will be provided",
    "integration": "Ready for content endpoints with random ordering",
}


def reset_session(store: SessionStoreBackend, session_id: str) -> tuple[dict, str]:
    """Reset ``session_id`` in ``store``; return the response ``data`` and ``message``."""
    result = store.reset(session_id)
    if result.found:
        log.info("reset session %s: cleared %d served items", session_id, result.cleared_items_count)
    else:
        log.info("reset requested for unknown session %s", session_id)
    data = {
        "session_reset": {"session_id": session_id, "operation_status": "completed", "session_found": result.found,
                          "cleared_items_count": result.cleared_items_count, "memory_freed": result.found},
        "next_steps": dict(_NEXT_STEPS_FOUND if result.found else _NEXT_STEPS_NOT_FOUND),
        "timestamp": utc_timestamp(),
        "server_info": {"total_active_sessions": result.total_active_sessions,
                        "session_storage_type": store.storage_type},
    }
    return data, FOUND_MESSAGE if result.found else NOT_FOUND_MESSAGE


_EXAMPLE_SESSIONS = ("user_session_abc123", "nonexistent_session_xyz789")


def _not_an_example(record: logging.LogRecord) -> bool:
    return not any(arg in _EXAMPLE_SESSIONS for arg in (record.args or ()) if isinstance(arg, str))


def reset_examples() -> dict:
    """Both documented reset bodies, built by the real code on a stand-in store."""
    from ..store.base import ResetResult

    examples = {}
    log.addFilter(_not_an_example)
    try:
        for name, session_id, result in (("found", _EXAMPLE_SESSIONS[0], ResetResult(True, 47, 156)),
                                         ("not_found", _EXAMPLE_SESSIONS[1], ResetResult(False, 0, 156))):
            store = SimpleNamespace(storage_type="in_memory_dict", reset=lambda _session_id, result=result: result)
            data, message = reset_session(store, session_id)
            data["timestamp"] = "2024-01-15T10:30:00.000Z"
            examples[name] = {"summary": message, "value": {"success": True, "data": data, "message": message}}
    finally:
        log.removeFilter(_not_an_example)
    return examples
