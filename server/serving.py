"""Chat completions: validate → convert → generate → build, one event stream for both response modes.

Non-streaming responses are the streaming events collected, so both modes agree by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Sequence, Union

from hammer.server.admission import AdmissionGate, Ticket
from hammer.server.agent_loop import answer_messages, answered_calls, call_key, has_tool_results
from hammer.server.backends.base import (
    Backend,
    ConstraintRejected,
    EngineUnavailable,
    GenerationRequest,
    ModelInfo,
    OutputConstraint,
    RequestRejected,
    SamplingParams,
    TokenLogprob,
)
from hammer.server.chat_template import TemplateFailed, TemplateRejected, handles_tool_calls
from hammer.server.constraints import (
    ToolMode,
    ToolPlan,
    argument_errors,
    calls_schema,
    plan_tools,
    response_format_schema,
)
from hammer.server.errors import (
    APIError,
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    NotFound,
    RequestTimeout,
)
from hammer.server.grammar import SchemaLimits
from hammer.server.metrics import Metrics
from hammer.server.protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    Content,
    FunctionCall,
    FunctionMessage,
    InvalidToolCall,
    NamedFunction,
    NamedToolChoice,
    ResponseMessage,
    TokenLogprobEntry,
    Tool,
    ToolCall,
    TopLogprob,
    Usage,
)
from hammer.server.settings import Settings
from hammer.server.tool_stream import CallScanner

from hammer.prompt_format import FENCE, HammerParseError, parse_calls, render_prompt_parts


@dataclass(frozen=True)
class ContentEvent:
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


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
    #: Calls made and answered since the last user message (the loop guard drops them if repeated).
    answered: frozenset[str] = frozenset()
    #: Tool results came back since the last user message: ``[]`` now means "answer the user".
    after_tool_results: bool = False
    #: The client's stop sequences: the tool-call pass cannot honour them (they would cut the
    #: JSON), plain chat and the answer pass do.
    stop: tuple[str, ...] = ()
    #: ``logprobs: true``: content tokens' logprobs go into the response.
    logprobs: bool = False
    #: Asked with the legacy ``functions``: answered with ``message.function_call``.
    legacy_functions: bool = False


# The answer pass is free text, where a small model at temperature 0 can repeat a line until
# max_tokens ("The email address of Alice is:" over and over, in the agent benchmark). llama.cpp's
# usual 1.1 over the last 64 tokens ended those loops and left the correct answers unchanged.
ANSWER_REPEAT_PENALTY = 1.1


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """The backend layer's errors as the HTTP errors clients see (the one place they are mapped)."""
    try:
        yield
    except EngineUnavailable as exc:
        raise BackendUnavailable(exc.message, code=exc.code) from exc
    except RequestRejected as exc:
        raise InvalidRequest(str(exc)) from exc


@contextlib.asynccontextmanager
async def _async_engine_errors() -> AsyncIterator[None]:
    with engine_errors():
        yield


