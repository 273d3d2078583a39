"""Server-Sent Events for ``stream: true``: the same events as a ``chat.completion``, as chunks."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

from hammer.server.admission import Ticket
from hammer.server.constraints import ToolMode
from hammer.server.errors import APIError, BackendUnavailable, error_body
from hammer.server.protocol import ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, ToolCallDelta, Usage
from hammer.server.serving import CallEvent, ChatService, ContentEvent, EndEvent, Prepared, choice_logprobs

log = logging.getLogger(__name__)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


class ChunkWriter:
    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared

    def chunk(self, delta: Delta | None, finish_reason: str | None = None, usage: Usage | None = None,
              logprobs: ChoiceLogprobs | None = None) -> str:
        p = self._prepared
        choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish_reason, logprobs=logprobs)]
        chunk = ChatCompletionChunk(id=p.id, created=p.created, model=p.model, choices=choices, usage=usage)
        data = chunk.model_dump()
        for choice in data["choices"]:  # deltas carry only what changed
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
            for call in choice["delta"].get("tool_calls", []):
                for key in [k for k, v in call.items() if v is None]:
                    del call[key]
        if usage is None:
            del data["usage"]
        return _sse(data)


async def stream_chunks(service: ChatService, prepared: Prepared, ticket: Ticket | None = None) -> AsyncIterator[str]:
    """SSE lines: role, content or tool-call deltas, the finish chunk, optional usage, ``[DONE]``.

    A tool call is sent once it is complete and validated: a first delta with its ``index``,
    ``id``, ``type`` and ``name``, then its ``arguments``; a truncated or invalid call is never sent.
    """
    out = ChunkWriter(prepared)
    # OpenAI's first delta: content "" before text, content absent before tool calls (the
    # non-streamed message has null there, and SDKs accumulate what the deltas say). With tools
    # the first output is not known yet: the role alone, and text, if it comes, sets content.
    yield out.chunk(Delta(role="assistant", content="" if prepared.plan.mode == ToolMode.NONE else None))
    try:
        async for event in service.events(prepared, ticket):
            if isinstance(event, ContentEvent):
                yield out.chunk(Delta(content=event.text),
                                logprobs=choice_logprobs(event.logprobs) if prepared.logprobs else None)
            elif isinstance(event, CallEvent) and prepared.legacy_functions:
                call = event.call.function
                yield out.chunk(Delta(function_call={"name": call.name, "arguments": ""}))
                yield out.chunk(Delta(function_call={"arguments": call.arguments}))
            elif isinstance(event, CallEvent):
                call = event.call
                yield out.chunk(Delta(tool_calls=[ToolCallDelta(
                    index=event.index, id=call.id, type="function",
                    function={"name": call.function.name, "arguments": ""})]))
                yield out.chunk(Delta(tool_calls=[ToolCallDelta(
                    index=event.index, function={"arguments": call.function.arguments})]))
            elif isinstance(event, EndEvent):
                if event.content or event.invalid:
                    yield out.chunk(Delta(content=event.content, invalid_tool_calls=list(event.invalid) or None))
                yield out.chunk(Delta(), finish_reason=event.finish_reason)
                if prepared.include_usage:
                    yield out.chunk(None, usage=event.usage)
    except APIError as exc:
        yield _sse(exc.body())
    except asyncio.CancelledError:  # still running when --shutdown-timeout ended: say so, then end the stream
        yield _sse(BackendUnavailable("The server is shutting down; retry the request.",
                                      code="server_shutting_down").body())
    except Exception:  # the stream has started: report in-band, never drop silently
        log.exception("streaming request %s failed", prepared.id)
        yield _sse(error_body("The server failed while generating this response.", "server_error"))
    yield "data: [DONE]\n\n"
