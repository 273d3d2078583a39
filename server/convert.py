"""A chat-completions request as the backend runs it: the tool plan, plain messages, prompt text
and output constraint, with the request checks that need no model (``logit_bias`` keys, legacy
``functions``, text that cannot be tokenized, non-text content parts).

The Responses and Messages APIs convert their requests into chat requests and go through here too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from hammer.server.agent_loop import answer_messages
from hammer.server.backends.base import OutputConstraint
from hammer.server.chat_template import TemplateFailed, TemplateRejected
from hammer.server.constraints import ToolMode, ToolPlan, calls_schema, plan_tools, response_format_schema
from hammer.server.errors import APIError, InvalidRequest
from hammer.server.grammar import SchemaLimits
from hammer.server.protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    Content,
    FunctionMessage,
    NamedFunction,
    NamedToolChoice,
    NonTextPart,
    TextPart,
    Tool,
    ToolCall,
)
from hammer.server.settings import Settings

from hammer.prompt_format import FENCE, render_prompt_parts


def logit_bias(bias: dict[str, float] | None, vocab_size: int | None) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``logit_bias`` (token ids as strings) checked against the vocabulary.

    >>> logit_bias({"12": 5, "3": -100}, 100)
    ((12, 5), (3, -100))
    >>> logit_bias({"hello": 1}, 100)
    Traceback (most recent call last):
    hammer.server.errors.InvalidRequest: logit_bias keys must be token ids of this model (0 to 99); got 'hello'.

    Keys are ASCII decimals: ``str.isdigit`` also takes "²" (which ``int`` refuses) and "١٢" (which
    ``int`` reads as 12), and a key of thousands of digits is refused before ``int`` sees it.

    >>> logit_bias({"\u0661\u0662": 1}, 100)
    Traceback (most recent call last):
    hammer.server.errors.InvalidRequest: logit_bias keys must be token ids of this model (0 to 99); got '١٢'.
    """
    pairs = []
    for key, value in (bias or {}).items():
        decimal = key.isascii() and key.isdigit() and len(key) <= 12
        token = int(key) if decimal else -1
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            top = f"0 to {vocab_size - 1}" if vocab_size else "non-negative integers"
            shown = key if len(key) <= 40 else key[:40] + "..."
            raise InvalidRequest(f"logit_bias keys must be token ids of this model ({top}); got {shown!r}.",
                                 param="logit_bias")
        pairs.append((token, value))
    return tuple(pairs)


def legacy_as_tools(request: ChatCompletionRequest) -> ChatCompletionRequest:
    """Legacy ``functions``/``function_call`` as the tools they were replaced by (one call at most,
    as the legacy API returns); the answer goes back as ``message.function_call``."""
    if request.functions is None:
        if request.function_call is not None:
            raise InvalidRequest("'function_call' is only allowed when 'functions' are specified.",
                                 param="function_call")
        return request
    if request.tools is not None:
        raise InvalidRequest("Send 'tools' or the legacy 'functions', not both.", param="functions")
    choice = request.function_call
    return request.model_copy(update={
        "tools": [Tool(type="function", function=f) for f in request.functions], "functions": None,
        "tool_choice": NamedToolChoice(type="function", function=choice) if isinstance(choice, NamedFunction)
        else choice, "function_call": None, "parallel_tool_calls": False})


@dataclass(frozen=True)
class Converted:
    """A request as the backend runs it."""

    plan: ToolPlan
    messages: list[dict[str, Any]]
    prompt: str
    #: Client texts inside ``prompt``, tokenized as plain text (``GenerationRequest.plain_texts``).
    plain_texts: tuple[str, ...]
    constraint: OutputConstraint | None
    #: With tools: the client's ``response_format``, for the answer pass.
    answer_constraint: OutputConstraint | None = None


def convert(request: ChatCompletionRequest, settings: Settings,
            chat_template: Callable[[list[dict[str, Any]]], str], template_handles_tools: bool = False) -> Converted:
    """Validated tool plan, plain messages, prompt text and output constraint of a request.

    Requests with tools get the Hammer prompt; others the model's own ``chat_template``, with
    earlier calls and results written as text where the template cannot render them.
    """
    limits = settings.schema_limits()
    plan = plan_tools(request.tools, request.tool_choice, request.parallel_tool_calls, settings.max_tools, limits)
    messages = [_message_dict(m, i) for i, m in enumerate(request.messages)]
    if plan.mode == ToolMode.NONE:
        prompt, plain = plain_chat_prompt(chat_template, messages, template_handles_tools)
        return Converted(plan, messages, prompt, plain, _response_format(request, limits))
    prompt, plain = render_prompt_parts(plan.prompt_functions(), messages, settings.prompt_format)
    # The tool turns stay under the calls grammar; response_format shapes the answer once the model
    # is done with tools.
    return Converted(plan, messages, prompt, plain, calls_constraint(plan, settings),
                     answer_constraint=_response_format(request, limits))


