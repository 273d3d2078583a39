"""The routes: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{response_id}``; thin, like chat's."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from hammer.server.convert import reject_undecodable_text
from hammer.server.errors import APIError, NotFound
from hammer.server.openapi import errors_documented
from hammer.server.protocol import ErrorResponse
from hammer.server.responses.build import ResponseBuilder, collect, initial_response, stream_events
from hammer.server.responses.convert import output_messages, rename_param, to_chat
from hammer.server.responses.protocol import DeletedResponse, ResponseObject, ResponsesRequest
from hammer.server.responses.store import ResponseStore
from hammer.server.serving import ChatService
from hammer.server.settings import Settings
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

UntilDisconnected = Callable[[Request, Awaitable[Any]], Awaitable[Any]]

_UNKNOWN_ID = {404: {"model": ErrorResponse, "description": "No stored response with this id for this API key"}}


def responses_sse_schema() -> dict[str, Any]:
    """One event of a streamed response: ``event: <type>`` and its JSON data (``type``, ``sequence_number``)."""
    payload = {"type": "object", "required": ["type", "sequence_number"],
               "properties": {"type": {"type": "string"}, "sequence_number": {"type": "integer"}}}
    return {"type": "object", "required": ["data"], "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}}}


class _SharedPathRoute(APIRoute):
    """A route whose 405 lists every method of its path: Starlette's lists only the first route's
    (``Allow: GET`` for ``/v1/responses/{response_id}``, which also has DELETE)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            routes = scope["app"].router.routes
            allowed = sorted({m for r in routes if getattr(r, "path", None) == self.path
                              for m in getattr(r, "methods", None) or ()})
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(allowed)})
        await super().handle(scope, receive, send)


def add_responses_routes(app: FastAPI, settings: Settings, until_disconnected: UntilDisconnected,
                         store: ResponseStore | None = None) -> ResponseStore:
    """Register the routes on ``app`` itself (not through ``include_router``: the auth and metrics
    middleware labels requests refused before routing by the app's own routes' paths)."""
    store = store or ResponseStore.from_settings(settings)

    def route(method: str, path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
            app.router.add_api_route(path, endpoint, methods=[method], route_class_override=_SharedPathRoute,
                                     **options)
            return endpoint
        return register

    def namespace(request: Request) -> str:
        # The key that authenticated, set by the auth middleware (None when the server has no keys):
        # never the headers again, which a request may repeat with different values.
        return request.state.api_key_id or ""

    @route("POST", "/v1/responses", response_model=ResponseObject,
           responses={200: {"content": {"text/event-stream": {"schema": responses_sse_schema()}},
                            "description": "A response, or with `stream: true` its events as SSE"},
                      **errors_documented(400, 401, 429, 503, 504),
                      404: {"model": ErrorResponse, "description": "Unknown model or previous_response_id"}})
    async def create_response(body: ResponsesRequest, request: Request) -> Any:
        service: ChatService = request.app.state.service
        reject_undecodable_text(body)  # type: ignore[arg-type]  # walks any model; params are ours
        space = namespace(request)
        previous = None
        if body.previous_response_id is not None:
            previous = store.get(space, body.previous_response_id)
            if previous is None:
                raise NotFound(f"Previous response with id {body.previous_response_id!r} not found.",
                               param="previous_response_id", code="previous_response_not_found")
        chat = to_chat(body, previous.messages if previous else ())
        try:
            prepared = await service.prepare(chat.request)
        except APIError as exc:
            raise rename_param(exc, chat.origins) from None
        builder = ResponseBuilder(initial_response(body, prepared))

        def keep(response: ResponseObject) -> None:
            if body.store:
                store.put(space, response, [*chat.history, *output_messages(response.output)])

        if body.stream:
            ticket = service.gate.admit()  # a full queue answers 429 before the stream starts
            return StreamingResponse(stream_events(service, prepared, builder, keep, ticket),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                                     background=BackgroundTask(ticket.release))  # if the stream never ran
        return await until_disconnected(request, collect(service, prepared, builder, keep))

    @route("GET", "/v1/responses/{response_id}", response_model=ResponseObject,
           responses={**errors_documented(401), **_UNKNOWN_ID})
    async def get_response(response_id: str, request: Request) -> ResponseObject:
        stored = store.get(namespace(request), response_id)
        if stored is None:
            raise _not_found(response_id)
        return stored.response

    @route("DELETE", "/v1/responses/{response_id}", response_model=DeletedResponse,
           responses={**errors_documented(401), **_UNKNOWN_ID})
    async def delete_response(response_id: str, request: Request) -> DeletedResponse:
        if not store.delete(namespace(request), response_id):
            raise _not_found(response_id)
        return DeletedResponse(id=response_id)

    return store


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id {response_id!r} not found.", param="response_id", code="response_not_found")
