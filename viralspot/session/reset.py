"""Resetting a session: the store call and the documented response body."""
from __future__ import annotations

import logging

from ..clock import utc_timestamp
from ..logs import session_fingerprint
from ..store import SessionStoreBackend
from ..store.base import ResetResult

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
        log.info("reset session %s: cleared %d served items", session_fingerprint(session_id),
                 result.cleared_items_count)
    else:
        log.info("reset requested for unknown session %s", session_fingerprint(session_id))
    return reset_body(session_id, result, store.storage_type)


def reset_body(session_id: str, result: ResetResult, storage_type: str) -> tuple[dict, str]:
    """The response ``data`` and ``message`` of a reset that found ``result``."""
    data = {
        "session_reset": {"session_id": session_id, "operation_status": "completed", "session_found": result.found,
                          "cleared_items_count": result.cleared_items_count, "memory_freed": result.found},
        "next_steps": dict(_NEXT_STEPS_FOUND if result.found else _NEXT_STEPS_NOT_FOUND),
        "timestamp": utc_timestamp(),
        "server_info": {"total_active_sessions": result.total_active_sessions, "session_storage_type": storage_type},
    }
    return data, FOUND_MESSAGE if result.found else NOT_FOUND_MESSAGE


def reset_examples() -> dict:
    """Both documented reset bodies, built by the real code."""
    examples = {}
    for name, session_id, result in (("found", "user_session_abc123", ResetResult(True, 47, 156)),
                                     ("not_found", "nonexistent_session_xyz789", ResetResult(False, 0, 156))):
        data, message = reset_body(session_id, result, "in_memory_dict")
        data["timestamp"] = "2024-01-15T10:30:00.000Z"
        examples[name] = {"summary": message, "value": {"success": True, "data": data, "message": message}}
    return examples