class ChatService:
    def __init__(self, backend: Backend, info: ModelInfo, settings: Settings, metrics: Metrics) -> None:
        self.backend = backend
        self.info = info
        self.settings = settings
        self.metrics = metrics
        self.gate = AdmissionGate(backend.max_concurrency, settings.max_queue, metrics)
        # The template is fixed once the model is loaded: whether it can render tool calls, too.
        self.template_handles_tools = handles_tool_calls(backend.chat_template_source())

    # -- validate and convert ------------------------------------------------------------------

    async def prepare(self, request: ChatCompletionRequest) -> Prepared:
        """Validate and convert; the CPU-heavy part (templates, schemas, tokenizing) runs off the event
        loop, so one large request does not stall /health and the other clients."""
        if (problem := self.backend.health_error()) is not None:  # fail fast: it would never be served
            raise BackendUnavailable(f"{problem}; the server is restarting, retry shortly.", code="backend_unhealthy")
        if request.model != self.info.name:
            raise NotFound(f"The model {request.model!r} does not exist; this server serves {self.info.name!r}.",
                           param="model", code="model_not_found")
        if len(request.messages) > self.settings.max_messages:
            raise InvalidRequest(f"Too many messages: {len(request.messages)} given, at most "
                                 f"{self.settings.max_messages} allowed.", param="messages")
        with engine_errors():
            return await asyncio.to_thread(self._prepare, request)

    def _prepare(self, request: ChatCompletionRequest) -> Prepared:
        reject_undecodable_text(request)
        legacy = request.functions is not None
        request = legacy_as_tools(request)
        converted = convert(request, self.settings, self.backend.chat_prompt, self.template_handles_tools)
        plan, prompt, plain = converted.plan, converted.prompt, converted.plain_texts
        self._refuse_unfittable(prompt)
        prompt_tokens = self.backend.count_tokens(prompt, plain)
        max_tokens = self._max_tokens(request, prompt_tokens)
        stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
        if request.top_logprobs is not None and not request.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs set to true.", param="top_logprobs")
        recommended = self.info.sampling
        temperature = request.temperature if request.temperature is not None else recommended.get("temperature", 1.0)
        top_p = request.top_p if request.top_p is not None else recommended.get("top_p", 1.0)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                stop=stop if plan.mode == ToolMode.NONE else (), seed=request.seed,
                                frequency_penalty=request.frequency_penalty,
                                presence_penalty=request.presence_penalty,
                                logit_bias=logit_bias(request.logit_bias, self.info.vocab_size),
                                logprobs=(request.top_logprobs or 0) if request.logprobs else None)
        generation = GenerationRequest(prompt, params, converted.constraint, plain_texts=plain)
        try:
            self.backend.check(generation)  # the grammar is built and parsed before the request takes a slot
        except ConstraintRejected as exc:
            raise InvalidRequest(f"The output constraint cannot be built: {exc}",
                                 param="tools" if plan.mode != ToolMode.NONE else "response_format") from None
        return Prepared(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.info.name, plan=plan,
            messages=converted.messages, generation=generation, prompt_tokens=prompt_tokens,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            # tool_choice "required" or a named function asks for a call even if it repeats one.
            answered=answered_calls(converted.messages) if self.settings.loop_guard and plan.mode == ToolMode.AUTO
            else frozenset(),
            after_tool_results=has_tool_results(converted.messages), stop=stop, logprobs=request.logprobs,
            legacy_functions=legacy)

    def _refuse_unfittable(self, prompt: str) -> None:
        """A prompt with more characters than the context's tokens could stand for cannot fit: say so
        without tokenizing it (megabytes take seconds of CPU that other clients need)."""
        most = self.info.max_token_chars
        limit = self.info.context_length
        if most is not None and len(prompt) > most * limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, your messages are "
                f"{len(prompt)} characters long, more than {limit} tokens can hold. Please reduce the length of "
                "the messages or tools.")

    def _max_tokens(self, request: ChatCompletionRequest, prompt_tokens: int) -> int:
        limit = self.info.context_length
        if prompt_tokens >= limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, your messages resulted in "
                f"{prompt_tokens} tokens. Please reduce the length of the messages or tools.")
        given = request.max_completion_tokens is not None
        requested = request.max_completion_tokens if given else request.max_tokens
        param = "max_completion_tokens" if given else "max_tokens"
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

    async def events(self, prepared: Prepared, ticket: Ticket | None = None) -> AsyncIterator[Event]:
        """The request's events; waiting and generating together get ``request_timeout`` seconds.

        ``ticket``: the queue place a stream took before its response started (see ``AdmissionGate``).
        """
        limit = self.settings.request_timeout
        try:
            async with asyncio.timeout(limit), self.gate.slot(ticket), _async_engine_errors():
                stream = (self._content_events(prepared.generation, prepared, prepared.prompt_tokens)
                          if prepared.plan.mode == ToolMode.NONE else self._tool_events(prepared))
                async for event in stream:
                    if isinstance(event, EndEvent):  # counted once, where the request ends
                        self.metrics.prompt_tokens.inc(event.usage.prompt_tokens)
                        self.metrics.completion_tokens.inc(event.usage.completion_tokens)
                    yield event
        except TimeoutError:
            raise RequestTimeout(f"The request did not finish within {limit:g} seconds; the server is busy or "
                                 "max_tokens is large. Retry, or lower max_tokens.", code="timeout") from None

    async def _content_events(self, generation: GenerationRequest, prepared: Prepared, prompt_tokens: int,
                              earlier: Usage | None = None, invalid: tuple[InvalidToolCall, ...] = ()
                              ) -> AsyncIterator[Event]:
        """Plain text from one pass; its ``EndEvent`` adds the usage of ``earlier`` passes."""
        first = earlier is None  # a second pass (the answer turn) is not the request's first token
        async for chunk in self.backend.generate(generation):
            if first:
                self.metrics.ttft.observe(time.perf_counter() - prepared.started)
                first = False
            if chunk.text or chunk.logprobs:
                yield ContentEvent(chunk.text, chunk.logprobs)
            if chunk.finish_reason:
                yield EndEvent(chunk.finish_reason, add_usage(earlier, prompt_tokens, chunk.completion_tokens),
                               invalid=invalid)

    async def _tool_events(self, prepared: Prepared) -> AsyncIterator[Event]:
        scanner = CallScanner()
        invalid: list[InvalidToolCall] = []
        returned: set[str] = set()
        finish, completion_tokens, first = "stop", 0, True
        async for chunk in self.backend.generate(prepared.generation):
            if first:
                self.metrics.ttft.observe(time.perf_counter() - prepared.started)
                first = False
            for element in scanner.feed(chunk.text):
                call, key, error = self._checked_call(element, prepared.plan)
                if call is None:
                    invalid.append(error)
                elif key in prepared.answered:  # made and answered already: repeating it loops forever
                    self.metrics.calls_dropped.labels("repeated").inc()
                elif key in returned and self.settings.dedupe_calls:
                    self.metrics.calls_dropped.labels("duplicate").inc()
                else:
                    if not returned:
                        self.metrics.time_to_first_call.observe(time.perf_counter() - prepared.started)
                    yield CallEvent(len(returned), call)
                    returned.add(key)
            if chunk.finish_reason:
                finish, completion_tokens = chunk.finish_reason, chunk.completion_tokens
        usage = add_usage(None, prepared.prompt_tokens, completion_tokens)
        truncated = finish == "length" and not scanner.closed
        if not scanner.closed:
            invalid.append(self._unfinished(scanner, finish))
        self.metrics.tool_calls.inc(len(returned))
        if returned:
            outcome = "truncated" if truncated else "invalid" if invalid else "calls"
            calls_finish = "function_call" if prepared.legacy_functions else "tool_calls"
            end: EndEvent | None = EndEvent("length" if truncated else calls_finish, usage, invalid=tuple(invalid))
        elif prepared.after_tool_results and not truncated:
            outcome, end = "answer", None  # no new call after tool results: the model may answer the user
        elif invalid:
            outcome = "truncated" if truncated else "invalid"
            end = EndEvent(finish, usage, content=_failure_message(invalid), invalid=tuple(invalid))
        elif self.settings.refusal == "chat":
            outcome, end = "refusal", None
        else:
            outcome, end = "refusal", EndEvent("stop", usage, content=self.settings.refusal_message)
        self.metrics.tool_outcomes.labels(outcome).inc()
        if end is not None:
            yield end
            return
        async for event in self._answer_turn(prepared, usage, tuple(invalid)):
            yield event

    async def _answer_turn(self, prepared: Prepared, first: Usage,
                           invalid: tuple[InvalidToolCall, ...]) -> AsyncIterator[Event]:
        """A second, unconstrained pass in plain chat that sees the calls made and their results."""
        prompt, plain, prompt_tokens = await asyncio.to_thread(self._answer_prompt, prepared.messages)
        room = self.info.context_length - prompt_tokens
        params = prepared.generation.params
        budget = min(params.max_tokens - first.completion_tokens, room)
        if budget < 1:  # max_tokens or the context is spent: say so instead of generating nothing
            yield EndEvent("length", first, invalid=invalid)
            return
        generation = GenerationRequest(prompt, dataclasses.replace(
            params, max_tokens=budget, stop=prepared.stop, repeat_penalty=ANSWER_REPEAT_PENALTY), plain_texts=plain)
        async for event in self._content_events(generation, prepared, prompt_tokens, first, invalid):
            yield event

    def _answer_prompt(self, messages: list[dict[str, Any]]) -> tuple[str, tuple[str, ...], int]:
        prompt, plain = plain_chat_prompt(self.backend.chat_prompt, messages, self.template_handles_tools)
        return prompt, plain, self.backend.count_tokens(prompt, plain)

    @staticmethod
    def _checked_call(element: str, plan: ToolPlan) -> tuple[ToolCall | None, str, InvalidToolCall | None]:
        """The call in one list element with its ``call_key``, or why it cannot be returned."""
        try:
            [call] = parse_calls(element)
        except (HammerParseError, ValueError) as exc:
            return None, "", InvalidToolCall(arguments=element, error=str(exc))
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        function = plan.by_name.get(call.name)
        if function is None:
            return None, "", InvalidToolCall(name=call.name, arguments=arguments,
                                             error=f"the model called {call.name!r}, which is not a declared tool")
        problem = argument_errors(function, call.arguments)
        if problem:
            return None, "", InvalidToolCall(name=call.name, arguments=arguments,
                                             error=f"arguments do not match the schema of {call.name!r}: {problem}")
        return ToolCall(id=new_call_id(), function=FunctionCall(name=call.name, arguments=arguments)), \
            call_key(call.name, call.arguments), None

    @staticmethod
    def _unfinished(scanner: CallScanner, finish: str) -> InvalidToolCall:
        raw = scanner.partial or scanner.text
        if finish == "length":
            return InvalidToolCall(arguments=raw, error="the output was cut off by max_tokens before the list of "
                                                        "calls was complete; raise max_tokens")
        return InvalidToolCall(arguments=raw, error="the output is not a complete Hammer list of calls")

    # -- build ---------------------------------------------------------------------------------

    async def complete(self, prepared: Prepared) -> ChatCompletionResponse:
        """The events of one request collected into a ``chat.completion``."""
        content: list[str] = []
        logprobs: list[TokenLogprob] = []
        calls: list[ToolCall] = []
        end: EndEvent | None = None
        async for event in self.events(prepared):
            if isinstance(event, ContentEvent):
                content.append(event.text)
                logprobs += event.logprobs
            elif isinstance(event, CallEvent):
                calls.append(event.call)
            else:
                end = event
        assert end is not None, "every event stream ends with an EndEvent"
        if end.content:
            content.append(end.content)
        message = ResponseMessage(content="".join(content) if content else None, tool_calls=calls or None,
                                  invalid_tool_calls=list(end.invalid) or None)
        if prepared.legacy_functions and calls:
            message.tool_calls, message.function_call = None, calls[0].function
        choice = Choice(message=message, finish_reason=end.finish_reason,
                        logprobs=choice_logprobs(logprobs) if prepared.logprobs else None)
        return ChatCompletionResponse(id=prepared.id, created=prepared.created, model=prepared.model,
                                      choices=[choice], usage=end.usage)


