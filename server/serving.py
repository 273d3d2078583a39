"""Chat completions: validate → convert → generate → build, one event stream for both response modes.

Non-streaming responses are the streaming events collected, so both modes agree by construction.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Union

from server.admission import AdmissionGate
from server.backends.base import Backend, GenerationRequest, ModelInfo, SamplingParams
from server.constraints import (OutputConstraint, ToolMode, ToolPlan, argument_errors, calls_schema, plan_tools,
                                response_format_schema)
from server.errors import BackendUnavailable, ContextLengthExceeded, InvalidRequest, NotFound, RequestTimeout
from server.hammer_format import FENCE, HammerParseError, parse_calls, render_prompt
from server.metrics import Metrics
from server.protocol import (AssistantMessage, ChatCompletionRequest, ChatCompletionResponse, Choice, Content,
                             FunctionCall, InvalidToolCall, ResponseMessage, ToolCall, Usage)
from server.settings import Settings
from server.tool_stream import CallScanner


@dataclass(frozen=True)
class ContentEvent:
    text: str


@dataclass(frozen=True)
class CallEvent:
    index: int
    call: ToolCall


@dataclass(frozen=True)
class EndEvent:
    finish_reason: str
    usage: Usage
    content: str | None = None
    invalid: tuple[InvalidToolCall, ...] = ()


Event = Union[ContentEvent, CallEvent, EndEvent]


@dataclass
class Prepared:
    """A validated request, converted to what the backend runs."""

    id: str
    created: int
    model: str
    plan: ToolPlan
    messages: list[dict[str, Any]]
    generation: GenerationRequest
    prompt_tokens: int
    include_usage: bool = False
    started: float = field(default_factory=time.perf_counter)


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class ChatService:
    def __init__(self, backend: Backend, info: ModelInfo, settings: Settings, metrics: Metrics) -> None:
        self.backend = backend
        self.info = info
        self.settings = settings
        self.metrics = metrics
        self.gate = AdmissionGate(backend.max_concurrency, settings.max_queue, metrics)

    # -- validate and convert ------------------------------------------------------------------

    def prepare(self, request: ChatCompletionRequest) -> Prepared:
        if (problem := self.backend.health_error()) is not None:  # fail fast: it would never be served
            raise BackendUnavailable(f"{problem}; the server is restarting, retry shortly.", code="backend_unhealthy")
        if request.model != self.info.name:
            raise NotFound(f"The model {request.model!r} does not exist; this server serves {self.info.name!r}.",
                           param="model", code="model_not_found")
        if len(request.messages) > self.settings.max_messages:
            raise InvalidRequest(f"Too many messages: {len(request.messages)} given, at most "
                                 f"{self.settings.max_messages} allowed.", param="messages")
        plan, messages, prompt, constraint = convert(request, self.settings, self.backend.chat_prompt)
        prompt_tokens = self.backend.count_tokens(prompt)
        max_tokens = self._max_tokens(request, prompt_tokens)
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        params = SamplingParams(max_tokens=max_tokens, temperature=request.temperature, top_p=request.top_p,
                                stop=stop if plan.mode == ToolMode.NONE else (), seed=request.seed)
        return Prepared(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.info.name, plan=plan,
            messages=messages, generation=GenerationRequest(prompt, params, constraint), prompt_tokens=prompt_tokens,
            include_usage=bool(request.stream_options and request.stream_options.include_usage))

    def _chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        return chat_prompt(self.backend.chat_prompt, messages)

    def _max_tokens(self, request: ChatCompletionRequest, prompt_tokens: int) -> int:
        limit = self.info.context_length
        if prompt_tokens >= limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
                f"{prompt_tokens} tokens. Please reduce the length of the messages or tools.")
        requested = request.max_completion_tokens or request.max_tokens
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        if requested is None:
            return limit - prompt_tokens
        if requested < 1:
            raise InvalidRequest(f"{param} must be at least 1, got {requested}.", param=param,
                                 code="invalid_value")
        if prompt_tokens + requested > limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + requested} tokens ({prompt_tokens} in the messages, {requested} in the "
                f"completion). Please reduce the length of the messages or the completion.", param=param)
        return requested

    # -- generate ------------------------------------------------------------------------------

    async def events(self, prepared: Prepared) -> AsyncIterator[Event]:
        """The request's events; waiting and generating together get ``request_timeout`` seconds."""
        limit = self.settings.request_timeout
        try:
            async with asyncio.timeout(limit), self.gate.slot():
                stream = (self._content_events(prepared.generation, prepared) if prepared.plan.mode == ToolMode.NONE
                          else self._tool_events(prepared))
                async for event in stream:
                    yield event
        except TimeoutError:
            raise RequestTimeout(f"The request did not finish within {limit:g} seconds; the server is busy or "
                                 "max_tokens is large. Retry, or lower max_tokens.", code="timeout") from None

    async def _content_events(self, generation: GenerationRequest, prepared: Prepared) -> AsyncIterator[Event]:
        first = True
        async for chunk in self.backend.generate(generation):
            if chunk.text:
                if first:
                    self.metrics.ttft.observe(time.perf_counter() - prepared.started)
                    first = False
                yield ContentEvent(chunk.text)
            if chunk.finish_reason:
                yield EndEvent(chunk.finish_reason, self._usage(prepared, chunk.completion_tokens))

    async def _tool_events(self, prepared: Prepared) -> AsyncIterator[Event]:
        scanner = CallScanner()
        invalid: list[InvalidToolCall] = []
        calls = 0
        finish, completion_tokens = "stop", 0
        async for chunk in self.backend.generate(prepared.generation):
            for element in scanner.feed(chunk.text):
                call, error = self._checked_call(element, prepared.plan)
                if call is None:
                    invalid.append(error)
                    continue
                if calls == 0:
                    self.metrics.ttft.observe(time.perf_counter() - prepared.started)
                yield CallEvent(calls, call)
                calls += 1
            if chunk.finish_reason:
                finish, completion_tokens = chunk.finish_reason, chunk.completion_tokens
        usage = self._usage(prepared, completion_tokens)
        if not scanner.closed:
            invalid.append(self._unfinished(scanner, finish))
        self.metrics.tool_calls.inc(calls)
        outcome = "truncated" if finish == "length" and not scanner.closed else (
            "invalid" if invalid else "calls" if calls else "refusal")
        self.metrics.tool_outcomes.labels(outcome).inc()
        if calls:
            yield EndEvent("length" if finish == "length" else "tool_calls", usage, invalid=tuple(invalid))
        elif invalid:
            yield EndEvent(finish, usage, content=_failure_message(invalid), invalid=tuple(invalid))
        elif self.settings.refusal == "chat":
            async for event in self._chat_refusal(prepared):
                yield event
        else:
            yield EndEvent("stop", usage, content=self.settings.refusal_message)

    async def _chat_refusal(self, prepared: Prepared) -> AsyncIterator[Event]:
        """Answer as plain chat (no tools) after the model found no fitting tool."""
        prompt = self._chat_prompt(prepared.messages)
        room = self.info.context_length - self.backend.count_tokens(prompt)
        params = prepared.generation.params
        generation = GenerationRequest(prompt, SamplingParams(
            max_tokens=max(1, min(params.max_tokens, room)), temperature=params.temperature,
            top_p=params.top_p, seed=params.seed))
        async for event in self._content_events(generation, prepared):
            yield event

    def _checked_call(self, element: str, plan: ToolPlan) -> tuple[ToolCall | None, InvalidToolCall | None]:
        try:
            [call] = parse_calls(element)
        except (HammerParseError, ValueError) as exc:
            return None, InvalidToolCall(arguments=element, error=str(exc))
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        function = plan.by_name.get(call.name)
        if function is None:
            return None, InvalidToolCall(name=call.name, arguments=arguments,
                                         error=f"the model called {call.name!r}, which is not a declared tool")
        problem = argument_errors(function, call.arguments)
        if problem:
            return None, InvalidToolCall(name=call.name, arguments=arguments,
                                         error=f"arguments do not match the schema of {call.name!r}: {problem}")
        return ToolCall(id=new_call_id(), function=FunctionCall(name=call.name, arguments=arguments)), None

    @staticmethod
    def _unfinished(scanner: CallScanner, finish: str) -> InvalidToolCall:
        raw = scanner.partial or scanner.text
        if finish == "length":
            return InvalidToolCall(arguments=raw, error="the output was cut off by max_tokens before the list of "
                                                        "calls was complete; raise max_tokens")
        return InvalidToolCall(arguments=raw, error="the output is not a complete Hammer list of calls")

    def _usage(self, prepared: Prepared, completion_tokens: int) -> Usage:
        self.metrics.prompt_tokens.inc(prepared.prompt_tokens)
        self.metrics.completion_tokens.inc(completion_tokens)
        return Usage(prompt_tokens=prepared.prompt_tokens, completion_tokens=completion_tokens,
                     total_tokens=prepared.prompt_tokens + completion_tokens)

    # -- build ---------------------------------------------------------------------------------

    async def complete(self, prepared: Prepared) -> ChatCompletionResponse:
        """The events of one request collected into a ``chat.completion``."""
        content: list[str] = []
        calls: list[ToolCall] = []
        end: EndEvent | None = None
        async for event in self.events(prepared):
            if isinstance(event, ContentEvent):
                content.append(event.text)
            elif isinstance(event, CallEvent):
                calls.append(event.call)
            else:
                end = event
        assert end is not None, "every event stream ends with an EndEvent"
        if end.content:
            content.append(end.content)
        message = ResponseMessage(content="".join(content) if content else None, tool_calls=calls or None,
                                  invalid_tool_calls=list(end.invalid) or None)
        return ChatCompletionResponse(id=prepared.id, created=prepared.created, model=prepared.model,
                                      choices=[Choice(message=message, finish_reason=end.finish_reason)],
                                      usage=end.usage)


