"""The routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``; thin, like chat's."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from hammer.server.convert import reject_undecodable_text
from hammer.server.errors import APIError
from hammer.server.messages.build import MessageBuilder, collect, initial_message, stream_events
from hammer.server.messages.convert import ChatRequest, bounded, rename_param, to_chat
from hammer.server.messages.protocol import (
    AnthropicError,
    CountTokensRequest,
    CountTokensResponse,
    MessageObject,
    MessagesRequest,
)
from hammer.server.openapi import errors_documented
from hammer.server.serving import ChatService, Prepared
from starlette.background import BackgroundTask

UntilDisconnected = Callable[[Request, Awaitable[Any]], Awaitable[Any]]


def anthropic_errors_documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the errors a route can answer, in Anthropic's shape."""
    return {code: {**entry, "model": AnthropicError} for code, entry in errors_documented(*codes).items()}


def messages_sse_schema() -> dict[str, Any]:
    """One event of a streamed message: ``event: <type>`` and its JSON data (``type``)."""
    payload = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
    return {"type": "object", "required": ["data"], "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}}}


async def _prepared(request: Request, body: MessagesRequest | CountTokensRequest) -> Prepared:
    """The request validated and converted by the one chat pipeline, errors naming the Messages fields."""
    service: ChatService = request.app.state.service
    reject_undecodable_text(body)  # type: ignore[arg-type]  # walks any model; params are ours
    chat: ChatRequest = to_chat(body)
    try:
        return await service.prepare(chat.request)
    except APIError as exc:
        raise rename_param(exc, chat.origins) from None


def add_messages_routes(app: FastAPI, until_disconnected: UntilDisconnected) -> None:
    """Register the routes on ``app`` itself (not through ``include_router``: the auth and metrics
    middleware labels requests refused before routing by the app's own routes' paths)."""

    @app.post("/v1/messages", response_model=MessageObject,
              responses={200: {"content": {"text/event-stream": {"schema": messages_sse_schema()}},
                               "description": "A message, or with `stream: true` its events as SSE"},
                         **anthropic_errors_documented(400, 401, 404, 429, 503, 504)})
    async def create_message(body: MessagesRequest, request: Request) -> Any:
        service: ChatService = request.app.state.service
        prepared = bounded(await _prepared(request, body), body.max_tokens)
        builder = MessageBuilder(initial_message(prepared),
                                 context_bound=prepared.generation.params.max_tokens < body.max_tokens)
        if body.stream:
            ticket = service.gate.admit()  # a full queue answers 429 before the stream starts
            return StreamingResponse(stream_events(service, prepared, builder, ticket), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                     background=BackgroundTask(ticket.release))  # if the stream never ran
        return await until_disconnected(request, collect(service, prepared, builder))

    @app.post("/v1/messages/count_tokens", response_model=CountTokensResponse,
              responses=anthropic_errors_documented(400, 401, 404, 503))
    async def count_tokens(body: CountTokensRequest, request: Request) -> CountTokensResponse:
        # The prompt the model would read for this request, tools included: no generation, no queue.
        return CountTokensResponse(input_tokens=(await _prepared(request, body)).prompt_tokens)