def choice_logprobs(entries: Sequence[TokenLogprob]) -> ChoiceLogprobs:
    """OpenAI's ``choices[].logprobs`` of content tokens."""
    return ChoiceLogprobs(content=[TokenLogprobEntry(
        token=e.token, logprob=e.logprob, bytes=list(e.bytes),
        top_logprobs=[TopLogprob(token=t, logprob=lp, bytes=list(b)) for t, lp, b in e.top]) for e in entries])


def logit_bias(bias: dict[str, float] | None, vocab_size: int | None) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``logit_bias`` (token ids as strings) checked against the vocabulary.

    >>> logit_bias({"12": 5, "3": -100}, 100)
    ((12, 5), (3, -100))
    >>> logit_bias({"hello": 1}, 100)
    Traceback (most recent call last):
    hammer.server.errors.InvalidRequest: logit_bias keys must be token ids of this model (0 to 99); got 'hello'.
    """
    pairs = []
    for key, value in (bias or {}).items():
        token = int(key) if key.isdigit() else -1
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            top = f"0 to {vocab_size - 1}" if vocab_size else "non-negative integers"
            raise InvalidRequest(f"logit_bias keys must be token ids of this model ({top}); got {key!r}.",
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
    if request.response_format and request.response_format.type != "text":
        raise InvalidRequest("response_format cannot be combined with tools; the tool schemas "
                             "already constrain the output.", param="response_format")
    prompt, plain = render_prompt_parts(plan.prompt_functions(), messages, settings.prompt_format)
    schema = calls_schema(plan, settings.max_tool_calls, settings.max_string_length)
    return Converted(plan, messages, prompt, plain, OutputConstraint(schema, prefix=f"{FENCE}\n", suffix=f"\n{FENCE}"))


def add_usage(earlier: Usage | None, prompt_tokens: int, completion_tokens: int) -> Usage:
    """Usage of one more pass on top of ``earlier`` ones: a request's usage counts every pass.

    >>> add_usage(add_usage(None, 10, 2), 5, 3).model_dump()
    {'prompt_tokens': 15, 'completion_tokens': 5, 'total_tokens': 20}
    """
    prompt = prompt_tokens + (earlier.prompt_tokens if earlier else 0)
    completion = completion_tokens + (earlier.completion_tokens if earlier else 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def plain_chat_prompt(chat_template: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]],
                      template_handles_tools: bool) -> tuple[str, tuple[str, ...]]:
    """The model's own chat prompt for ``messages`` (earlier calls and results as text where the
    template cannot render them), and its client texts: the message contents, which backends
    tokenize as plain text so a message cannot forge the template's control tokens. (A template
    that changes a text leaves it unfound, and the backend then treats it as the template's own.)"""
    chat = answer_messages(messages, template_handles_tools)
    return chat_prompt(chat_template, chat), tuple(m["content"] for m in chat if m.get("content"))


def chat_prompt(chat_template: Callable[[list[dict[str, Any]]], str], messages: list[dict[str, Any]]) -> str:
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


def _failure_message(invalid: list[InvalidToolCall]) -> str:
    return "The model did not produce a valid tool call: " + "; ".join(i.error for i in invalid)


def _message_dict(message: Any, index: int) -> dict[str, Any]:
    """A request message as the plain dict the format module and chat templates take."""
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


def _text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content)
