"""Response checks of the load test: plain functions (no Locust import), so tests can use them directly."""

from __future__ import annotations

import json
from typing import Any

from chat_stream import reassemble

FINISH_REASONS = {"stop", "length", "tool_calls"}


def check_completion(data: Any, tool_names: set[str]) -> str | None:
    """Why a non-streamed response body is not a valid chat completion, or None when it is."""
    if not isinstance(data, dict) or data.get("object") != "chat.completion":
        return "not a chat.completion object"
    choices = data.get("choices")
    if not isinstance(choices, list) or len(choices) != 1:
        return "expected exactly one choice"
    choice = choices[0]
    if choice.get("finish_reason") not in FINISH_REASONS:
        return f"bad finish_reason {choice.get('finish_reason')!r}"
    message = choice.get("message") or {}
    if message.get("role") != "assistant":
        return "message.role is not assistant"
    calls = message.get("tool_calls") or []
    for call in calls:
        error = check_call(call.get("function") or {}, tool_names)
        if error:
            return error
    if not calls and not isinstance(message.get("content"), str):
        return "neither content nor tool_calls"
    usage = data.get("usage") or {}
    if not isinstance(usage.get("total_tokens"), int):
        return "missing usage"
    return None


def check_call(function: dict[str, Any], tool_names: set[str]) -> str | None:
    if function.get("name") not in tool_names:
        return f"tool call to undeclared function {function.get('name')!r}"
    try:
        arguments = json.loads(function.get("arguments", ""))
    except (TypeError, ValueError):
        return "tool call arguments are not JSON"
    return None if isinstance(arguments, dict) else "tool call arguments are not a JSON object"


def check_stream(chunks: list[dict[str, Any]], tool_names: set[str]) -> str | None:
    """Why a list of parsed SSE chunks (before ``[DONE]``) is not a valid chat-completion stream."""
    if not chunks:
        return "empty stream"
    stream = reassemble(chunks)
    if stream.problems:
        return stream.problems[0]
    if stream.finish_reason not in FINISH_REASONS:
        return f"stream ended without a finish_reason (got {stream.finish_reason!r})"
    for call in stream.tool_calls:
        error = check_call(call, tool_names)
        if error:
            return error
    return None


def has_output(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices", []):
        delta = choice.get("delta", {})
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return False
