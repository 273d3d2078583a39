"""``ChatService`` events → a Response object, and → the Responses SSE events for ``stream: true``.

One ``ResponseBuilder`` does both: the non-streaming answer is the streamed events collected, so the
two modes agree by construction.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator, Callable

from hammer.server.admission import Ticket
from hammer.server.errors import APIError
from hammer.server.responses.protocol import (
    IncompleteDetails,
    OutputFunctionCall,
    OutputMessage,
    OutputText,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)
from hammer.server.serving import CallEvent, ChatService, ContentEvent, EndEvent, Event, Prepared
from hammer.server.sse import named_sse, stream_failure


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def initial_response(request: ResponsesRequest, prepared: Prepared) -> ResponseObject:
    """The response before any output: ``status: in_progress``, the request's settings echoed."""
    fmt = request.text.format if request.text and request.text.format else None
    choice = request.tool_choice
    return ResponseObject(
        id=new_id("resp"), created_at=prepared.created, status="in_progress", model=prepared.model,
        instructions=request.instructions, max_output_tokens=request.max_output_tokens,
        metadata=request.metadata or {}, parallel_tool_calls=request.parallel_tool_calls,
        previous_response_id=request.previous_response_id, store=request.store,
        # The values used (the model's defaults where the request gave none).
        temperature=prepared.generation.params.temperature, top_p=prepared.generation.params.top_p,
        user=request.user,
        text={"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
        tool_choice=choice if isinstance(choice, str) else choice.model_dump() if choice else "auto",
        tools=[t.model_dump(exclude_none=True) for t in request.tools or []])


class ResponseBuilder:
    """Feeds on a request's events; returns the Responses stream events each one makes, numbered."""

    def __init__(self, response: ResponseObject) -> None:
        self.response = response
        self.done = False
        self._sequence = 0
        self._message: OutputMessage | None = None  # the open message item, while text arrives

    def start(self) -> list[dict[str, Any]]:
        snapshot = self._snapshot()
        return [self._event("response.created", response=snapshot),
                self._event("response.in_progress", response=snapshot)]

    def feed(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ContentEvent):
            return self._text(event.text)
        if isinstance(event, CallEvent):
            return self._call(event)
        return self._end(event)

    def error(self, exc: APIError) -> dict[str, Any]:
        return self._event("error", code=exc.code or exc.error_type, message=exc.message, param=exc.param)

    # -- items -----------------------------------------------------------------------------------

    def _text(self, text: str) -> list[dict[str, Any]]:
        events = []
        if self._message is None:
            self._message = OutputMessage(id=new_id("msg"), status="in_progress", content=[])
            self.response.output.append(self._message)
            index = self._index()
            events += [self._event("response.output_item.added", output_index=index,
                                   item=self._message.model_dump()),
                       self._event("response.content_part.added", item_id=self._message.id, output_index=index,
                                   content_index=0, part=OutputText(text="").model_dump())]
            self._message.content.append(OutputText(text=""))
        self._message.content[0].text += text
        events.append(self._event("response.output_text.delta", item_id=self._message.id,
                                  output_index=self._index(), content_index=0, delta=text, logprobs=[]))
        return events

    def _close_message(self, status: str = "completed") -> list[dict[str, Any]]:
        message, self._message = self._message, None
        if message is None:
            return []
        index = self.response.output.index(message)
        message.status = status  # type: ignore[assignment]
        part = message.content[0]
        return [self._event("response.output_text.done", item_id=message.id, output_index=index, content_index=0,
                            text=part.text, logprobs=[]),
                self._event("response.content_part.done", item_id=message.id, output_index=index, content_index=0,
                            part=part.model_dump()),
                self._event("response.output_item.done", output_index=index, item=message.model_dump())]

    def _call(self, event: CallEvent) -> list[dict[str, Any]]:
        events = self._close_message()
        call = OutputFunctionCall(id=new_id("fc"), call_id=event.call.id, name=event.call.function.name,
                                  arguments="", status="in_progress")
        self.response.output.append(call)
        index = self._index()
        arguments = event.call.function.arguments
        events.append(self._event("response.output_item.added", output_index=index, item=call.model_dump()))
        events.append(self._event("response.function_call_arguments.delta", item_id=call.id, output_index=index,
                                  delta=arguments))
        events.append(self._event("response.function_call_arguments.done", item_id=call.id, output_index=index,
                                  arguments=arguments))
        call.arguments, call.status = arguments, "completed"
        events.append(self._event("response.output_item.done", output_index=index, item=call.model_dump()))
        return events

    def _end(self, end: EndEvent) -> list[dict[str, Any]]:
        events = self._text(end.content) if end.content else []
        truncated = end.finish_reason == "length"
        events += self._close_message("incomplete" if truncated else "completed")
        response = self.response
        response.status = "incomplete" if truncated else "completed"
        response.incomplete_details = IncompleteDetails(reason="max_output_tokens") if truncated else None
        response.usage = ResponseUsage(input_tokens=end.usage.prompt_tokens, output_tokens=end.usage.completion_tokens,
                                       total_tokens=end.usage.total_tokens)
        response.invalid_tool_calls = list(end.invalid) or None
        self.done = True
        events.append(self._event("response.incomplete" if truncated else "response.completed",
                                  response=self._snapshot()))
        return events

    def _index(self) -> int:
        return len(self.response.output) - 1

    def _snapshot(self) -> dict[str, Any]:
        return self.response.model_dump(mode="json")

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event


Keep = Callable[[ResponseObject], None]


async def collect(service: ChatService, prepared: Prepared, builder: ResponseBuilder, keep: Keep) -> ResponseObject:
    """The non-streaming answer: every event fed, the finished response kept and returned."""
    builder.start()
    async for event in service.events(prepared):
        builder.feed(event)
    assert builder.done, "every event stream ends with an EndEvent"
    keep(builder.response)
    return builder.response


async def stream_events(service: ChatService, prepared: Prepared, builder: ResponseBuilder, keep: Keep,
                        ticket: Ticket | None = None) -> AsyncIterator[str]:
    """The Responses SSE stream; an error after it started is an ``error`` event, then the end."""
    for event in builder.start():
        yield named_sse(event)
    try:
        async for chat_event in service.events(prepared, ticket):
            events = builder.feed(chat_event)
            if builder.done:
                keep(builder.response)  # kept before response.completed, so a GET right after finds it
            for event in events:
                yield named_sse(event)
    except (Exception, asyncio.CancelledError) as exc:  # the stream has started: report in-band, then end
        yield named_sse(builder.error(stream_failure(exc, "response", builder.response.id)))