def convert(request: ChatCompletionRequest, settings: Settings,
            chat_template: Callable[[list[dict[str, Any]]], str]) -> tuple[ToolPlan, list[dict[str, Any]], str,
                                                                          OutputConstraint | None]:
    """Validated tool plan, plain messages, prompt text and output constraint of a request.

    Requests with tools get the Hammer prompt; others the model's own ``chat_template``.
    """
    plan = plan_tools(request.tools, request.tool_choice, request.parallel_tool_calls,
                      settings.max_tools, settings.max_schema_depth)
    messages = [_message_dict(m, i) for i, m in enumerate(request.messages)]
    if plan.mode == ToolMode.NONE:
        return plan, messages, chat_prompt(chat_template, messages), _response_format(request)
    if request.response_format and request.response_format.type != "text":
        raise InvalidRequest("response_format cannot be combined with tools; the tool schemas "
                             "already constrain the output.", param="response_format")
    functions = [f.model_dump(exclude_none=True) for f in plan.functions]
    prompt = render_prompt(functions, messages, settings.prompt_format)
    schema = calls_schema(plan, settings.max_tool_calls, settings.max_string_length)
    return plan, messages, prompt, OutputConstraint(schema, prefix=f"{FENCE}\n", suffix=f"\n{FENCE}")


def chat_prompt(chat_template: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]]) -> str:
    try:
        return chat_template(messages)
    except Exception as exc:  # a template may reject a conversation (e.g. role order)
        raise InvalidRequest(f"The model's chat template rejected the messages: {exc}", param="messages") from None


def _response_format(request: ChatCompletionRequest) -> OutputConstraint | None:
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema" and fmt.json_schema is None:
        raise InvalidRequest("response_format of type 'json_schema' needs a 'json_schema' object.",
                             param="response_format.json_schema")
    schema = response_format_schema(fmt.type, fmt.json_schema.schema_ if fmt.json_schema else None)
    return OutputConstraint(schema) if schema is not None else None


def _failure_message(invalid: list[InvalidToolCall]) -> str:
    return "The model did not produce a valid tool call: " + "; ".join(i.error for i in invalid)


def _message_dict(message: Any, index: int) -> dict[str, Any]:
    """A request message as the plain dict the format module and chat templates take."""
    data: dict[str, Any] = {"role": message.role, "content": _text(message.content)}
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


def _text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)
