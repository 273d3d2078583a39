"""Chat completions: validate → convert → generate → build, one event stream for both response modes.

Non-streaming responses are the streaming events collected, so both modes agree by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterator, Sequence, Union

from hammer.server.admission import AdmissionGate, Ticket
from hammer.server.agent_loop import answered_calls, answered_tools, call_key, has_tool_results
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
from hammer.server.chat_template import handles_tool_calls
from hammer.server.constraints import ToolMode, ToolPlan, argument_errors, remaining_plan
from hammer.server.convert import (
    calls_constraint,
    convert,
    legacy_as_tools,
    logit_bias,
    plain_chat_prompt,
    reject_undecodable_text,
)
from hammer.server.errors import (
    BackendUnavailable,
    ContextLengthExceeded,
    InvalidRequest,
    NotFound,
    RequestTimeout,
)
from hammer.server.metrics import Metrics
from hammer.server.protocol import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    FunctionCall,
    InvalidToolCall,
    ResponseMessage,
    TokenLogprobEntry,
    ToolCall,
    TopLogprob,
    Usage,
)
from hammer.server.settings import Settings
from hammer.server.tool_stream import CallScanner

from hammer.prompt_format import HammerParseError, parse_calls


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
    #: The client's stop sequence that ended the text, if one did.
    stop_sequence: str | None = None


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
    #: ``response_format`` together with tools: the answer pass is decoded under it (the tool
    #: turns are not), so the final message validates against the schema.
    answer_constraint: OutputConstraint | None = None
    #: Tools with an answered call (loop guard on): under ``required``, a pass that only repeated
    #: answered calls is followed by one offering the other tools.
    answered_tools: frozenset[str] = frozenset()


@dataclass
class _CallPass:
    """What one pass of the tool-call grammar produced besides the calls it yielded."""

    plan: ToolPlan
    #: Keys of the calls returned so far in the response (across passes): indexes and dedupe.
    returned: set[str]
    invalid: list[InvalidToolCall]
    scanner: CallScanner = field(default_factory=CallScanner)
    #: Answered calls the model wrote again, dropped by the loop guard.
    repeated: int = 0
    finish: str = "stop"
    completion_tokens: int = 0


@dataclass(frozen=True)
class _Offer:
    """A further tool-call pass: the plan it offers and the generation that runs it."""

    plan: ToolPlan
    generation: GenerationRequest


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
        if request.model not in (ids := self.info.model_ids()):  # the base or one of its LoRA adapters (--lora)
            raise NotFound(f"The model {request.model!r} does not exist; this server serves "
                           f"{', '.join(map(repr, ids))}.",
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
        # --lora: a request naming an adapter is generated with it, under its recommended sampling.
        adapter = request.model if request.model in self.info.adapters else None
        recommended = {**self.info.sampling, **self.info.adapters.get(request.model, {})}
        temperature = request.temperature if request.temperature is not None else recommended.get("temperature", 1.0)
        top_p = request.top_p if request.top_p is not None else recommended.get("top_p", 1.0)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                stop=stop if plan.mode == ToolMode.NONE else (), seed=request.seed,
                                frequency_penalty=request.frequency_penalty,
                                presence_penalty=request.presence_penalty,
                                logit_bias=logit_bias(request.logit_bias, self.info.vocab_size),
                                logprobs=(request.top_logprobs or 0) if request.logprobs else None)
        generation = GenerationRequest(prompt, params, converted.constraint, plain_texts=plain, adapter=adapter)
        self._check(generation, "tools" if plan.mode != ToolMode.NONE else "response_format")
        if converted.answer_constraint is not None:
            self._check(dataclasses.replace(generation, constraint=converted.answer_constraint), "response_format")
        guarded = self.settings.loop_guard
        return Prepared(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=request.model, plan=plan,
            messages=converted.messages, generation=generation, prompt_tokens=prompt_tokens,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            answered=answered_calls(converted.messages) if guarded else frozenset(),
            answered_tools=answered_tools(converted.messages) if guarded else frozenset(),
            after_tool_results=has_tool_results(converted.messages), stop=stop, logprobs=request.logprobs,
            legacy_functions=legacy, answer_constraint=converted.answer_constraint)

    def _check(self, generation: GenerationRequest, param: str) -> None:
        """The grammar is built and parsed before the request takes a slot."""
        try:
            self.backend.check(generation)
        except ConstraintRejected as exc:
            raise InvalidRequest(f"The output constraint cannot be built: {exc}", param=param) from None

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
                               invalid=invalid, stop_sequence=chunk.stop_sequence)

    async def _tool_events(self, prepared: Prepared) -> AsyncIterator[Event]:
        calls = _CallPass(prepared.plan, set(), [])
        async for event in self._call_events(prepared, prepared.generation, calls):
            yield event
        usage = add_usage(None, prepared.prompt_tokens, calls.completion_tokens)
        offer = self._remaining_offer(prepared, calls, usage)
        if offer is not None:  # only answered calls repeated under "required": offer the other tools
            calls = _CallPass(offer.plan, calls.returned, calls.invalid)
            async for event in self._call_events(prepared, offer.generation, calls):
                yield event
            usage = add_usage(usage, prepared.prompt_tokens, calls.completion_tokens)
        returned, invalid, scanner, finish = calls.returned, calls.invalid, calls.scanner, calls.finish
        truncated = finish == "length" and not scanner.closed
        if not scanner.closed:
            invalid.append(self._unfinished(scanner, finish))
        self.metrics.tool_calls.inc(len(returned))
        if returned:
            outcome = "truncated" if truncated else "invalid" if invalid else "calls"
            # The returned calls are complete and validated, so the client can run them: the finish
            # says so even when a later call was cut (that one is in invalid_tool_calls).
            calls_finish = "function_call" if prepared.legacy_functions else "tool_calls"
            end: EndEvent | None = EndEvent(calls_finish, usage, invalid=tuple(invalid))
        elif (prepared.after_tool_results or prepared.answer_constraint is not None) and not truncated:
            # No new call after tool results: the model may answer the user. With response_format,
            # "[]" on a fresh question is answered in that format too (a refusal sentence would not
            # validate against the client's schema).
            outcome, end = "answer", None
        elif invalid:
            outcome = "truncated" if truncated else "invalid"
            # A cut call is reported in invalid_tool_calls only: in content, clients (LangChain) would
            # show the server's explanation as the assistant's answer.
            end = EndEvent(finish, usage, content=None if truncated else _failure_message(invalid),
                           invalid=tuple(invalid))
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

    async def _call_events(self, prepared: Prepared, generation: GenerationRequest,
                           calls: _CallPass) -> AsyncIterator[Event]:
        """One pass under a tool-call grammar: each valid, new call as soon as it is complete."""
        first = generation is prepared.generation  # a later pass is not the request's first token
        async for chunk in self.backend.generate(generation):
            if first:
                self.metrics.ttft.observe(time.perf_counter() - prepared.started)
                first = False
            for element in calls.scanner.feed(chunk.text):
                call, key, error = self._checked_call(element, calls.plan)
                if call is None:
                    calls.invalid.append(error)
                elif key in prepared.answered:  # made and answered already: repeating it loops forever
                    self.metrics.calls_dropped.labels("repeated").inc()
                    calls.repeated += 1
                elif key in calls.returned and self.settings.dedupe_calls:
                    self.metrics.calls_dropped.labels("duplicate").inc()
                else:
                    if not calls.returned:
                        self.metrics.time_to_first_call.observe(time.perf_counter() - prepared.started)
                    yield CallEvent(len(calls.returned), call)
                    calls.returned.add(key)
            if chunk.finish_reason:
                calls.finish, calls.completion_tokens = chunk.finish_reason, chunk.completion_tokens

    def _remaining_offer(self, prepared: Prepared, calls: _CallPass, usage: Usage) -> _Offer | None:
        """The pass that follows one which, under ``tool_choice: "required"``, only repeated answered
        calls: the tools not called yet, at least one call (pydantic-ai's ``final_result`` after its
        ``get_weather``). ``None`` when that is not the case, or nothing is left to offer (then the
        answer pass ends the loop)."""
        if calls.returned or not calls.repeated or not calls.scanner.closed:
            return None
        plan = remaining_plan(prepared.plan, prepared.answered_tools)
        params = prepared.generation.params
        budget = params.max_tokens - usage.completion_tokens
        if plan is None or budget < 1:
            return None
        generation = dataclasses.replace(prepared.generation, params=dataclasses.replace(params, max_tokens=budget),
                                         constraint=calls_constraint(plan, self.settings))
        return _Offer(plan, generation)

    async def _answer_turn(self, prepared: Prepared, first: Usage,
                           invalid: tuple[InvalidToolCall, ...]) -> AsyncIterator[Event]:
        """A second pass in plain chat that sees the calls made and their results; free text, or
        the client's ``response_format`` when it sent one with the tools."""
        prompt, plain, prompt_tokens = await asyncio.to_thread(self._answer_prompt, prepared.messages)
        room = self.info.context_length - prompt_tokens
        params = prepared.generation.params
        budget = min(params.max_tokens - first.completion_tokens, room)
        if budget < 1:  # max_tokens or the context is spent: say so instead of generating nothing
            yield EndEvent("length", first, invalid=invalid)
            return
        generation = GenerationRequest(prompt, dataclasses.replace(
            params, max_tokens=budget, stop=prepared.stop, repeat_penalty=ANSWER_REPEAT_PENALTY),
            prepared.answer_constraint, plain_texts=plain, adapter=prepared.generation.adapter)
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


def add_usage(earlier: Usage | None, prompt_tokens: int, completion_tokens: int) -> Usage:
    """Usage of one more pass on top of ``earlier`` ones: a request's usage counts every pass.

    >>> add_usage(add_usage(None, 10, 2), 5, 3).model_dump()
    {'prompt_tokens': 15, 'completion_tokens': 5, 'total_tokens': 20}
    """
    prompt = prompt_tokens + (earlier.prompt_tokens if earlier else 0)
    completion = completion_tokens + (earlier.completion_tokens if earlier else 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _failure_message(invalid: list[InvalidToolCall]) -> str:
    return "The model did not produce a valid tool call: " + "; ".join(i.error for i in invalid)
