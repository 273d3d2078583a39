"""The one SSE reassembler (loadtest/chat_stream.py): what it rebuilds and which broken streams it names."""

from __future__ import annotations

import copy

import pytest
from chat_stream import parse_sse, reassemble  # loadtest/, on the path by pytest's pythonpath (pyproject.toml)


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def call_delta(index: int, arguments: str, **first: str) -> dict:
    function = {"arguments": arguments, **({"name": first["name"]} if "name" in first else {})}
    return {"tool_calls": [{"index": index, **{k: v for k, v in first.items() if k != "name"}, "function": function}]}


TWO_CALLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk(call_delta(0, "", id="call_a", type="function", name="get_weather")),
    chunk(call_delta(0, '{"city": ')),
    chunk(call_delta(0, '"Paris"}')),
    chunk(call_delta(1, '{"city": "Rome"}', id="call_b", type="function", name="get_weather")),
    chunk({}, "tool_calls"),
    {"object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 9}},
]


def test_a_good_stream_adds_up_to_its_message():
    stream = reassemble(TWO_CALLS)
    assert stream.tool_calls == [
        {"id": "call_a", "type": "function", "name": "get_weather", "arguments": '{"city": "Paris"}'},
        {"id": "call_b", "type": "function", "name": "get_weather", "arguments": '{"city": "Rome"}'}]
    assert (stream.content, stream.finish_reason, stream.usage, stream.problems) == (
        None, "tool_calls", {"total_tokens": 9}, [])
    text = reassemble([chunk({"content": "Hel"}), chunk({"content": "lo"}), chunk({}, "stop")])
    assert (text.content, text.finish_reason, text.tool_calls) == ("Hello", "stop", [])


def broken(where: int, delta: dict | None = None, finish: str | None = None) -> list[dict]:
    chunks = copy.deepcopy(TWO_CALLS)
    chunks[where] = chunk(delta if delta is not None else {}, finish)
    return chunks


@pytest.mark.parametrize("chunks,problem", [
    (broken(1, call_delta(0, "", type="function", name="get_weather")), "first delta lacks id, type or name"),
    (broken(1, call_delta(0, "", id="call_a", type="function")), "first delta lacks id, type or name"),
    (broken(2, call_delta(0, '{"city": ', id="call_a")), "id or name sent again"),
    (broken(3, call_delta(0, '"Paris"}', name="get_weather")), "id or name sent again"),
    (broken(4, call_delta(2, "{}", id="call_c", type="function", name="f")), "index 2 out of order"),
    (broken(0, None, "stop"), "second finish_reason"),
    (TWO_CALLS[:2] + [{"error": {"message": "boom"}}], "in-band error"),
    ([{"object": "chat.completion", "choices": []}], "not a chat.completion.chunk"),
])
def test_broken_wire_rules_are_named(chunks, problem):
    problems = reassemble(chunks).problems
    assert len(problems) == 1 and problem in problems[0], problems


def test_sse_events_and_the_done_marker():
    body = ': keep-alive\n\ndata: {"a": 1}\n\ndata:{"b": 2}\n\ndata: [DONE]\n\n'
    assert parse_sse(body) == ([{"a": 1}, {"b": 2}], True)
    assert parse_sse('data: {"a": 1}\n\n') == ([{"a": 1}], False)
