"""A Messages request → the chat-completions request ``ChatService.prepare`` validates and runs.

Everything (limits, tool plans, grammars, the agent loop and answer turn) stays in the one chat
pipeline; this module only translates shapes, and translates error ``param``s back.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from hammer.server.errors import APIError, InvalidRequest, param_path
from hammer.server.messages.protocol import (
    AssistantTurn,
    CountTokensRequest,
    MessagesRequest,
    TextBlock,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
    UserTurn,
)
from hammer.server.protocol import ChatCompletionRequest
from hammer.server.serving import Prepared
from pydantic import ValidationError

# What a failed tool's result reads as (``is_error: true``): the model sees that the call failed.
ERROR_PREFIX = "Error: "


@dataclass(frozen=True)
class Origin:
    """Where a chat message came from, to name it in an error (``messages[3]``, ``system``)."""

    param: str
    #: For an assistant message: the ``tool_use`` block of each of its ``tool_calls``.
    calls: tuple[str, ...] = ()
    #: A ``tool_result`` block: chat's ``content``/``tool_call_id`` are its ``content``/``tool_use_id``.
    result: bool = False


@dataclass(frozen=True)
class ChatRequest:
    request: ChatCompletionRequest
    origins: tuple[Origin, ...]


def to_chat(request: MessagesRequest | CountTokensRequest) -> ChatRequest:
    """The chat request of a Messages request (or of a count_tokens request: the same prompt).

    >>> r = MessagesRequest.model_validate({"model": "m", "max_tokens": 20, "system": "Be brief.",
    ...     "messages": [{"role": "user", "content": "Hi"}], "stop_sequences": ["END"],
    ...     "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    ...     "tool_choice": {"type": "any", "disable_parallel_tool_use": True}})
    >>> chat = to_chat(r).request
    >>> [(m.role, m.content) for m in chat.messages]
    [('system', 'Be brief.'), ('user', 'Hi')]
    >>> chat.stop, chat.tools[0].function.name, chat.tool_choice, chat.parallel_tool_calls
    (['END'], 'f', 'required', False)
    """
    if request.messages[-1].role == "assistant":
        # Anthropic continues a final assistant turn (a "prefill"); the Hammer pipeline starts a new one.
        raise InvalidRequest("The last message must be a user message: continuing a final assistant message "
                             "(prefill) is not supported here.", param=f"messages[{len(request.messages) - 1}]")
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    if request.system is not None:
        messages.append({"role": "system", "content": _text_parts(request.system)})
        origins.append(Origin("system"))
    for i, message in enumerate(request.messages):
        new, new_origins = chat_messages(message, f"messages[{i}]")
        messages.extend(new)
        origins.extend(new_origins)
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": False}
    if request.tools is not None:
        body["tools"] = [{"type": "function", "function": {
            k: v for k, v in (("name", t.name), ("description", t.description), ("parameters", t.input_schema),
                              ("strict", t.strict)) if v is not None}} for t in request.tools]
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        body["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice is not None and not isinstance(choice, ToolChoiceNone):
        body["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    fmt = request.output_config.format if request.output_config else None
    if fmt is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.schema_}}
    if isinstance(request, MessagesRequest):
        # No max_tokens: the chat request may use the room the context leaves, which ``bounded`` then
        # limits to the request's max_tokens.
        body.update(temperature=request.temperature, top_p=request.top_p, stop=request.stop_sequences,
                    user=request.metadata.user_id if request.metadata else None)
    origins_t = tuple(origins)
    try:
        chat = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors()
        described = "; ".join(f"{messages_param(param_path(e['loc']), origins_t) or 'body'}: {e['msg']}"
                              for e in errors[:5])
        raise InvalidRequest(f"Invalid request: {described}",
                             param=messages_param(param_path(errors[0]["loc"]), origins_t)) from None
    return ChatRequest(chat, origins_t)


def bounded(prepared: Prepared, max_tokens: int) -> Prepared:
    """``prepared`` generating at most ``max_tokens``, or the room its context leaves if that is less.

    Anthropic's ``max_tokens`` is required, so clients send large ones (LangChain's default is 4096,
    Claude Code's 32000) that a small context cannot hold beside the prompt: rather than refuse them,
    generation stops at the context's end, as Anthropic's newer models do (``stop_reason``
    ``model_context_window_exceeded``).
    """
    params = prepared.generation.params
    if params.max_tokens <= max_tokens:
        return prepared
    generation = dataclasses.replace(prepared.generation, params=dataclasses.replace(params, max_tokens=max_tokens))
    return dataclasses.replace(prepared, generation=generation)


def chat_messages(message: UserTurn | AssistantTurn, param: str) -> tuple[list[dict[str, Any]], list[Origin]]:
    """The chat messages of one Messages turn: an assistant turn's ``tool_use`` blocks become its
    ``tool_calls``; each ``tool_result`` of a user turn becomes a ``tool`` message, in order.

    >>> m = UserTurn.model_validate({"role": "user", "content": [
    ...     {"type": "tool_result", "tool_use_id": "t1", "content": "17 degrees"},
    ...     {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "no such city"}],
    ...      "is_error": True}, {"type": "text", "text": "Thanks."}]})
    >>> messages, origins = chat_messages(m, "messages[2]")
    >>> [(m["role"], m.get("tool_call_id"), m["content"]) for m in messages]  # doctest: +NORMALIZE_WHITESPACE
    [('tool', 't1', '17 degrees'), ('tool', 't2', 'Error: no such city'),
     ('user', None, [{'type': 'text', 'text': 'Thanks.'}])]
    >>> [o.param for o in origins]
    ['messages[2].content[0]', 'messages[2].content[1]', 'messages[2]']
    """
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}], [Origin(param)]
    if isinstance(message, AssistantTurn):
        texts = [{"type": "text", "text": b.text} for b in message.content if isinstance(b, TextBlock)]
        uses = [(j, b) for j, b in enumerate(message.content) if isinstance(b, ToolUseBlock)]
        assistant: dict[str, Any] = {"role": "assistant", "content": texts or None}
        if uses:
            assistant["tool_calls"] = [{"id": b.id, "type": "function", "function": {
                "name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)}} for _, b in uses]
        return [assistant], [Origin(param, tuple(f"{param}.content[{j}]" for j, _ in uses))]
    messages: list[dict[str, Any]] = []
    origins: list[Origin] = []
    for j, block in enumerate(message.content):
        if isinstance(block, ToolResultBlock):
            messages.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block)})
            origins.append(Origin(f"{param}.content[{j}]", result=True))
        elif messages and messages[-1]["role"] == "user":  # adjacent text blocks: one user message
            messages[-1]["content"].append({"type": "text", "text": block.text})
        else:
            messages.append({"role": "user", "content": [{"type": "text", "text": block.text}]})
            origins.append(Origin(param))
    if not messages:  # an empty list of blocks: an empty user turn, as the client sent it
        return [{"role": "user", "content": ""}], [Origin(param)]
    return messages, origins


_MESSAGE = re.compile(r"^messages\[(\d+)\](.*)$")
_CALL = re.compile(r"^\.tool_calls\[(\d+)\](?:\.function)?(.*)$")
_CALL_FIELDS = ((re.compile(r"^\.arguments"), ".input"),)
_RESULT_FIELDS = ((re.compile(r"^\.tool_call_id"), ".tool_use_id"),)
_RENAMED = ((re.compile(r"^tools\[(\d+)\]\.function\.parameters"), r"tools[\1].input_schema"),
            (re.compile(r"^tools\[(\d+)\]\.function"), r"tools[\1]"),
            (re.compile(r"^tool_choice\.function"), "tool_choice"),
            (re.compile(r"^parallel_tool_calls$"), "tool_choice.disable_parallel_tool_use"),
            (re.compile(r"^response_format\.json_schema"), "output_config.format"),
            (re.compile(r"^response_format"), "output_config.format"),
            (re.compile(r"^max_completion_tokens$"), "max_tokens"),
            (re.compile(r"^stop(?=\[|$)"), "stop_sequences"),
            (re.compile(r"^user$"), "metadata.user_id"))


def messages_param(param: str | None, origins: Sequence[Origin]) -> str | None:
    """A chat request's error ``param`` as the Messages request's field.

    >>> o = (Origin("system"), Origin("messages[0]"), Origin("messages[1]", ("messages[1].content[1]",)),
    ...      Origin("messages[2].content[0]", result=True))
    >>> [messages_param(p, o) for p in ("tools[0].function.parameters", "tools[1].function.name",
    ...     "messages[0].content", "messages[1].content", "messages[2].tool_calls[0].function.arguments",
    ...     "messages[3].tool_call_id", "stop", "max_tokens", "response_format.json_schema.schema", "messages",
    ...     "model", None)]
    ... # doctest: +NORMALIZE_WHITESPACE
    ['tools[0].input_schema', 'tools[1].name', 'system', 'messages[0].content', 'messages[1].content[1].input',
     'messages[2].content[0].tool_use_id', 'stop_sequences', 'max_tokens', 'output_config.format.schema', 'messages',
     'model', None]
    """
    if param is None:
        return None
    if match := _MESSAGE.match(param):
        index, rest = int(match[1]), match[2]
        if index >= len(origins):
            return "messages"
        origin = origins[index]
        if origin.param == "system":
            return origin.param
        if call := _CALL.match(rest):
            k = int(call[1])
            return (origin.calls[k] + _renamed(call[2], _CALL_FIELDS)) if k < len(origin.calls) else origin.param
        return origin.param + (_renamed(rest, _RESULT_FIELDS) if origin.result else rest)
    return _renamed(param, _RENAMED)


def _renamed(param: str, renames: Sequence[tuple[re.Pattern[str], str]]) -> str:
    for pattern, replacement in renames:
        if pattern.match(param):
            return pattern.sub(replacement, param, count=1)
    return param


def rename_param(exc: APIError, origins: Sequence[Origin]) -> APIError:
    """``exc`` with its ``param`` named as in the Messages request (its message may still say the chat name)."""
    exc.param = messages_param(exc.param, origins)
    return exc


def _text_parts(content: str | list[TextBlock]) -> str | list[dict[str, str]]:
    """Text blocks as chat's text parts: joined as chat joins them, so both APIs give one prompt."""
    return content if isinstance(content, str) else [{"type": "text", "text": b.text} for b in content]


def _result_text(block: ToolResultBlock) -> str:
    content = block.content
    text = content if isinstance(content, str) else "".join(b.text for b in content or [])
    return ERROR_PREFIX + text if block.is_error else text
