"""Errors on the Messages paths in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.

The rest of the server answers OpenAI's ``{"error": {"message", "type", "param", "code"}}`` from one
mapping (``hammer.server.errors``) in several places: the exception handlers, and the middleware that
refuses a request before it is routed (401, body too large). Rather than teach each of them a second
shape, one outer ASGI layer re-renders the error answers of ``/v1/messages*`` paths, whoever made them.
"""

from __future__ import annotations

import json
from typing import Any

from hammer.server.messages.protocol import AnthropicError, AnthropicErrorBody
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/messages"

# Anthropic's error types by HTTP status; 503 (the backend is restarting, the server shutting down)
# is the nearest of Anthropic's: "temporarily overloaded", retry later.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
          503: "overloaded_error", 504: "timeout_error"}


def is_messages_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def anthropic_error(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """Anthropic's error body; the field at fault leads the message, as Anthropic writes it.

    >>> anthropic_error(400, "Duplicate tool name 'f'.", param="tools[1].name")
    {'type': 'error', 'error': {'type': 'invalid_request_error', 'message': "tools[1].name: Duplicate tool name 'f'."}}
    >>> anthropic_error(400, "The request body is larger than the limit.", code="request_too_large")["error"]["type"]
    'request_too_large'
    """
    kind = "request_too_large" if code == "request_too_large" else \
        _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    text = message if not param or f"{param}:" in message else f"{param}: {message}"  # once, if already there
    return AnthropicError(error=AnthropicErrorBody(type=kind, message=text)).model_dump()


def from_openai(status: int, body: bytes) -> bytes | None:
    """An OpenAI-shaped error body as Anthropic's, or None if ``body`` is not one.

    >>> from_openai(404, b'{"error": {"message": "Unknown.", "type": "invalid_request_error", '
    ...                  b'"param": "model", "code": "model_not_found"}}')
    b'{"type": "error", "error": {"type": "not_found_error", "message": "model: Unknown."}}'
    >>> from_openai(499, b"") is None
    True
    """
    try:
        error = json.loads(body)["error"]
        message, param, code = error["message"], error.get("param"), error.get("code")
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(message, str):
        return None
    return json.dumps(anthropic_error(status, message, param if isinstance(param, str) else None,
                                      code if isinstance(code, str) else None)).encode()


class AnthropicErrorShape:
    """Pure ASGI: on ``/v1/messages*``, an error answer (status 400 and up) in Anthropic's shape.

    Added outermost, so that it sees the auth middleware's 401s too. Successful answers, streams
    included, pass through untouched; only an error's small JSON body is held and rewritten.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_messages_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def send_anthropic(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body is complete
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(parts)
            rewritten = from_openai(start["status"], body)
            if rewritten is not None:
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                start = {**start, "headers": [*headers, (b"content-length", str(len(rewritten)).encode())]}
                body = rewritten
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_anthropic)
