"""A Responses request → the chat-completions request ``ChatService.prepare`` validates and runs.

Everything (limits, tool plans, grammars, the agent loop and answer turn) stays in the one chat
pipeline; this module only translates shapes, and translates error ``param``s back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from hammer.server.errors import APIError, InvalidRequest, param_path
from hammer.server.protocol import ChatCompletionRequest
from hammer.server.responses.protocol import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    OutputFunctionCall,
    OutputItem,
    ResponsesRequest,
    TextContent,
)
from pydantic import ValidationError


@dataclass(frozen=True)
class Origin:
    """Where a chat message came from, to name it in an error (``input[3]``, ``instructions``)."""

    param: str
    #: For an assistant message: the item of each of its ``tool_calls``.
    calls: tuple[str, ...] = ()
    #: A ``function_call_output`` item: chat's ``content``/``tool_call_id`` are its ``output``/``call_id``.
    output: bool = False


@dataclass(frozen=True)
class ChatRequest:
    request: ChatCompletionRequest
    origins: tuple[Origin, ...]
    #: The conversation without ``instructions`` (OpenAI does not carry them over), kept by the store.
    history: list[dict[str, Any]]


def to_chat(request: ResponsesRequest, previous: Sequence[dict[str, Any]] = ()) -> ChatRequest:
    """The chat request of a Responses request continuing the ``previous`` conversation.

    >>> r = ResponsesRequest.model_validate({"model": "m", "instructions": "Be brief.", "input": "Hi",
    ...     "max_output_tokens": 20, "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    ...     "tool_choice": {"type": "function", "name": "f"}})
    >>> chat = to_chat(r).request
    >>> [(m.role, m.content) for m in chat.messages]
    [('system', 'Be brief.'), ('user', 'Hi')]
    >>> chat.max_completion_tokens, chat.tools[0].function.name, chat.tool_choice.function.name
    (20, 'f', 'f')
    """
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    if request.instructions is not None:
        messages.append({"role": "system", "content": request.instructions})
        origins.append(Origin("instructions"))
    messages.extend(dict(m) for m in previous)
    origins.extend(Origin("previous_response_id") for _ in previous)
    new, new_origins = input_messages(request.input)
    messages.extend(new)
    origins.extend(new_origins)
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": False,
                            "parallel_tool_calls": request.parallel_tool_calls,
                            "temperature": request.temperature, "top_p": request.top_p}
    if request.tools is not None:
        body["tools"] = [{"type": "function", "function": {
            k: v for k, v in (("name", t.name), ("description", t.description), ("parameters", t.parameters),
                              ("strict", t.strict)) if v is not None}} for t in request.tools]
    if isinstance(request.tool_choice, str):
        body["tool_choice"] = request.tool_choice
    elif request.tool_choice is not None:
        body["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice.name}}
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    if request.user is not None:
        body["user"] = request.user
    fmt = request.text.format if request.text else None
    if fmt is not None:
        body["response_format"] = {"type": fmt.type}
        if fmt.type == "json_schema":
            if fmt.schema_ is None:
                raise InvalidRequest("text.format of type 'json_schema' needs a 'schema' object.",
                                     param="text.format.schema")
            body["response_format"]["json_schema"] = {
                "name": fmt.name or "response", "schema": fmt.schema_,
                **({"strict": fmt.strict} if fmt.strict is not None else {})}
    origins_t = tuple(origins)
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        described = "; ".join(f"{responses_param(param_path(e['loc']), origins_t) or 'body'}: {e['msg']}"
                              for e in errors[:5])
        raise InvalidRequest(f"Invalid request: {described}",
                             param=responses_param(param_path(errors[0]["loc"]), origins_t)) from None
    return ChatRequest(chat, origins_t, [*previous, *new])


def input_messages(items: list[Any] | str | None) -> tuple[list[dict[str, Any]], list[Origin]]:
    """Chat messages of ``input``: function calls join the assistant message before them.

    >>> from hammer.server.responses.protocol import ResponsesRequest as R
    >>> items = R.model_validate({"model": "m", "input": [{"role": "user", "content": "Weather?"},
    ...     {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
    ...     {"type": "function_call_output", "call_id": "c1", "output": "17 degrees"}]}).input
    >>> messages, origins = input_messages(items)
    >>> [m["role"] for m in messages], messages[1]["tool_calls"][0]["id"], messages[2]["tool_call_id"]
    (['user', 'assistant', 'tool'], 'c1', 'c1')
    >>> [o.param for o in origins], origins[1].calls
    (['input[0]', 'input[1]', 'input[2]'], ('input[1]',))
    """
    if items is None:
        return [], []
    if isinstance(items, str):
        return [{"role": "user", "content": items}], [Origin("input")]
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    for j, item in enumerate(items):
        param = f"input[{j}]"
        if isinstance(item, MessageItem):
            messages.append({"role": item.role, "content": _text(item.content)})
            origins.append(Origin(param))
        elif isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
                origins[-1] = Origin(origins[-1].param, (*origins[-1].calls, param))
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
                origins.append(Origin(param, (param,)))
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": _text(item.output)})
            origins.append(Origin(param, output=True))
    return messages, origins


def output_messages(output: Sequence[OutputItem]) -> list[dict[str, Any]]:
    """A response's output as the assistant message a later request continues from.

    >>> from hammer.server.responses.protocol import OutputMessage, OutputText
    >>> [message] = output_messages([OutputMessage(id="msg_1", content=[OutputText(text="Hi")]),
    ...                              OutputFunctionCall(id="fc_1", call_id="c", name="f", arguments="{}")])
    >>> message["role"], message["content"], message["tool_calls"]
    ('assistant', 'Hi', [{'id': 'c', 'type': 'function', 'function': {'name': 'f', 'arguments': '{}'}}])
    """
    text = "".join(part.text for item in output if item.type == "message" for part in item.content)
    calls = [{"id": i.call_id, "type": "function", "function": {"name": i.name, "arguments": i.arguments}}
             for i in output if isinstance(i, OutputFunctionCall)]
    if not text and not calls:
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


_MESSAGE = re.compile(r"^messages\[(\d+)\](.*)$")
_CALL = re.compile(r"^\.tool_calls\[(\d+)\](?:\.function)?(.*)$")
_RENAMED = ((re.compile(r"^tools\[(\d+)\]\.function"), r"tools[\1]"),
            (re.compile(r"^tool_choice\.function"), "tool_choice"),
            (re.compile(r"^response_format\.json_schema"), "text.format"),
            (re.compile(r"^response_format"), "text.format"),
            (re.compile(r"^max_completion_tokens$|^max_tokens$"), "max_output_tokens"),
            (re.compile(r"^messages$"), "input"))


def responses_param(param: str | None, origins: Sequence[Origin]) -> str | None:
    """A chat request's error ``param`` as the Responses request's field.

    >>> o = (Origin("instructions"), Origin("input[0]"), Origin("input[1]", ("input[1]", "input[2]")),
    ...      Origin("input[3]", output=True))
    >>> [responses_param(p, o) for p in ("tools[0].function.parameters", "messages[0].content",
    ...     "messages[1].content", "messages[2].tool_calls[1].function.arguments", "messages[3].content",
    ...     "response_format.json_schema.schema", "max_completion_tokens", "messages", "model", None)]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['tools[0].parameters', 'instructions', 'input[0].content', 'input[2].arguments', 'input[3].output',
     'text.format.schema', 'max_output_tokens', 'input', 'model', None]
    """
    if param is None:
        return None
    if match := _MESSAGE.match(param):
        index, rest = int(match[1]), match[2]
        if index >= len(origins):
            return "input"
        origin = origins[index]
        if origin.param in ("instructions", "previous_response_id", "input"):
            return origin.param
        if call := _CALL.match(rest):
            k = int(call[1])
            return (origin.calls[k] + call[2]) if k < len(origin.calls) else origin.param
        if origin.output:
            rest = re.sub(r"^\.content", ".output", re.sub(r"^\.tool_call_id", ".call_id", rest))
        return origin.param + rest
    for pattern, replacement in _RENAMED:
        if pattern.match(param):
            return pattern.sub(replacement, param, count=1)
    return param


def rename_param(exc: APIError, origins: Sequence[Origin]) -> APIError:
    """``exc`` with its ``param`` named as in the Responses request (its message may still say the chat name)."""
    exc.param = responses_param(exc.param, origins)
    return exc


def _text(content: TextContent) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)
