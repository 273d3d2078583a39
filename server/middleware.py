"""Pure ASGI middleware for API keys and request metrics.

Pure ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware wraps the
response stream, which hides a client's disconnect from streaming responses.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Awaitable, Callable, MutableMapping

from server.errors import AuthenticationFailed
from server.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/health"})


class AuthAndMetricsMiddleware:
    def __init__(self, app: ASGIApp, api_keys: list[str], metrics: Metrics) -> None:
        self.app = app
        self.keys = [k.encode() for k in api_keys]
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.keys and scope["path"] not in PUBLIC_PATHS and not self._authorized(scope):
                await self._reject(send_and_record)
            else:
                await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # templates keep labels bounded
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        supplied = token.strip() if scheme.lower() == b"bearer" else b""
        # Compare against every key so the time taken does not reveal which one nearly matched.
        return any([hmac.compare_digest(supplied, key) for key in self.keys])

    @staticmethod
    async def _reject(send: Send) -> None:
        error = AuthenticationFailed("Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.",
                                     code="invalid_api_key")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": error.status_code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
