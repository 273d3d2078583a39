"""A streamed chat completion put back together, with the wire rules it broke on the way.

The one reassembler of the load test (``checks.check_stream``) and the tests (serving on a scripted
backend, end to end through the SDK). Plain functions, no Locust import; it lives here because Locust
runs ``loadtest/`` on its own (as top-level modules), without the tests package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stream:
    content: str | None = None  # None when no delta carried text
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # {"id", "type", "name", "arguments"}, by index
    invalid_tool_calls: list[Any] | None = None  # this server's extension, sent whole on one delta
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)  # broken wire rules, in the order met


def parse_sse(text: str) -> tuple[list[dict[str, Any]], bool]:
    """The JSON events of an SSE body, and whether it ended with ``data: [DONE]``."""
    events, done = [], False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue  # blank separators, comments
        payload = line[5:].strip()
        if payload == "[DONE]":
            done = True
            break
        events.append(json.loads(payload))
    return events, done


def reassemble(chunks: Iterable[dict[str, Any]]) -> Stream:
    """The message the chunks add up to; ``problems`` lists what an OpenAI client would trip on: an
    in-band error, a first tool-call delta without ``id``/``type``/``name``, ``id`` or ``name`` sent
    again, an index that skips ahead, a second ``finish_reason``."""
    stream = Stream()
    for chunk in chunks:
        if "error" in chunk:
            stream.problems.append(f"in-band error: {chunk['error']}")
            continue
        if chunk.get("object") != "chat.completion.chunk":
            stream.problems.append(f"not a chat.completion.chunk: {chunk.get('object')!r}")
        stream.usage = chunk.get("usage") or stream.usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                stream.content = (stream.content or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                _add_call_delta(stream, call)
            if delta.get("invalid_tool_calls") is not None:
                stream.invalid_tool_calls = delta["invalid_tool_calls"]
            if choice.get("finish_reason"):
                if stream.finish_reason is not None:
                    stream.problems.append(f"second finish_reason {choice['finish_reason']!r}")
                stream.finish_reason = choice["finish_reason"]
    return stream


def _add_call_delta(stream: Stream, delta: dict[str, Any]) -> None:
    index, function = delta.get("index"), delta.get("function") or {}
    if index == len(stream.tool_calls):  # the first delta of a call names it, once
        if not (delta.get("id") and delta.get("type") == "function" and function.get("name")):
            stream.problems.append(f"tool call {index}: first delta lacks id, type or name")
        stream.tool_calls.append({"id": delta.get("id") or "", "type": delta.get("type") or "",
                                  "name": function.get("name") or "", "arguments": ""})
    elif not isinstance(index, int) or not 0 <= index < len(stream.tool_calls):
        stream.problems.append(f"tool call index {index!r} out of order")
        return
    elif delta.get("id") or function.get("name"):
        stream.problems.append(f"tool call {index}: id or name sent again")
    stream.tool_calls[index]["arguments"] += function.get("arguments") or ""