def calls_constraint(plan: ToolPlan, settings: Settings) -> OutputConstraint:
    """The Hammer list of calls ``plan`` allows, fenced as the model was trained to write it."""
    schema = calls_schema(plan, settings.max_tool_calls, settings.max_string_length)
    return OutputConstraint(schema, prefix=f"{FENCE}\n", suffix=f"\n{FENCE}")


def plain_chat_prompt(chat_template: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]],
                      template_handles_tools: bool) -> tuple[str, tuple[str, ...]]:
    """The model's own chat prompt for ``messages`` (earlier calls and results as text where the
    template cannot render them), and its client texts: the message contents, which backends
    tokenize as plain text so a message cannot forge the template's control tokens. (A template
    that changes a text leaves it unfound, and the backend then treats it as the template's own.)"""
    chat = answer_messages(messages, template_handles_tools)
    return template_prompt(chat_template, chat), tuple(m["content"] for m in chat if m.get("content"))


def template_prompt(chat_template: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]]) -> str:
    """The model's chat template applied to ``messages``; its refusals and failures as API errors."""
    try:
        return chat_template(messages)
    except TemplateRejected as exc:  # the template's raise_exception refused them (e.g. role order)
        raise InvalidRequest(f"The model's chat template rejected the messages: {exc}", param="messages") from None
    except TemplateFailed as exc:  # a bug in the model's template is not the client's fault
        raise APIError(f"The model's chat template failed (a problem in the template, not in the request): {exc}",
                       code="chat_template_error") from None


def _response_format(request: ChatCompletionRequest, limits: SchemaLimits) -> OutputConstraint | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is None:
        raise InvalidRequest("response_format of type 'json_schema' needs a 'json_schema' object.",
                             param="response_format.json_schema")
    schema = response_format_schema(fmt.type, fmt.json_schema.schema_ if fmt.json_schema else None, limits)
    return OutputConstraint(schema) if schema is not None else None


_SURROGATE = re.compile("[\ud800-\udfff]")


def reject_undecodable_text(request: ChatCompletionRequest) -> None:
    """400 for a lone surrogate (``"\\ud800"`` is valid JSON but no text): it cannot be encoded for
    the tokenizer. Walks the request iteratively, naming the first field that holds one.

    >>> from hammer.server.protocol import ChatCompletionRequest as R
    >>> reject_undecodable_text(R(model="m", messages=[{"role": "user", "content": "a\\ud800"}]))
    Traceback (most recent call last):
    hammer.server.errors.InvalidRequest: messages[0].content holds a lone UTF-16 surrogate, which is not text.
    """
    stack: list[tuple[str, Any]] = [("", request.model_dump(by_alias=True, exclude_none=True))]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise InvalidRequest(f"{path} holds a lone UTF-16 surrogate, which is not text.", param=path,
                                     code="invalid_text")
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if not key.isascii() and _SURROGATE.search(key):
                    raise InvalidRequest(f"{path} has a key with a lone UTF-16 surrogate, which is not text.",
                                         param=path or None, code="invalid_text")
                stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))


def _message_dict(message: Any, index: int) -> dict[str, Any]:
    """A request message as the plain dict the format module and chat templates take."""
    _refuse_non_text(message.content, index)
    data: dict[str, Any] = {"role": message.role, "content": _text(message.content)}
    if isinstance(message, FunctionMessage):  # legacy result: a tool message answering the call below
        return {"role": "tool", "content": data["content"], "tool_call_id": f"legacy_{message.name}"}
    if isinstance(message, AssistantMessage) and message.function_call and not message.tool_calls:
        message = message.model_copy(update={"tool_calls": [ToolCall(
            id=f"legacy_{message.function_call.name}", function=message.function_call)]})
    if isinstance(message, AssistantMessage) and message.tool_calls:
        for j, call in enumerate(message.tool_calls):
            try:
                arguments = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                arguments = None
            if not isinstance(arguments, dict):
                raise InvalidRequest("tool call arguments must be a JSON object encoded as a string.",
                                     param=f"messages[{index}].tool_calls[{j}].function.arguments")
        data["tool_calls"] = [c.model_dump() for c in message.tool_calls]
    if getattr(message, "tool_call_id", None):
        data["tool_call_id"] = message.tool_call_id
    return data


_NOT_TEXT = {"image_url": "images are", "input_audio": "audio is", "file": "files are"}


def _refuse_non_text(content: Content, index: int) -> None:
    """A 400 naming the first image, audio or file part: this model reads text only."""
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if isinstance(part, NonTextPart):
            raise InvalidRequest(f"{_NOT_TEXT[part.type]} not supported: this model reads text only "
                                 f"(messages[{index}].content[{j}] is of type {part.type!r}).",
                                 param=f"messages[{index}].content[{j}]", code="unsupported_content")


def _text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))  # others refused before
