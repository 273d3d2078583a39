"""How an agent loop ends: calls already answered, and the conversation the answer turn sees.

Pure functions over plain message dicts (``{"role", "content", "tool_calls"?, "tool_call_id"?}``).
Hammer models answer ``[]`` once the tool results hold what the user asked for; they are not
trained to write the final answer, so the server asks the model again without the tool format
(the Hammer authors' own client does the same). Small models also repeat a call they already
got a result for; the loop guard drops such calls so the loop ends, under every ``tool_choice``
(under ``required`` the serving layer then offers the tools not called yet: ``answered_tools``).
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from hammer.server.grammar.simplify import canon


def call_key(name: str, arguments: Mapping[str, Any]) -> str:
    """A call's identity: its name and its arguments compared as JSON values (key order ignored).

    >>> call_key("f", {"b": 1, "a": [1.0]}) == call_key("f", {"a": [1], "b": 1})
    True
    """
    return canon([name, dict(arguments)])  # JSON has one number type: 1 and 1.0 are the same value


def current_turn(messages: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
    """The messages after the last user message: the agent's steps on the current question.

    >>> [m["role"] for m in current_turn([{"role": "user"}, {"role": "assistant"}, {"role": "tool"}])]
    ['assistant', 'tool']
    """
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    return messages[last_user + 1:]


def has_tool_results(messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether tool results came back since the last user message (the model may now answer)."""
    return any(m["role"] == "tool" for m in current_turn(messages))


def answered_calls(messages: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Keys of the calls made since the last user message that got a tool result.

    A call is answered by a tool message with its id; clients that send other ids get the
    tool messages that follow the call matched by position.

    >>> turn = [{"role": "user", "content": "q"},
    ...         {"role": "assistant", "tool_calls": [_call("c1", "f", '{"x": 1}'), _call("c2", "g", "{}")]},
    ...         {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    >>> sorted(answered_calls(turn)) == [call_key("f", {"x": 1})]
    True
    """
    return frozenset(call_key(c["function"]["name"], _arguments(c)) for c in _answered(messages))


def answered_tools(messages: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Names of the tools with an answered call since the last user message.

    >>> sorted(answered_tools([{"role": "user", "content": "q"},
    ...     {"role": "assistant", "tool_calls": [_call("c1", "f", "{}"), _call("c2", "g", "{}")]},
    ...     {"role": "tool", "tool_call_id": "c2", "content": "r"}]))
    ['g']
    """
    return frozenset(c["function"]["name"] for c in _answered(messages))


def _answered(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    turn = current_turn(messages)
    answered = []
    for i, message in enumerate(turn):
        calls = message.get("tool_calls") or []
        if message["role"] != "assistant" or not calls:
            continue
        results = _following_tools(turn, i + 1)
        ids = {m.get("tool_call_id") for m in results}
        for position, call in enumerate(calls):
            if call.get("id") in ids or (not ids & {c.get("id") for c in calls} and position < len(results)):
                answered.append(call)
    return answered


def _following_tools(messages: Sequence[Mapping[str, Any]], start: int) -> list[Mapping[str, Any]]:
    results = []
    for message in messages[start:]:
        if message["role"] != "tool":
            break
        results.append(message)
    return results


def _arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    raw = call["function"].get("arguments") or "{}"
    value = json.loads(raw) if isinstance(raw, str) else raw
    return value if isinstance(value, dict) else {}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def answer_messages(messages: Sequence[Mapping[str, Any]], template_handles_tools: bool) -> list[dict[str, Any]]:
    """The conversation for the answer turn, so the model sees what it called and what came back.

    A chat template that renders ``tool_calls`` and ``tool`` turns gets the messages as they are.
    Others would render a calls-only assistant turn as an empty turn, and a ``tool`` role the
    model never saw in training: there each call becomes assistant text and each result a user
    turn, and turns of the same role are merged (many templates require alternating roles).

    >>> msgs = [{"role": "user", "content": "Weather in Paris?"},
    ...         {"role": "assistant", "content": "", "tool_calls": [_call("c1", "get_weather", '{"city": "Paris"}')]},
    ...         {"role": "tool", "tool_call_id": "c1", "content": "17 C"}]
    >>> for m in answer_messages(msgs, False): print(m["role"], "|", m["content"])
    user | Weather in Paris?
    assistant | I called get_weather({"city": "Paris"}).
    user | The result of get_weather is: 17 C
    Now answer my question: Weather in Paris?
    """
    if template_handles_tools:
        return [dict(m) for m in messages]
    names: dict[str, str] = {}
    plain: list[dict[str, Any]] = []
    question = ""
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "user":
            question = content
        if role == "assistant" and message.get("tool_calls"):
            described = []
            for call in message["tool_calls"]:
                function = call["function"]
                described.append(f"{function['name']}({function.get('arguments') or '{}'})")
                names[call.get("id", "")] = function["name"]
            content = "\n".join(filter(None, [content, f"I called {', '.join(described)}."]))
        elif role == "tool":
            # Measured on SmolLM2-135M: results as user text that repeats the question get answered
            # with the result far more often than results alone or in a system turn.
            role = "user"
            content = f"The result of {names.get(message.get('tool_call_id', ''), 'the tool')} is: {content}"
        _append(plain, role, content)
    if plain and plain[-1]["role"] == "user" and has_tool_results(messages):
        plain[-1]["content"] += f"\nNow answer my question: {question}"
    return plain


def _append(messages: list[dict[str, Any]], role: str, content: str) -> None:
    if messages and messages[-1]["role"] == role and role != "system":
        messages[-1]["content"] += "\n" + content
    else:
        messages.append({"role": role, "content": content})
