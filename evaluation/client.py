"""One chat completion per entry through the ``openai`` SDK, with retries and a hard timeout.

Transient failures (connection refused or reset, 429, 502–504) are retried with backoff; a
request that runs past the per-request timeout is *not* retried (a server that hangs once
tends to hang again, and waiting three times would stall the run) and, like every request
that ends in an error, counts as an error and never as a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class Endpoint:
    label: str
    base_url: str
    model: str
    api_key: str = "EMPTY"


@dataclass
class Reply:
    """What came back: calls as sent by the server (names unmapped, arguments as raw strings)."""

    content: str | None = None
    tool_calls: list[dict[str, str]] = field(default_factory=list)
    finish_reason: str | None = None
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None


def api_base(url: str) -> str:
    """``http://host:port`` or ``.../v1`` → the SDK's base URL (with ``/v1``)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class EndpointError(Exception):
    """An endpoint the evaluation cannot use: one line naming its URL and what to check."""


def check_url(url: str, flag: str) -> None:
    """Refuse a URL the SDK would fail on with a vague "Connection error." (no scheme, another scheme)."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"{flag} {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8000)")


def connection_problem(exc: BaseException, timeout_s: float | None = None) -> str:
    """Why a connection failed, in a few words ("connection refused", "name or service not known")."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return f"no answer within {timeout_s:g} s" if timeout_s else "timed out"
    cause: BaseException | None = exc
    reason = ""
    while cause is not None:  # the innermost cause says most: ConnectionRefusedError, gaierror, ...
        text = str(cause).strip()
        if text and text != "Connection error.":
            reason = text
        cause = cause.__cause__ or cause.__context__
    if reason.startswith("[Errno"):
        reason = reason.partition("] ")[2] or reason
    return (reason[:1].lower() + reason[1:]) if reason else type(exc).__name__


def make_client(endpoint: Endpoint, timeout_s: float) -> Any:
    from openai import OpenAI

    # Our own retry loop decides what is transient, so the SDK's is off.
    return OpenAI(base_url=api_base(endpoint.base_url), api_key=endpoint.api_key or "EMPTY",
                  timeout=timeout_s, max_retries=0)


def complete(client: Any, model: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
             max_tokens: int, retries: int, backoff_s: float = 1.0) -> Reply:
    import openai

    request: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
    if tools:
        request["tools"] = tools
    reply = Reply()
    for attempt in range(retries + 1):
        reply.attempts = attempt + 1
        start = time.perf_counter()
        try:
            response = client.chat.completions.create(**request)
        except openai.APITimeoutError:
            reply.latency_s = time.perf_counter() - start
            reply.error = "timeout"
            return reply
        except (openai.APIConnectionError, openai.APIStatusError) as exc:
            reply.latency_s = time.perf_counter() - start
            status = getattr(exc, "status_code", None)
            reply.error = (f"HTTP {status}: {_message(exc)}" if status
                           else f"connection error: {connection_problem(exc)}")
            if attempt < retries and (status is None or status in RETRY_STATUSES):
                time.sleep(backoff_s * 2 ** attempt)
                continue
            return reply
        reply.latency_s = time.perf_counter() - start
        return _parse(response, reply)
    return reply


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(exc)[:300]


def _parse(response: Any, reply: Reply) -> Reply:
    reply.error = None
    try:
        choice = response.choices[0]
        message = choice.message
    except (AttributeError, IndexError, TypeError):
        reply.error = f"malformed response: {str(response)[:300]}"
        return reply
    reply.finish_reason = choice.finish_reason
    reply.content = message.content
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        reply.tool_calls.append({"name": getattr(function, "name", None) or "",
                                 "arguments": getattr(function, "arguments", None) or ""})
    return reply
