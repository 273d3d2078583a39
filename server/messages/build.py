"""``ChatService`` events → an Anthropic message, and → Anthropic's SSE events for ``stream: true``.

One ``MessageBuilder`` does both: the non-streaming answer is the streamed events collected, so the
two modes agree by construction.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, AsyncIterator

from hammer.server.admission import Ticket
from hammer.server.errors import APIError
from hammer.server.messages.errors import anthropic_error
from hammer.server.messages.protocol import MessageObject, MessageUsage, StopReason, TextContent, ToolUseContent
from hammer.server.serving import CallEvent, ChatService, ContentEvent, EndEvent, Event, Prepared
from hammer.server.sse import named_sse, stream_failure

# The pipeline's finish reasons as Anthropic's stop reasons; a stop sequence that ended the text
# (finish "stop" with the sequence named) is "stop_sequence".
_STOP_REASONS: dict[str, StopReason] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def initial_message(prepared: Prepared) -> MessageObject:
    """The message before any content, as ``message_start`` carries it."""
    return MessageObject(id=f"msg_{uuid.uuid4().hex}", model=prepared.model,
                         usage=MessageUsage(input_tokens=prepared.prompt_tokens, output_tokens=0))


def tool_use_id(call_id: str) -> str:
    """A call's id in Anthropic's style (``toolu_…``); the client sends it back as ``tool_use_id``.

    >>> tool_use_id("call_0123abc")
    'toolu_0123abc'
    """
    return "toolu_" + call_id.removeprefix("call_")


class MessageBuilder:
    """Feeds on a request's events; returns the Anthropic stream events each one makes.

    ``context_bound``: the context, not the request's ``max_tokens``, limits the output (see
    ``convert.bounded``); a cut output then ends with ``model_context_window_exceeded``.
    """

    def __init__(self, message: MessageObject, context_bound: bool = False) -> None:
        self.message = message
        self.context_bound = context_bound
        self.done = False
        self._text: TextContent | None = None  # the open text block, while text arrives

    def start(self) -> list[dict[str, Any]]:
        return [{"type": "message_start", "message": self.message.model_dump(mode="json")}, {"type": "ping"}]

    def feed(self, event: Event) -> list[dict[str, Any]]:
        if isinstance(event, ContentEvent):
            return self._add_text(event.text)
        if isinstance(event, CallEvent):
            return self._tool_use(event)
        return self._end(event)

    @staticmethod
    def error(exc: APIError) -> dict[str, Any]:
        return anthropic_error(exc.status_code, exc.message, exc.param, exc.code)

    def _add_text(self, text: str) -> list[dict[str, Any]]:
        if not text:  # a chunk of logprobs only: nothing to show
            return []
        events = []
        if self._text is None:
            self._text = TextContent(text="")
            self.message.content.append(self._text)
            events.append({"type": "content_block_start", "index": self._index(), "content_block": {
                "type": "text", "text": ""}})
        self._text.text += text
        events.append({"type": "content_block_delta", "index": self._index(), "delta": {
            "type": "text_delta", "text": text}})
        return events

    def _close_text(self) -> list[dict[str, Any]]:
        if self._text is None:
            return []
        self._text = None
        return [{"type": "content_block_stop", "index": self._index()}]

    def _tool_use(self, event: CallEvent) -> list[dict[str, Any]]:
        events = self._close_text()
        call = event.call
        block = ToolUseContent(id=tool_use_id(call.id), name=call.function.name,
                               input=json.loads(call.function.arguments))
        self.message.content.append(block)
        index = self._index()
        # The call is complete and validated before it is sent: its whole input is one delta.
        return [*events,
                {"type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block.id, "name": block.name, "input": {}}},
                {"type": "content_block_delta", "index": index, "delta": {
                    "type": "input_json_delta", "partial_json": call.function.arguments}},
                {"type": "content_block_stop", "index": index}]

    def _end(self, end: EndEvent) -> list[dict[str, Any]]:
        # The server's own text (a refusal, why no valid call came) is a text block like the model's.
        events = [*(self._add_text(end.content) if end.content else []), *self._close_text()]
        message = self.message
        cut_by_context = end.finish_reason == "length" and self.context_bound
        message.stop_reason = "model_context_window_exceeded" if cut_by_context else \
            "stop_sequence" if end.stop_sequence is not None else _STOP_REASONS.get(end.finish_reason, "end_turn")
        message.stop_sequence = end.stop_sequence
        message.usage = MessageUsage(input_tokens=end.usage.prompt_tokens, output_tokens=end.usage.completion_tokens)
        message.invalid_tool_calls = list(end.invalid) or None
        self.done = True
        delta: dict[str, Any] = {"stop_reason": message.stop_reason, "stop_sequence": message.stop_sequence}
        if message.invalid_tool_calls:
            delta["invalid_tool_calls"] = [i.model_dump() for i in message.invalid_tool_calls]
        # input_tokens too: an answer pass after tool results adds its prompt to the one message_start gave.
        return [*events, {"type": "message_delta", "delta": delta, "usage": message.usage.model_dump()},
                {"type": "message_stop"}]

    def _index(self) -> int:
        return len(self.message.content) - 1


async def collect(service: ChatService, prepared: Prepared, builder: MessageBuilder) -> MessageObject:
    """The non-streaming answer: every event fed, the finished message returned."""
    builder.start()
    async for event in service.events(prepared):
        builder.feed(event)
    assert builder.done, "every event stream ends with an EndEvent"
    return builder.message


async def stream_events(service: ChatService, prepared: Prepared, builder: MessageBuilder,
                        ticket: Ticket | None = None) -> AsyncIterator[str]:
    """The Messages SSE stream; an error after it started is an ``error`` event, then the end."""
    for event in builder.start():
        yield named_sse(event)
    try:
        async for chat_event in service.events(prepared, ticket):
            for event in builder.feed(chat_event):
                yield named_sse(event)
    except (Exception, asyncio.CancelledError) as exc:  # the stream has started: report in-band, then end
        yield named_sse(builder.error(stream_failure(exc, "message", builder.message.id)))
