"""Pure ASGI middleware: request ids, access logs, body-size limit, API keys, request metrics.

Pure ASGI rather than ``@app.middleware``: Starlette's BaseHTTPMiddleware wraps the
response stream, which hides a client's disconnect from streaming responses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any, Awaitable, Callable, MutableMapping, Sequence

from hammer.server.errors import APIError, AuthenticationFailed, InvalidRequest
from hammer.server.metrics import Metrics
from hammer.server.request_context import API_KEY_ID
from starlette.routing import BaseRoute, Match

log = logging.getLogger("hammer.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BodyTooLarge(Exception):
    """A chunked body grew past the limit while the app was reading it."""


class AuthAndMetricsMiddleware:
    def __init__(self, app: ASGIApp, api_keys: list[str], metrics: Metrics, public_paths: frozenset[str],
                 max_body_bytes: int, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes  # the app's routes, to label requests refused before routing
        self.keys = [k.encode() for k in api_keys]
        self.key_ids = [api_key_id(k) for k in self.keys]
        self.metrics = metrics
        self.public_paths = public_paths
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        supplied_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied_id if _CLIENT_REQUEST_ID.match(supplied_id) else f"req_{uuid.uuid4().hex[:24]}"
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["api_key_id"] = None
        status = 500
        response_started = False

        async def send_and_record(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            error = self._admission_error(scope, headers)
            if error is not None:
                await _send_error(send_and_record, error)
            else:
                identity = API_KEY_ID.set(state["api_key_id"])  # the same id, for code below the HTTP layer
                try:
                    await self.app(scope, self._limited(receive), send_and_record)
                finally:
                    API_KEY_ID.reset(identity)
        except BodyTooLarge:
            if not response_started:
                await _send_error(send_and_record, self._too_large())
        finally:
            route = self._route_template(scope)
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
            log.info(json.dumps({"request_id": request_id, "method": scope["method"], "path": scope["path"],
                                 "status": status, "duration_ms": round(elapsed * 1000, 1),
                                 "client": (scope.get("client") or ("", 0))[0]}))

    def _route_template(self, scope: Scope) -> str:
        """The route's path template (bounded label values), also for requests refused before routing."""
        if scope.get("route") is not None:
            return scope["route"].path
        return next((getattr(r, "path", "unmatched") for r in self.routes if r.matches(scope)[0] != Match.NONE),
                    "unmatched")

    def _admission_error(self, scope: Scope, headers: dict[bytes, bytes]) -> APIError | None:
        if self.keys and scope["path"] not in self.public_paths:
            key_id = self._authenticate(scope.get("headers") or [])
            if key_id is None:
                return AuthenticationFailed(
                    "Incorrect API key provided. Send one key, as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
                    code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            scope["state"]["api_key_id"] = key_id
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> InvalidRequest:
        return InvalidRequest(f"The request body is larger than the limit of {self.max_body_bytes} bytes.",
                              code="request_too_large")

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge
            return message

        return receive_limited

    def _authenticate(self, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
        """The id of the key this request authenticated with, or None."""
        supplied = supplied_credential(headers)
        if supplied is None:
            return None
        # Compare against every key so the time taken does not reveal which one nearly matched.
        matches = [hmac.compare_digest(supplied, key) for key in self.keys]
        return next((key_id for key_id, match in zip(self.key_ids, matches) if match), None)


def api_key_id(key: bytes) -> str:
    """What names a key once it authenticated (the Responses store's namespace): a hash, so no state holds keys."""
    return hashlib.sha256(key).hexdigest()


def supplied_credential(headers: Sequence[tuple[bytes, bytes]]) -> bytes | None:
    """The one credential a request carries, or None when it carries none, or several that disagree.

    Every header is read, not a dict of them: a dict keeps one of several same-named headers, and
    which one differs between readers (a proxy, this middleware, a route), so several are refused.

    >>> supplied_credential([(b"authorization", b"Bearer k1")]), supplied_credential([(b"x-api-key", b"k1")])
    (b'k1', b'k1')
    >>> supplied_credential([(b"authorization", b"Bearer k1"), (b"x-api-key", b"k1")])
    b'k1'
    >>> [supplied_credential(h) for h in ([(b"authorization", b"Bearer k1"), (b"authorization", b"Bearer k2")],
    ...     [(b"x-api-key", b"k1"), (b"x-api-key", b"k1")], [(b"authorization", b"Bearer k1"), (b"x-api-key", b"k2")],
    ...     [(b"authorization", b"Basic k1")], [])]
    [None, None, None, None, None]
    """
    authorization = [v for k, v in headers if k.lower() == b"authorization"]
    api_key = [v for k, v in headers if k.lower() == b"x-api-key"]
    if len(authorization) > 1 or len(api_key) > 1:
        return None
    supplied = {v.strip() for v in api_key}
    if authorization:
        scheme, _, token = authorization[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        supplied.add(token.strip())
    return supplied.pop() if len(supplied) == 1 else None


async def _send_error(send: Send, error: APIError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *((k.lower().encode(), v.encode()) for k, v in error.headers.items())]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
