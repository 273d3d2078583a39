"""What the Responses and Messages streams share: SSE framing with a named event, and the in-band
error a stream sends once it has started (its builder wraps it in the API's own error event)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from hammer.server.errors import APIError, BackendUnavailable

log = logging.getLogger(__name__)


def named_sse(event: dict[str, Any]) -> str:
    """The event's type as the SSE event name, the event as its data."""
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


def stream_failure(exc: BaseException, what: str, object_id: str) -> APIError:
    """The error to report in-band for ``exc`` raised while streaming ``what`` (never dropped silently).

    >>> stream_failure(asyncio.CancelledError(), "message", "msg_1").code
    'server_shutting_down'
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, asyncio.CancelledError):  # still running when --shutdown-timeout ended
        return BackendUnavailable("The server is shutting down; retry the request.", code="server_shutting_down")
    log.error("streaming %s %s failed", what, object_id, exc_info=exc)
    return APIError(f"The server failed while generating this {what}.", code="server_error")
